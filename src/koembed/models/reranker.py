"""Cross-encoder rerankers: load one (sentence-transformers' ``CrossEncoder``) and score (query, passage) pairs.

A cross-encoder reads the query and the passage together, so it ranks better than a bi-encoder but costs one
forward pass per pair: it rescores a first stage's top candidates (:mod:`koembed.retrieval.rerank`), never a corpus.
Scores are ``CrossEncoder.predict``'s: the model's activation on its logit (a sigmoid for the usual one-output
rerankers, so 0..1, as TEI / Cohere / Jina report ``relevance_score``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.errors import ModelLoadError
from koembed.models.locate import from_hub, resolve_model
from koembed.models.precision import decide
from koembed.models.spec import EncodeOptions, ModelSpec

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import CrossEncoder


def load_reranker(model: ModelSpec | str, **settings: Any) -> CrossEncoder:
    """A cross-encoder by hub id or local folder, on ``device``, in ``precision`` (torch backend only).

    A hub id is looked up in the local cache first; when it is not there and the hub cannot be reached,
    :class:`ModelLoadError` says so (:func:`koembed.models.locate.from_hub`, as for embedding models).
    """
    from sentence_transformers import CrossEncoder

    spec = ModelSpec.of(model, **settings)
    if spec.backend not in ("torch", "auto"):  # auto: torch, the one backend a cross-encoder has here
        raise ModelLoadError(f"rerankers run on the torch backend, not {spec.backend}")
    precision = decide(replace(spec.settings, backend="torch")).precision
    target = resolve_model(spec.name)
    path = Path(target).expanduser()
    kwargs: dict[str, Any] = {"device": spec.device}
    if spec.max_seq_length is not None:
        kwargs["max_length"] = spec.max_seq_length
    if path.exists():
        if not (path / "config.json").is_file():
            raise ModelLoadError(f"{path} holds no cross-encoder (no config.json)")
        loaded = CrossEncoder(str(path), **kwargs)
    else:
        loaded = from_hub(lambda target, **kw: CrossEncoder(target, **kwargs, **kw), target, "reranker")
    if loaded.num_labels != 1:
        raise ModelLoadError(f"{spec.name} has {loaded.num_labels} outputs; a reranker has one relevance score")
    if precision != "fp32":
        import torch

        loaded.to(torch.bfloat16 if precision == "bf16" else torch.float16)
    return loaded


def rerank_scores(model: CrossEncoder, pairs: Sequence[tuple[str, str]],
                  options: EncodeOptions = EncodeOptions()) -> np.ndarray:
    """``CrossEncoder.predict`` of (query, passage) pairs as float32, ``options.batch_size`` pairs per pass."""
    import numpy as np

    if not pairs:
        return np.empty(0, dtype=np.float32)
    scores = model.predict(list(pairs), batch_size=options.batch_size, show_progress_bar=options.show_progress,
                           convert_to_numpy=True)
    return np.asarray(scores, dtype=np.float32).reshape(len(pairs))
