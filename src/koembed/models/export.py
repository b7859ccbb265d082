"""``koembed export``: write a model as an ONNX folder (fp32 or int8), or a static model as a model2vec folder, and
check the copy against the original."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from koembed.data import sample_texts
from koembed.errors import ModelLoadError
from koembed.files import require_empty_folder, staged_folder
from koembed.models.embed import encode
from koembed.models.loading import load_model
from koembed.models.locate import model_identity
from koembed.models.onnx import OnnxEncoder, export_backend, export_onnx, is_export
from koembed.models.spec import EXACT, ONNX_BACKENDS, ModelSpec
from koembed.models.static import static_module

EXPORT_BACKENDS = (*ONNX_BACKENDS, "model2vec")


def export_model(name: str, out_dir: str | Path, backend: str = "onnx-int8", overwrite: bool = False,
                 check_texts: Sequence[str] | None = None) -> dict[str, Any]:
    """Export the model ``name`` (hub id, folder or alias) to ``out_dir`` and check the copy.

    ``onnx`` / ``onnx-int8``: an ONNX graph for onnxruntime (transformer models). ``model2vec``: a static model as
    a model2vec folder, which ``model2vec.StaticModel.from_pretrained`` runs with numpy alone (no torch); koembed
    and sentence-transformers load it too. The check embeds ``check_texts`` (default: the bundled Korean sample's
    passages and queries) with the fp32 torch model and with the export, and reports their cosine (mean, min):
    about 1.0 for ``onnx`` and ``model2vec``, about 0.98 for ``onnx-int8``. Returns the report: folder, backend,
    files and sizes, the check.
    """
    if is_export(name):
        raise ModelLoadError(f"{name} is already an ONNX export ({export_backend(name)}); export the "
                             "original model")
    import numpy as np

    if backend not in EXPORT_BACKENDS:
        raise ModelLoadError(f"unknown export backend {backend!r}: use {', '.join(EXPORT_BACKENDS)}")
    require_empty_folder(out_dir, ModelLoadError, overwrite)
    source = load_model(ModelSpec(name, EXACT, device="cpu"))  # the fp32 torch model the copy is made of
    static = static_module(source) is not None
    if static != (backend == "model2vec"):
        raise ModelLoadError(f"{name} is a static model: export it with --backend model2vec (an ONNX graph would "
                             "not encode it faster)" if static else
                             f"--backend model2vec exports static models; {name} is a transformer: use onnx or "
                             "onnx-int8, or koembed distill to make a static model from it")
    check_texts = sample_texts() if check_texts is None else check_texts
    reference = encode(source, check_texts, show_progress=False)
    if static:
        out = export_model2vec(source, out_dir, overwrite=overwrite)
        copy = np.asarray(load_model2vec(out).encode(list(check_texts)), dtype=np.float32)
    else:
        out = export_onnx(source, out_dir, backend, source=model_identity(name), overwrite=overwrite)
        copy = encode(OnnxEncoder(out), check_texts, show_progress=False)
    cosine = (reference * copy).sum(1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(copy, axis=1))
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    return {"out": str(out), "backend": backend, "files": files, "megabytes": round(sum(files.values()) / 2**20, 1),
            "check": {"texts": len(check_texts), "cosine_mean": round(float(cosine.mean()), 4),
                      "cosine_min": round(float(cosine.min()), 4)}}


def export_model2vec(model: Any, out_dir: str | Path, overwrite: bool = False) -> Path:
    """Write a static sentence-transformers model as a model2vec folder (vectors, tokenizer, config), staged and
    renamed into place; normalised if the model normalises, no length limit (as the model has none)."""
    from model2vec import StaticModel
    from tokenizers import Tokenizer

    module = static_module(model)
    if module is None:
        raise ModelLoadError("export_model2vec exports static models; this one is a transformer")
    if getattr(module, "spacing", "none") != "none":
        raise ModelLoadError(f"the model respaces its texts with Kiwi (spacing {module.spacing}), which a model2vec "
                             "folder cannot record: model2vec would encode the texts as typed. Run the model itself "
                             "(koembed load_model, or sentence-transformers with trust_remote_code=True)")
    out_dir = require_empty_folder(out_dir, ModelLoadError, overwrite)
    vectors = module.embedding.weight.detach().float().cpu().numpy()
    tokenizer = Tokenizer.from_str(module.tokenizer.to_str())
    tokenizer.no_truncation()
    normalize = any(type(m).__name__ == "Normalize" for m in model.modules())
    exported = StaticModel(vectors=vectors, tokenizer=tokenizer, normalize=normalize, max_length=None)
    with staged_folder(out_dir, replace=True) as stage:
        exported.save_pretrained(str(stage))
    return out_dir


def load_model2vec(folder: str | Path) -> Any:
    """A model2vec folder as model2vec's own ``StaticModel`` (numpy inference), as a user without torch runs it."""
    from model2vec import StaticModel

    return StaticModel.from_pretrained(str(folder), force_download=False)
