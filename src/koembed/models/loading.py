"""Load embedding models by hub id, local folder or alias, and build the BGE-m3 architecture on any encoder.

BGE-m3 is an XLM-RoBERTa encoder + CLS pooling + L2 normalisation; :func:`build_model` builds that shape on any
Hugging Face encoder. :func:`load_model` takes a :class:`~koembed.models.spec.ModelSpec` (or a name) and returns
an :class:`~koembed.models.spec.Encoder`: a ``SentenceTransformer``, or an ONNX copy run by onnxruntime. Where the
files are is :mod:`koembed.models.locate`'s job, how the model runs :func:`koembed.models.precision.resolve`'s.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.errors import ModelLoadError
from koembed.models.checks import require_finite
from koembed.models.locate import from_hub, is_hub_id, model_identity, resolve_model
from koembed.models.onnx import GraphEncoder, OnnxEncoder, cached_export
from koembed.models.precision import STATIC_GRAPH, Resolved, resolve
from koembed.models.prompts import apply_prompt_overrides
from koembed.models.spec import OPENVINO_BACKENDS, Encoder, ModelSpec, Pooling
from koembed.models.static import is_static_folder, load_static_folder, static_module

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

BGE_M3 = "BAAI/bge-m3"


def load_model(model: ModelSpec | str, **settings: Any) -> Encoder:
    """Load a model by hub id, local folder, or alias (``minilm``), run as ``model`` (a :class:`ModelSpec`, or a
    name with ``settings`` such as ``precision="bf16"``) says.

    How it runs is decided first, by :func:`koembed.models.precision.resolve` (bad settings fail before anything
    is loaded), and applied as decided, so what stored embeddings record before a load is what it gives.
    A static model folder (``StaticEmbedding``: koembed's static training, ``koembed distill``, a model2vec
    folder) loads as sentence-transformers loads it, on the CPU unless a device is given, in float32 under
    ``auto``, and has no length limit. A local folder without ``modules.json`` (a plain Hugging Face encoder) is
    wrapped as BGE-m3 is: ``pooling`` (CLS by default) + normalisation. A hub id is looked up in the local cache
    first; if it is not there and the hub cannot be reached, :class:`ModelLoadError` says so and suggests a path.
    ``precision`` casts the weights to bf16/fp16; :func:`koembed.models.encode` still returns float32.
    ``backend`` ``onnx``/``onnx-int8`` returns a :class:`koembed.models.onnx.OnnxEncoder` (CPU only, fp32 or int8
    weights), exported once into the koembed cache; ``openvino``/``openvino-int8`` a
    :class:`koembed.models.openvino.OpenVinoEncoder` on the same cached fp32 export; a ``koembed export`` folder
    loads as the backend it was exported for (or with OpenVINO, for an ``onnx`` export). ``auto`` (the default) is
    the fastest setting measured for the device and CPU (:func:`koembed.models.precision.auto_setting`).
    ``query_prompt`` / ``passage_prompt`` replace the model's own prompts (:mod:`koembed.models.prompts`).
    """
    spec = ModelSpec.of(model, **settings)
    plan = resolve(spec)
    encoder = _load_torch(spec, plan) if plan.backend == "torch" else _load_graph(spec, plan)
    apply_prompt_overrides(encoder, spec.query_prompt, spec.passage_prompt)
    return encoder


def _load_graph(spec: ModelSpec, plan: Resolved) -> GraphEncoder:
    """The export folder ``plan`` names, or the model's export from the cache (exported from its fp32 torch weights
    on the CPU the first time): for ``plan.backend``, or the fp32 ``onnx`` one that OpenVINO runs."""
    openvino = plan.backend in OPENVINO_BACKENDS
    folder, prompts = plan.export, None
    if folder is None:
        source = _sentence_transformer(spec.name, device="cpu", pooling=spec.pooling)
        require_finite(source, resolve_model(spec.name))
        if static_module(source) is not None:  # a hub model resolve() could not look into before the download
            raise ModelLoadError(STATIC_GRAPH.format(name=spec.name))
        folder = cached_export(source, "onnx" if openvino else plan.backend, model_identity(spec.name))
        prompts = dict(getattr(source, "prompts", None) or {})  # the cache is keyed by weights: prompts may differ
    if openvino:
        from koembed.models.openvino import OpenVinoEncoder

        encoder: GraphEncoder = OpenVinoEncoder(folder, plan.backend, plan.precision)
    else:
        encoder = OnnxEncoder(folder)
    if prompts is not None:
        encoder.prompts = prompts
    if spec.max_seq_length is not None:
        encoder.max_seq_length = spec.max_seq_length
    return encoder


def _load_torch(spec: ModelSpec, plan: Resolved) -> SentenceTransformer:
    """The sentence-transformers model, in ``plan.precision``, truncating at ``spec.max_seq_length``."""
    loaded = _sentence_transformer(spec.name, spec.device, spec.pooling)
    require_finite(loaded, resolve_model(spec.name))
    static = static_module(loaded)
    if static is not None and plan.precision == "fp32":
        loaded.float()  # vectors saved in float16 (the bundled static-ko) run in float32
    if spec.max_seq_length is not None:
        if static is not None:
            static.tokenizer.enable_truncation(spec.max_seq_length)
        else:
            loaded.max_seq_length = spec.max_seq_length
    if plan.precision != "fp32":
        import torch

        loaded.to(torch.bfloat16 if plan.precision == "bf16" else torch.float16)
    return loaded


def _sentence_transformer(name: str, device: str | None = None, pooling: Pooling = "cls") -> SentenceTransformer:
    """A sentence-transformers model from a folder, the local hub cache, or the hub (fp32, as saved)."""
    from sentence_transformers import SentenceTransformer

    target = resolve_model(name)
    path = Path(target).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path} is a file; pass the model's folder")
        if (path / "modules.json").exists():
            if is_static_folder(path):  # checked file by file; a lookup is fastest on the CPU
                return load_static_folder(path, device or "cpu")
            return SentenceTransformer(str(path), device=device)
        if (path / "config.json").exists():
            return build_model(str(path), pooling=pooling, device=device)
        raise ModelLoadError(f"{path} holds neither a sentence-transformers model (modules.json) "
                             "nor a Hugging Face encoder (config.json)")
    if not is_hub_id(target):
        raise ModelLoadError(f"no model folder at {target}")
    return from_hub(lambda target, **kw: SentenceTransformer(target, device=device, **kw), target)


def build_model(base: str, pooling: Pooling = "cls", normalize: bool = True, max_seq_length: int | None = None,
                device: str | None = None) -> SentenceTransformer:
    """The BGE-m3 architecture on any Hugging Face encoder: Transformer -> Pooling -> Normalize.

    With ``base="BAAI/bge-m3"``, CLS pooling and normalisation this is the card's model (1024 dimensions).
    """
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer

    transformer = Transformer(base, max_seq_length=max_seq_length)
    modules = [transformer, Pooling(transformer.get_embedding_dimension(), pooling_mode=pooling)]
    if normalize:
        modules.append(Normalize())
    return SentenceTransformer(modules=modules, device=device)
