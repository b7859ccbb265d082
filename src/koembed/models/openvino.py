"""OpenVINO backends: koembed's own ONNX export (:mod:`koembed.models.onnx`, ``--backend onnx``) run by Intel's
OpenVINO runtime on the CPU, in fp32, bf16 (where the CPU computes it natively) or with int8 weights.

OpenVINO reads the ``.onnx`` graph directly (no conversion step, no optimum-intel: it pins transformers < 5.6,
docs/STACK.md). ``openvino`` runs it with ``INFERENCE_PRECISION_HINT`` f32 or bf16 (OpenVINO would pick bf16 by
itself on an AMX/AVX512-BF16 CPU; koembed sets the hint so fp32 means fp32). ``openvino-int8`` first compresses
every MatMul's weights to int8 with NNCF's ``compress_weights`` (asymmetric, per output channel: no calibration
data, activations stay in floating point), kept as OpenVINO IR in the koembed cache keyed by the export's
checksums. NNCF's full post-training quantisation (int8 activations as well) was measured and not kept: cosine to
fp32 0.966 on long Korean passages with all-MiniLM-L6-v2, under the 0.99 koembed asks (docs/BENCHMARKS.md).
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.errors import ModelLoadError
from koembed.files import staged_folder
from koembed.models.onnx import GraphEncoder, cache_root
from koembed.models.precision import Resolved

if TYPE_CHECKING:
    import numpy as np

IR_FILE = "model.xml"  # OpenVINO IR: the graph (xml) beside its weights (model.bin)
WEIGHT_COMPRESSION = {"mode": "int8_asym", "per_channel": True}


def int8_model(encoder: GraphEncoder) -> Path:
    """The IR of ``encoder``'s graph with int8 MatMul weights, made once per export (by its checksums) in the cache."""
    import logging

    import nncf
    import openvino as ov

    key = hashlib.sha256(json.dumps([encoder.meta.get("files"), WEIGHT_COMPRESSION, nncf.__version__],
                                    sort_keys=True).encode()).hexdigest()[:24]
    folder = cache_root() / "openvino" / f"int8-{key}"
    if not (folder / IR_FILE).is_file():
        nncf_log = logging.getLogger("nncf")
        level = nncf_log.level
        nncf_log.setLevel(logging.ERROR)  # its per-layer statistics table
        try:
            model = nncf.compress_weights(ov.Core().read_model(str(encoder.graph)),
                                          mode=nncf.CompressWeightsMode.INT8_ASYM)
        finally:
            nncf_log.setLevel(level)
        with staged_folder(folder, replace=True) as stage:
            ov.save_model(model, str(stage / IR_FILE), compress_to_fp16=False)
    return folder / IR_FILE


class OpenVinoEncoder(GraphEncoder):
    """An ``onnx`` (fp32) export run by OpenVINO on the CPU: ``backend`` ``openvino`` in ``precision`` fp32 or
    bf16, or ``openvino-int8`` (int8 weights); ``threads`` defaults to ``torch.get_num_threads()``. See
    :class:`~koembed.models.onnx.GraphEncoder` for the rest; each call runs its own infer request, so threads
    may share one encoder."""

    def __init__(self, folder: str | Path, backend: str = "openvino", precision: str = "fp32",
                 threads: int | None = None) -> None:
        try:
            import openvino as ov
        except ImportError as exc:
            raise ModelLoadError("--backend openvino needs the openvino package: pip install 'koembed[openvino]'"
                                 ) from exc
        super().__init__(folder)
        if self.backend != "onnx":
            raise ModelLoadError(f"{self.folder} is a {self.backend} export; OpenVINO runs the fp32 graph: export it "
                                 "with --backend onnx (openvino-int8 compresses its weights itself)")
        if threads is None:
            import torch

            threads = torch.get_num_threads()
        core = ov.Core()
        graph = int8_model(self) if backend == "openvino-int8" else self.graph
        config: dict[str, Any] = {"INFERENCE_PRECISION_HINT": "bf16" if precision == "bf16" else "f32",
                                  "PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": int(threads),
                                  # int8 weights only: on a VNNI/AMX CPU OpenVINO would also quantise activations
                                  # on the fly (to cosine 0.98 on the tiny test model), which openvino-int8 is not
                                  "DYNAMIC_QUANTIZATION_GROUP_SIZE": 0}
        self.compiled = core.compile_model(core.read_model(str(graph)), "CPU", config)
        self.backend, self.precision = backend, precision

    @property
    def label(self) -> str:
        return Resolved(self.backend, self.precision).label

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        request = self.compiled.create_infer_request()
        return request.infer(feed)[0].copy()
