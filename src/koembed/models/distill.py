"""``koembed distill``: a static model from any sentence-transformers or Hugging Face encoder, with model2vec.

model2vec embeds every token of the teacher's vocabulary with the teacher (one forward pass per token, mean
pooled), reduces the vectors with PCA and weights them by estimated token frequency (SIF). The result is loaded
as sentence-transformers' ``StaticEmbedding.from_model2vec`` and saved with a ``Normalize`` layer, so it runs
wherever a koembed model runs (bench, eval, encode, index, serve) and can be fine-tuned on pairs with
``koembed train`` (``model.type: static``, ``model.base``: the distilled folder).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import Any

from koembed.errors import ModelLoadError
from koembed.files import require_empty_folder, staged_folder
from koembed.models.locate import resolve_model
from koembed.models.static import describe_static


def teacher_encoder_path(teacher: str) -> str:
    """Where the teacher's Hugging Face encoder is: a sentence-transformers folder may keep its Transformer module
    in a subfolder (``0_Transformer``); a hub id or plain encoder folder is returned as it is."""
    path = Path(resolve_model(teacher)).expanduser()
    modules = path / "modules.json"
    if path.is_dir() and modules.is_file():
        for module in json.loads(modules.read_text(encoding="utf-8")):
            if str(module.get("type", "")).endswith("Transformer"):
                return str(path / module.get("path", ""))
        raise ModelLoadError(f"{path} has no Transformer module to distil (is it already a static model?)")
    if path.exists() and not (path / "config.json").is_file():
        raise ModelLoadError(f"{path} holds neither a sentence-transformers model nor a Hugging Face encoder")
    return str(path) if path.exists() else teacher


def distill(teacher: str, out_dir: str | Path, pca_dims: int | None = 256, device: str | None = "cpu",
            overwrite: bool = False) -> dict[str, Any]:
    """Distil ``teacher`` (hub id, folder or alias) into a static model saved at ``out_dir``; returns what was made.

    ``pca_dims``: the output dimension (None keeps the teacher's); model2vec's defaults otherwise (SIF weighting
    1e-4, mean pooling of each token's forward pass). Weights are kept in float32 so they can be fine-tuned. The
    folder is staged and renamed into place, so a failure leaves nothing; an existing non-empty ``out_dir`` is
    refused unless ``overwrite``.
    """
    try:
        from model2vec.distill import distill as model2vec_distill
    except ImportError as exc:
        raise ModelLoadError("distillation needs model2vec and skeletoken (koembed's dependencies): "
                             "pip install model2vec==0.10.0 skeletoken==0.6.1") from exc
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, StaticEmbedding

    out_dir = require_empty_folder(out_dir, ModelLoadError, overwrite)
    source = teacher_encoder_path(teacher)
    try:
        distilled = model2vec_distill(source, pca_dims=pca_dims, device=device, quantize_to="float32")
    except OSError as exc:
        raise ModelLoadError(f"could not load the teacher {teacher!r} ({exc}); download it where the hub is "
                             "reachable and pass its folder") from None
    with tempfile.TemporaryDirectory() as scratch:
        distilled.save_pretrained(scratch)
        static = StaticEmbedding.from_model2vec(scratch)
    model = SentenceTransformer(modules=[static, Normalize()], device="cpu")
    with staged_folder(out_dir, replace=True) as stage:
        model.save(str(stage))
    return {"out": str(out_dir), "teacher": teacher, "pca_dims": pca_dims, **(describe_static(model) or {})}
