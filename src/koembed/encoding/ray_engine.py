"""Ray Data as koembed's distributed engine: encode a corpus, or analyse it with Kiwi, on every worker of a cluster.

Why Ray Data and not a home-made layer: it schedules an actor pool over the cluster's CPUs and GPUs
(``map_batches`` with a callable class, so each actor loads the model or Kiwi once), streams blocks between
the driver and the actors, and restarts failed actors.

What stays koembed's: the driver reads and validates the corpus with koembed's own readers (the embedding
store's fingerprint and chunk plan are over the whole corpus, in order), then sends only the chunks still to
do. Each chunk comes back to the driver and is written into the same sharded, checksummed store
:func:`koembed.encoding.job.encode_corpus` writes (:func:`koembed.encoding.shards.open_shard` /
:func:`~koembed.encoding.shards.record_chunk`), so ``index build --from-embeddings`` reads either, ``--out`` needs
no shared file system, and a rerun skips the finished chunks (Ray does not resume a half-finished job). A
different corpus, model, precision, dtype or chunk size in the same folder is refused as for ``encode``.

    ray start --head                       # first machine
    ray start --address HEAD_IP:6379       # every other machine
    koembed encode --engine ray --address auto --workers 8 --gpus-per-worker 1 --model BAAI/bge-m3 ...
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from koembed.encoding.job import EncodeReport
from koembed.encoding.shards import open_shard, record_chunk
from koembed.errors import EmbeddingStoreError
from koembed.lexical import DEFAULT_ANALYZER, Analyzer, KiwiTokenizer, UserDict, get_analyzer
from koembed.models import (
    EncodeOptions,
    ModelSpec,
    encode,
    expected_precision,
    load_model,
    model_precision,
)
from koembed.models.prompts import role_options
from koembed.progress import progress

KIWI_BLOCK = 2048  # passages per analysis task
RAY_TEMP_PREFIX = "koembed-ray-"  # + pid + random: a local Ray's session folder (ray_temp_dir)


@dataclass(frozen=True)
class RayOptions:
    """Where and how wide to run: ``address`` of a running cluster (``auto``, ``ray://HOST:10001``; None starts
    a local Ray on this machine), ``workers`` actors, each with ``cpus_per_worker`` CPUs (its torch and Kiwi
    threads) and ``gpus_per_worker`` GPUs (1: one model copy per GPU)."""

    address: str | None = None
    workers: int = 1
    cpus_per_worker: float = 1.0
    gpus_per_worker: float = 0.0

    def __post_init__(self) -> None:
        if self.workers < 1 or self.cpus_per_worker <= 0 or self.gpus_per_worker < 0:
            raise EmbeddingStoreError("need --workers >= 1, CPUs per worker > 0 and GPUs per worker >= 0")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def ray_temp_dir(base: Path | None = None) -> Path:
    """A new folder for a local Ray's session files (sockets, logs, spilled objects), named after this process.

    Ray otherwise keeps every session under ``/tmp/ray/session_*`` for good. The folder is removed when the
    session ends; one left by a koembed process that no longer runs (killed with -9) is removed here, at the
    next start. Kept short: Ray's Unix socket paths inside it must stay under 108 characters."""
    base = Path(tempfile.gettempdir()) if base is None else base
    for stale in base.glob(f"{RAY_TEMP_PREFIX}*"):
        pid = stale.name[len(RAY_TEMP_PREFIX):].split("-")[0]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(stale, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{RAY_TEMP_PREFIX}{os.getpid()}-", dir=base))


@contextmanager
def ray_session(address: str | None) -> Iterator[None]:
    """Ray initialised for the block: an existing connection is reused; one started here (``address`` None) is
    shut down after, in a temporary folder of its own (:func:`ray_temp_dir`) that is removed with it. No
    dashboard; Ray still starts its dashboard and runtime-env agents, which exit on their own once the raylet
    is gone (after a kill -9 of this process, within about a minute: docs/RELIABILITY.md, 21.8)."""
    import ray

    if ray.is_initialized():
        yield
        return
    temp = ray_temp_dir() if address is None else None
    try:
        ray.init(address=address, include_dashboard=False, log_to_driver=False, configure_logging=False,
                 **({"_temp_dir": str(temp)} if temp is not None else {}))
        yield
    finally:
        ray.shutdown()
        if temp is not None:
            shutil.rmtree(temp, ignore_errors=True)


def _quiet_ray_data(show_progress: bool) -> Any:
    import ray.data

    context = ray.data.DataContext.get_current()
    context.enable_progress_bars = False  # koembed shows one bar of its own
    context.print_on_execution_start = False
    logging.getLogger("ray.data").setLevel(logging.WARNING if show_progress else logging.ERROR)
    return ray.data


def _require_resources(ray_options: RayOptions) -> None:
    """Refuse a pool the cluster can never place (Ray would wait for it forever)."""
    import ray

    have = ray.cluster_resources()
    for name, each in (("CPU", ray_options.cpus_per_worker), ("GPU", ray_options.gpus_per_worker)):
        if each and have.get(name, 0) < each:
            raise EmbeddingStoreError(f"the Ray cluster has {have.get(name, 0):g} {name}s, a worker needs {each:g}: "
                                      "start Ray on machines that have them, or ask for fewer")


def _pool(ray_options: RayOptions) -> dict[str, Any]:
    import ray.data

    return {"compute": ray.data.ActorPoolStrategy(size=ray_options.workers), "batch_size": 1,
            "num_cpus": ray_options.cpus_per_worker, "num_gpus": ray_options.gpus_per_worker or None}


class ChunkEncoder:
    """A Ray actor: loads the model once, then encodes one chunk of texts per call (vectors as raw float32)."""

    def __init__(self, spec: ModelSpec, options: EncodeOptions, precision: str, threads: int):
        import torch

        if spec.device is None or spec.device == "cpu":
            torch.set_num_threads(max(1, threads))
        self.encoder = load_model(spec)
        self.options = role_options(options.quiet(), self.encoder, "passage")  # as encode_corpus's own loop
        got = model_precision(self.encoder)
        if got != precision:
            raise EmbeddingStoreError(f"this worker runs the model in {got}, the store records {precision}: give "
                                      "--precision explicitly (bf16, fp16, fp32)")

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        chunks, rows, dims, data = [], [], [], []
        for chunk, texts in zip(batch["chunk"], batch["texts"]):
            vectors = np.ascontiguousarray(encode(self.encoder, list(texts), self.options), dtype=np.float32)
            chunks.append(int(chunk))
            rows.append(vectors.shape[0])
            dims.append(vectors.shape[1])
            data.append(vectors.tobytes())
        return {"chunk": np.array(chunks), "rows": np.array(rows), "dim": np.array(dims),
                "data": np.array(data, dtype=object)}


class BlockAnalyser:
    """A Ray actor: loads the analyzer once, then turns one block of texts into BM25 tokens (JSON per passage).
    Kiwi analyses a block on the actor's ``threads``; MeCab-ko in the actor's own thread."""

    def __init__(self, analyzer: str, user_dict: UserDict | None, threads: int):
        if analyzer == "kiwi":
            self.tokenizer: Analyzer = KiwiTokenizer(num_workers=max(1, threads), user_dict=user_dict)
        else:
            self.tokenizer = get_analyzer(analyzer, user_dict)

    def __call__(self, batch: dict[str, Any]) -> dict[str, Any]:
        import numpy as np

        blocks, tokens = [], []
        for block, texts in zip(batch["block"], batch["texts"]):
            blocks.append(int(block))
            tokens.append(json.dumps(self.tokenizer(list(texts)), ensure_ascii=False))
        return {"block": np.array(blocks), "tokens": np.array(tokens, dtype=object)}


def encode_corpus_ray(model: ModelSpec | str, doc_ids: Sequence[str], texts: Sequence[str], out_dir: str | Path, *,
                      ray_options: RayOptions = RayOptions(), shard: tuple[int, int] = (0, 1),
                      dtype: str = "float32", chunk_size: int = 4096,
                      options: EncodeOptions = EncodeOptions()) -> EncodeReport:
    """:func:`koembed.encoding.job.encode_corpus` on a Ray actor pool: the same store, the same resume rule.

    The precision is resolved on the driver for the workers' device (CUDA when ``gpus_per_worker``); ``auto``
    with GPUs is refused (the driver cannot see the workers' GPUs), and a worker whose loaded model differs
    from the recorded precision stops the run.
    """
    import numpy as np

    spec = ModelSpec.of(model)
    doc_ids, texts = list(doc_ids), list(texts)
    if ray_options.gpus_per_worker:
        if spec.precision == "auto":
            raise EmbeddingStoreError("--precision auto cannot be resolved on the driver for the workers' GPUs: "
                                      "give bf16, fp16 or fp32")
        spec = ModelSpec.of(spec, device=spec.device or "cuda")
    plan = open_shard(spec, doc_ids, texts, out_dir, shard=shard, dtype=dtype, chunk_size=chunk_size,
                      precision=expected_precision(spec))
    if plan.pending:
        with ray_session(ray_options.address):
            _require_resources(ray_options)
            data = _quiet_ray_data(options.show_progress)
            items = [{"chunk": k, "texts": texts[a:b]} for k, (a, b) in
                     ((k, plan.bounds[k]) for k in plan.pending)]
            threads = int(ray_options.cpus_per_worker)
            encoded = data.from_items(items, override_num_blocks=len(items)).map_batches(
                ChunkEncoder, fn_constructor_kwargs={"spec": spec, "options": options,
                                                     "precision": plan.manifest["precision"], "threads": threads},
                **_pool(ray_options))
            done = sum(b - a for k, (a, b) in enumerate(plan.bounds) if k not in plan.pending)
            with progress(total=plan.stop - plan.start, initial=done, desc=f"Encoding {plan.shard_dir.name} (Ray)",
                      unit="passage", disable=not options.show_progress) as bar:
                for row in encoded.iter_rows():
                    k = int(row["chunk"])
                    a, b = plan.bounds[k]
                    vectors = np.frombuffer(row["data"], dtype=np.float32).reshape(int(row["rows"]), int(row["dim"]))
                    record_chunk(plan, k, vectors, doc_ids[a:b])
                    bar.update(b - a)
    return EncodeReport(plan.shard_dir, plan.manifest, encoded=len(plan.pending), skipped=plan.skipped)


def tokenize_ray(texts: Sequence[str], ray_options: RayOptions = RayOptions(), *, show_progress: bool = True,
                 analyzer: str = DEFAULT_ANALYZER, user_dict: UserDict | None = None) -> list[list[str]]:
    """BM25 tokens of ``texts`` by ``analyzer`` with ``user_dict`` (as :func:`koembed.lexical.get_analyzer`'s
    analyzer gives them), analysed by a Ray actor pool in blocks of :data:`KIWI_BLOCK` passages; in input order."""
    texts = list(texts)
    blocks = [(i, texts[a: a + KIWI_BLOCK]) for i, a in enumerate(range(0, len(texts), KIWI_BLOCK))]
    out: list[list[list[str]] | None] = [None] * len(blocks)
    with ray_session(ray_options.address):
        _require_resources(ray_options)
        data = _quiet_ray_data(show_progress)
        analysed = data.from_items([{"block": i, "texts": part} for i, part in blocks],
                                   override_num_blocks=max(1, len(blocks))).map_batches(
            BlockAnalyser, fn_constructor_kwargs={"analyzer": analyzer, "user_dict": user_dict,
                                                  "threads": int(ray_options.cpus_per_worker)}, **_pool(ray_options))
        with progress(total=len(texts), desc=f"{analyzer} (Ray)", unit="text", disable=not show_progress) as bar:
            for row in analysed.iter_rows():
                i = int(row["block"])
                block: list[list[str]] = json.loads(row["tokens"])
                out[i] = block
                bar.update(len(block))
    return [tokens for block in out for tokens in block]  # type: ignore[union-attr]  # the loop filled every block
