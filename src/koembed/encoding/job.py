"""The resumable encode job: a corpus shard encoded chunk by chunk into the embedding store (:mod:`koembed.encoding.shards`).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.encoding.shards import open_shard, record_chunk
from koembed.models import (
    EncodeOptions,
    Encoder,
    ModelSpec,
    encode,
    load_model,
    model_precision,
)
from koembed.models.prompts import role_options
from koembed.progress import progress

if TYPE_CHECKING:
    pass


@dataclass(frozen=True)
class EncodeReport:
    """What one :func:`encode_corpus` run did: ``encoded`` chunks now, ``skipped`` from an earlier run."""

    shard_dir: Path
    manifest: dict[str, Any]
    encoded: int
    skipped: int


def encode_corpus(model: ModelSpec | str, doc_ids: Sequence[str], texts: Sequence[str], out_dir: str | Path, *,
                  shard: tuple[int, int] = (0, 1), dtype: str = "float32", chunk_size: int = 4096,
                  options: EncodeOptions = EncodeOptions(), encoder: Encoder | None = None) -> EncodeReport:
    """Encode shard ``(i, n)`` of the corpus into ``out_dir/shard-{i}-of-{n}``, resuming an earlier run.

    Vectors are :func:`koembed.models.encode`'s (float32, in corpus order, not re-normalised), stored as
    ``dtype``, ``chunk_size`` passages per chunk file. The model's precision is resolved for its device
    (:func:`koembed.models.resolve`) and the resolved value is recorded, so ``auto`` on two machines
    that resolve it differently is a mismatch. The model is loaded only if a chunk is left to encode; pass
    ``encoder`` (loaded from ``model``) to reuse one. An ONNX backend is recorded as the precision
    (``onnx-int8``). Passages get the model's passage prompt (:mod:`koembed.models.prompts`); an override in
    ``model`` is recorded, so another prompt is a mismatch.
    """
    spec = ModelSpec.of(model)
    doc_ids, texts = list(doc_ids), list(texts)
    plan = open_shard(spec, doc_ids, texts, out_dir, shard=shard, dtype=dtype, chunk_size=chunk_size,
                      precision=model_precision(encoder) if encoder is not None else None)
    if plan.pending and encoder is None:
        encoder = load_model(spec)
    skipped_rows = sum(b - a for k, (a, b) in enumerate(plan.bounds) if k not in plan.pending)
    with progress(total=plan.stop - plan.start, initial=skipped_rows, desc=f"Encoding {plan.shard_dir.name}",
              unit="passage", disable=not options.show_progress) as bar:
        for k in plan.pending:
            a, b = plan.bounds[k]
            record_chunk(plan, k, encode(encoder, texts[a:b], role_options(options.quiet(), encoder, "passage")), doc_ids[a:b])
            bar.update(b - a)
    return EncodeReport(plan.shard_dir, plan.manifest, encoded=len(plan.pending), skipped=plan.skipped)
