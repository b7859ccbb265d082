"""How a model runs (backend, weight precision), decided once, before anything is loaded: :func:`resolve`.

Every path asks the same function: :func:`koembed.models.load_model` applies its answer, stored embeddings and
indexes record it (:func:`expected_precision`) before a long load, and the Ray engine's workers check their
loaded model against it (:func:`model_precision`), so ``auto`` cannot mean one thing to the loader and another to
the store.
"""

from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass, replace
from pathlib import Path

from koembed.errors import ModelLoadError
from koembed.models.locate import SPARSE_HEAD, local_folder
from koembed.models.onnx import GraphEncoder, export_backend, is_export
from koembed.models.spec import (
    BACKENDS,
    GRAPH_BACKENDS,
    ONNX_BACKENDS,
    OPENVINO_BACKENDS,
    PRECISIONS,
    Encoder,
    ModelSpec,
    RunSettings,
)
from koembed.models.static import is_static_folder

CPUINFO = Path("/proc/cpuinfo")
CPUINFO_ENV = "KOEMBED_CPUINFO"  # another cpuinfo file: auto decides as on that CPU (the test suite pins one)
CPU_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})  # native bf16 matmuls: bf16 is faster than fp32


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (Linux ``/proc/cpuinfo``, or the file ``$KOEMBED_CPUINFO`` names: the
    ``auto`` choices of another CPU, e.g. to reproduce what it records); empty where there is no such file."""
    try:
        text = Path(os.environ.get(CPUINFO_ENV) or CPUINFO).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return frozenset()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def _device_type(device: str | None) -> str:
    """``cuda``/``cpu``/... for a torch device string; ``None`` is what sentence-transformers would pick."""
    if device is None:
        from sentence_transformers.util import get_device_name

        device = get_device_name()
    return str(device).split(":", 1)[0]


def resolve_precision(precision: str, device: str | None) -> str:
    """The weight precision (``fp32``, ``bf16`` or ``fp16``) to run on ``device`` (``None``: the default device).

    ``fp32`` and ``bf16`` are taken as asked (bf16 runs anywhere, fast only with hardware support).
    ``fp16`` needs a CUDA device: half-precision matmuls on a CPU are slow or unsupported, so it is refused.
    ``auto`` is ``bf16`` on a CPU with ``amx_bf16`` or ``avx512_bf16`` (read from ``/proc/cpuinfo``; no file,
    no flags) and on a CUDA GPU with bf16 support (``torch.cuda.is_bf16_supported()``), otherwise ``fp32``.
    Reduced precision changes embeddings slightly (cosine to fp32 > 0.99 per text); an unknown name is a
    :class:`ModelLoadError`.
    """
    if precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision {precision!r}: use {', '.join(PRECISIONS)}")
    if precision in ("fp32", "bf16"):
        return precision
    kind = _device_type(device)
    if precision == "fp16":
        if kind != "cuda":
            raise ModelLoadError(f"fp16 on {kind} is refused: half precision is slow or unsupported there. Use "
                                 "bf16 (fast on CPUs with AMX/AVX512-BF16), fp32, or a CUDA device (--device cuda)")
        return precision
    if kind == "cuda":
        import torch

        return "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if kind == "cpu" and cpu_flags() & CPU_BF16_FLAGS:
        return "bf16"
    return "fp32"


@dataclass(frozen=True)
class Resolved:
    """How a model will run: ``backend`` (torch, onnx, onnx-int8, openvino, openvino-int8), ``precision`` of its
    weights (fp32, bf16, fp16 for torch; fp32 or bf16 for openvino; fp32 or int8 for the others), whether it is
    ``static`` (a table lookup), and the ``export`` folder it is (a ``koembed export`` folder), if it is one."""

    backend: str
    precision: str
    static: bool = False
    export: Path | None = None

    @property
    def label(self) -> str:
        """What stored embeddings record and :func:`model_precision` reports: the torch precision (``bf16``), or
        the graph backend (``onnx-int8``; ``openvino-bf16`` for OpenVINO in bf16)."""
        if self.backend == "torch":
            return self.precision
        if self.backend == "openvino" and self.precision != "fp32":
            return f"openvino-{self.precision}"
        return self.backend


STATIC_GRAPH = ("{name} is a static model: encoding it is a table lookup, which no ONNX graph makes faster; run it "
                "with --backend torch (koembed export --backend model2vec writes a copy that runs with numpy alone)")
# backend ``auto`` on a CPU, by what it computes natively: the fastest setting measured whose embeddings stay within
# cosine 0.99 of fp32 (ndcg@10 within 0.01), docs/BENCHMARKS.md. AMX: torch bf16 3.2x plain fp32 on MiniLM, 4.6x at
# bge-m3's size; AVX512-BF16 without AMX (AMD Zen 4): OpenVINO bf16, 1.9x-2.0x wall on MiniLM against torch bf16's
# 1.5x-1.8x, cosine 1.0000 (onnx-int8 and NNCF's full int8 are faster but move embeddings to cosine 0.97-0.98);
# AVX2 (AMD Zen 3, no AVX-512, no bf16, no VNNI): OpenVINO fp32, 1.2x-1.7x.
AUTO_AMX = ("torch", "bf16")
AUTO_BF16 = ("openvino", "bf16")
AUTO_AVX2 = ("openvino", "fp32")


def auto_setting(device: str | None, static: bool = False) -> tuple[str, str]:
    """(backend, precision) that backend ``auto`` and precision ``auto`` pick for a model on ``device``: torch
    (``auto`` precision: bf16/fp16 where the GPU has it) off the CPU and for static models; on a CPU the measured
    fastest for its features (:data:`AUTO_AMX`, :data:`AUTO_BF16`, :data:`AUTO_AVX2`); torch when the chosen
    runtime is not installed."""
    if static or _device_type(device) != "cpu":
        return "torch", "auto"
    flags = cpu_flags()
    backend, precision = (AUTO_AMX if "amx_bf16" in flags else AUTO_BF16 if flags & CPU_BF16_FLAGS else AUTO_AVX2)
    if backend in OPENVINO_BACKENDS and importlib.util.find_spec("openvino") is None:
        return "torch", "auto"
    return backend, precision


def decide(settings: RunSettings, *, static: bool = False, exported: str | None = None) -> Resolved:
    """The rule of :func:`resolve` for a model already known to be ``static`` or an export for the graph backend
    ``exported``; a transformer by default. Bad settings are a :class:`ModelLoadError`.

    ``auto`` backend with ``auto`` precision: :func:`auto_setting`; with an explicit precision: torch in that
    precision. torch: :func:`resolve_precision`, except that ``auto`` keeps a static model in fp32 (a
    lookup is no faster in bf16). An export runs as the backend it was exported for (asking for the other ONNX
    backend is an error; openvino runs an ``onnx`` export). The graph backends run on the CPU and refuse a static
    model; onnx/onnx-int8 and openvino-int8 run their weights as exported or compressed (``auto``/``fp32``
    precision), openvino runs fp32 or bf16 (``auto``: bf16 on a CPU with AMX/AVX512-BF16).
    """
    if settings.backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {settings.backend!r}: use {', '.join(BACKENDS)}")
    if settings.precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision {settings.precision!r}: use {', '.join(PRECISIONS)}")
    backend, precision = settings.backend, settings.precision
    if exported is not None:
        if backend in ONNX_BACKENDS and backend != exported:
            raise ModelLoadError(f"it is a {exported} export; export it again with --backend {backend}, or load "
                                 "the original model")
        if backend in OPENVINO_BACKENDS and exported != "onnx":
            raise ModelLoadError(f"it is a {exported} export; OpenVINO runs the fp32 graph: export it with "
                                 "--backend onnx")
        backend = backend if backend in OPENVINO_BACKENDS else exported
    elif backend == "auto":  # picks both, or with an explicit precision (a torch precision) the torch backend
        backend, precision = auto_setting(settings.device, static) if precision == "auto" else ("torch", precision)
    if backend == "torch":
        precision = "fp32" if static and precision == "auto" else resolve_precision(precision, settings.device)
        return Resolved("torch", precision, static)
    if settings.device is not None and not str(settings.device).startswith("cpu"):
        raise ModelLoadError(f"{backend} runs on the CPU; on {settings.device} use --backend torch with "
                             "--precision bf16/fp16")
    if backend == "openvino" and precision in ("fp32", "bf16", "auto"):
        return Resolved(backend, resolve_precision(precision, "cpu"), static)
    if precision not in ("fp32", "auto"):
        raise ModelLoadError(f"--precision {precision} applies to the torch backend (and fp32/bf16 to openvino); "
                             f"{backend} runs {'int8' if backend.endswith('-int8') else 'fp32'} weights")
    return Resolved(backend, "int8" if backend.endswith("-int8") else "fp32", static)


def resolve(spec: ModelSpec) -> Resolved:
    """How :func:`koembed.models.load_model` will run ``spec``, from its settings and its files, without loading it.

    Whether the model is an export or static is read from its folder (an alias's, a path's, or a hub id's snapshot
    in the local Hugging Face cache): a hub id that is not cached yet is taken for a transformer.
    """
    if is_export(spec.name):
        try:
            return replace(decide(spec.settings, exported=export_backend(spec.name)), export=Path(spec.name))
        except ModelLoadError as exc:
            raise ModelLoadError(f"{spec.name}: {exc}") from None
    folder = local_folder(spec.name)
    static = folder is not None and is_static_folder(folder)
    if static and spec.backend in GRAPH_BACKENDS:
        raise ModelLoadError(STATIC_GRAPH.format(name=spec.name))
    if spec.backend == "auto" and folder is not None and (folder / SPARSE_HEAD).is_file():
        # bge-m3's sparse/ColBERT heads run on torch only: auto keeps what an index builds from them
        return decide(replace(spec.settings, backend="torch"))
    return decide(spec.settings, static=static)


def model_precision(model: Encoder) -> str:
    """``fp32``, ``bf16`` or ``fp16``: the dtype of the model's weights (what :func:`load_model` cast them to);
    a graph encoder's label otherwise (``onnx-int8``, ``openvino-bf16``: :attr:`Resolved.label`). Stored
    embeddings record it, so no two forms are mixed."""
    import torch

    if isinstance(model, GraphEncoder):
        return model.label
    dtype = next(model.parameters()).dtype  # type: ignore[attr-defined]  # a torch model: not in the protocol
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def expected_precision(spec: ModelSpec) -> str:
    """What :func:`model_precision` of ``load_model(spec)`` will be, without loading it (:func:`resolve`'s label):
    lets stored embeddings be checked before a long model load."""
    return resolve(spec).label
