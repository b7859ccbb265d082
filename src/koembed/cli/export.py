"""``koembed export``: a model as an ONNX folder (fp32 or int8), or a static model as a model2vec folder."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from koembed.cli.common import ModelOpt, console, exits_on_error, quiet_libraries
from koembed.models.export import export_model


@exits_on_error()
def export(
    model: ModelOpt,
    out: Annotated[Path, typer.Option(help="New (or empty) folder for the exported copy.", metavar="DIR")],
    backend: Annotated[str, typer.Option(help="onnx (fp32 graph) or onnx-int8 (int8 MatMul weights, per "
                                         "channel; 1.6x (MiniLM) to 4x (bge-m3 size) torch fp32's speed on a "
                                         "VNNI CPU); model2vec for a static model (runs with numpy alone).",
                                         metavar="BACKEND")
                       ] = "onnx-int8",
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")] = False,
) -> None:
    """Export a model to ONNX (optionally int8) for onnxruntime, or a static model to model2vec; use the folder as
    any model (--model DIR)."""
    quiet_libraries()
    report = export_model(model, out, backend=backend, overwrite=overwrite)
    check = report["check"]
    console.print(f"export: {report['out']} ({report['backend']}, {report['megabytes']} MB); cosine to the fp32 "
                  f"torch model on {check['texts']} sample texts: mean {check['cosine_mean']:.4f}, "
                  f"min {check['cosine_min']:.4f}", highlight=False)
