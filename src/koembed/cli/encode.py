"""``koembed encode``: a corpus (or one shard of it) to stored embeddings, resumable; locally or on a Ray pool."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from koembed.cli.common import (
    BatchSizeOpt,
    EngineOpt,
    QuietOpt,
    RayAddressOpt,
    WorkersOpt,
    check_engine,
    check_output,
    console,
    encode_options,
    exits_on_error,
    quiet_libraries,
    with_model_options,
)
from koembed.data import load_documents
from koembed.encoding.job import encode_corpus
from koembed.encoding.ray_engine import RayOptions, encode_corpus_ray
from koembed.encoding.shards import parse_shard
from koembed.models import ModelSpec


@exits_on_error()
@with_model_options("model", "precision", "backend", "device", "passage_prompt", precision="auto",
                    backend="auto")
def encode(
    model: ModelSpec,
    corpus: Annotated[str, typer.Option(help="Passages: a .jsonl/.parquet/.csv id/text file or any retrieval "
                                        "set, whose corpus is used.", metavar="DOCS")],
    out: Annotated[Path, typer.Option(help="Output folder; shard i of n goes to OUT/shard-i-of-n/.", metavar="DIR")],
    shard: Annotated[str, typer.Option(help="i/n: encode shard i (from 0) of n contiguous shards.",
                                       metavar="I/N")] = "0/1",
    dtype: Annotated[str, typer.Option(help="Stored vectors: float32 or float16 (half the disk).",
                                       metavar="float32|float16")] = "float32",
    chunk_size: Annotated[int, typer.Option(min=1, help="Passages per chunk file (the unit of resuming).",
                                            metavar="N")] = 4096,
    batch_size: BatchSizeOpt = 32,
    max_batch_tokens: Annotated[int | None, typer.Option(
        min=1, help="Batch by a token budget instead of --batch-size: many short texts or few long ones per "
        "batch (padded size x longest <= budget).", metavar="N")] = None,
    engine: EngineOpt = "local",
    address: RayAddressOpt = None,
    workers: WorkersOpt = 1,
    gpus_per_worker: Annotated[float, typer.Option(min=0, help="ray: GPUs per actor (1: one model per GPU).",
                                                   metavar="X")] = 0,
    quiet: QuietOpt = False,
) -> None:
    """Encode a corpus (or one shard of it) to embedding files; rerun the same command to resume."""
    quiet_libraries()
    check_engine(engine)
    check_output(out, "--out", folder=True)
    docs = load_documents(corpus)
    options = encode_options(batch_size, quiet, max_batch_tokens)
    settings: dict[str, Any] = {"shard": parse_shard(shard), "dtype": dtype, "chunk_size": chunk_size,
                                "options": options}
    if engine == "ray":
        report = encode_corpus_ray(model, list(docs), list(docs.values()), out, **settings,
                                   ray_options=RayOptions(address, workers, gpus_per_worker=gpus_per_worker))
    else:
        report = encode_corpus(model, list(docs), list(docs.values()), out, **settings)
    info = report.manifest
    console.print(f"embeddings: {report.shard_dir} (passages {info['shard']['start']}..{info['shard']['stop'] - 1}, "
                  f"{info['dimension']} dimensions, {info['precision']}, {info['dtype']}; chunks encoded "
                  f"{report.encoded}, reused {report.skipped})", highlight=False)
