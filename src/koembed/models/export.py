"""``koembed export``: write a model as an ONNX folder (fp32 or int8) and check the copy against the original."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from koembed.data import sample_texts
from koembed.errors import ModelLoadError
from koembed.models.embed import encode
from koembed.models.loading import load_model, model_identity
from koembed.models.onnx import OnnxEncoder, check_backend, export_backend, export_onnx, is_export


def export_model(name: str, out_dir: str | Path, backend: str = "onnx-int8", overwrite: bool = False,
                 check_texts: Sequence[str] | None = None) -> dict[str, Any]:
    """Export the model ``name`` (hub id, folder or ``minilm``) to ``out_dir`` and check the copy.

    The check embeds ``check_texts`` (default: the bundled Korean sample's passages and queries) with the fp32
    torch model and with the export, and reports their cosine (mean, min): about 1.0 for ``onnx``, about
    0.98 for ``onnx-int8``. Returns the report: folder, backend, files and sizes, the check.
    """
    if is_export(name):
        raise ModelLoadError(f"{name} is already an ONNX export ({export_backend(name)}); export the "
                             "original model")
    import numpy as np

    check_backend(backend)
    source = load_model(name, device="cpu")
    out = export_onnx(source, out_dir, backend, source=model_identity(name), overwrite=overwrite)
    check_texts = sample_texts() if check_texts is None else check_texts
    reference = encode(source, check_texts, show_progress=False)
    copy = encode(OnnxEncoder(out), check_texts, show_progress=False)
    cosine = (reference * copy).sum(1) / (np.linalg.norm(reference, axis=1) * np.linalg.norm(copy, axis=1))
    files = {p.name: p.stat().st_size for p in sorted(out.iterdir()) if p.is_file()}
    return {"out": str(out), "backend": backend, "files": files, "megabytes": round(sum(files.values()) / 2**20, 1),
            "check": {"texts": len(check_texts), "cosine_mean": round(float(cosine.mean()), 4),
                      "cosine_min": round(float(cosine.min()), 4)}}
