"""How a model runs (backend, weight precision), decided once, before anything is loaded: :func:`resolve`.

Every path asks the same function: :func:`koembed.models.load_model` applies its answer, stored embeddings and
indexes record it (:func:`expected_precision`) before a long load, and the Ray engine's workers check their
loaded model against it (:func:`model_precision`), so ``auto`` cannot mean one thing to the loader and another to
the store.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from koembed.errors import ModelLoadError
from koembed.models.locate import local_folder
from koembed.models.onnx import export_backend, is_export
from koembed.models.spec import BACKENDS, ONNX_BACKENDS, PRECISIONS, Encoder, ModelSpec, RunSettings
from koembed.models.static import is_static_folder

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


@dataclass(frozen=True)
class Resolved:
    """How a model will run: ``backend`` (torch, onnx, onnx-int8), ``precision`` of its weights (fp32, bf16, fp16
    for torch; fp32 or int8 for the graphs), whether it is ``static`` (a table lookup), and the ``export`` folder it
    is (a ``koembed export`` folder), if it is one."""

    backend: str
    precision: str
    static: bool = False
    export: Path | None = None

    @property
    def label(self) -> str:
        """What stored embeddings record and :func:`model_precision` reports: the torch precision (``bf16``), or
        the graph backend (``onnx-int8``)."""
        return self.precision if self.backend == "torch" else self.backend


STATIC_GRAPH = ("{name} is a static model: encoding it is a table lookup, which no ONNX graph makes faster; run it "
                "with --backend torch (koembed export --backend model2vec writes a copy that runs with numpy alone)")


def decide(settings: RunSettings, *, static: bool = False, exported: str | None = None) -> Resolved:
    """The rule of :func:`resolve` for a model already known to be ``static`` or an export for the graph backend
    ``exported``; a transformer by default. Bad settings are a :class:`ModelLoadError`.

    torch: :func:`resolve_precision`, except that ``auto`` keeps a static model in fp32 (a lookup is no faster in
    bf16). An export runs as the backend it was exported for (asking for the other graph backend is an error);
    the graph backends run fp32 or int8 weights as exported, on the CPU, and refuse a static model.
    """
    if settings.backend not in BACKENDS:
        raise ModelLoadError(f"unknown backend {settings.backend!r}: use {', '.join(BACKENDS)}")
    if settings.precision not in PRECISIONS:
        raise ModelLoadError(f"unknown precision {settings.precision!r}: use {', '.join(PRECISIONS)}")
    backend = settings.backend
    if exported is not None:
        if backend in ONNX_BACKENDS and backend != exported:
            raise ModelLoadError(f"it is a {exported} export; export it again with --backend {backend}, or load "
                                 "the original model")
        backend = exported
    if backend == "torch":
        precision = "fp32" if static and settings.precision == "auto" else resolve_precision(settings.precision,
                                                                                               settings.device)
        return Resolved("torch", precision, static)
    if settings.precision not in ("fp32", "auto"):
        raise ModelLoadError(f"--precision {settings.precision} applies to the torch backend; {backend} runs "
                             f"{'int8' if backend == 'onnx-int8' else 'fp32'} weights as exported")
    if settings.device is not None and not str(settings.device).startswith("cpu"):
        raise ModelLoadError(f"{backend} runs on the CPU (onnxruntime CPU build); on {settings.device} use "
                             "--backend torch with --precision bf16/fp16")
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
    if static and spec.backend in ONNX_BACKENDS:
        raise ModelLoadError(STATIC_GRAPH.format(name=spec.name))
    return decide(spec.settings, static=static)


def model_precision(model: Encoder) -> str:
    """``fp32``, ``bf16`` or ``fp16``: the dtype of the model's weights (what :func:`load_model` cast them to);
    ``onnx`` or ``onnx-int8`` for an ONNX model. Stored embeddings record it, so no two forms are mixed."""
    import torch

    if getattr(model, "backend", "torch") != "torch":
        return str(model.backend)  # type: ignore[attr-defined]  # an OnnxEncoder: not in the Encoder protocol
    dtype = next(model.parameters()).dtype  # type: ignore[attr-defined]  # a torch model: not in the protocol
    return {torch.bfloat16: "bf16", torch.float16: "fp16"}.get(dtype, "fp32")


def expected_precision(spec: ModelSpec) -> str:
    """What :func:`model_precision` of ``load_model(spec)`` will be, without loading it (:func:`resolve`'s label):
    lets stored embeddings be checked before a long model load."""
    return resolve(spec).label
