"""Which weight precision a model runs in on which device, decided before anything is loaded."""

from __future__ import annotations

from pathlib import Path

from koembed.errors import ModelLoadError
from koembed.models.onnx import check_backend, export_backend, is_export
from koembed.models.spec import ONNX_BACKENDS, PRECISIONS, Encoder, ModelSpec

CPUINFO = Path("/proc/cpuinfo")
CPU_BF16_FLAGS = frozenset({"amx_bf16", "avx512_bf16"})  # native bf16 matmuls: bf16 is faster than fp32


def cpu_flags() -> frozenset[str]:
    """The CPU feature flags of this machine (Linux ``/proc/cpuinfo``); empty where there is no such file."""
    try:
        text = CPUINFO.read_text(encoding="utf-8", errors="replace")
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


def model_precision(model: Encoder) -> str:
    """``fp32``, ``bf16`` or ``fp16``: the dtype of the model's weights (what :func:`load_model` cast them to);
    ``onnx`` or ``onnx-int8`` for an ONNX model. Stored embeddings record it, so no two forms are mixed."""
    import torch

    if getattr(model, "backend", "torch") != "torch":
        return str(model.backend)  # type: ignore[attr-defined]  # only an OnnxEncoder has one (getattr above)
    dtype = next(model.parameters()).dtype  # type: ignore[attr-defined]  # a torch module; Encoder has no parameters
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def expected_precision(spec: ModelSpec) -> str:
    """What :func:`model_precision` of ``load_model(spec)`` will be, without loading it: lets stored
    embeddings be checked before a long model load."""
    check_backend(spec.backend, spec.precision, spec.device)
    if is_export(spec.name):
        return export_backend(spec.name)
    return spec.backend if spec.backend in ONNX_BACKENDS else resolve_precision(spec.precision, spec.device)
