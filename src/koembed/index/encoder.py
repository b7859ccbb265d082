"""The index's model: recorded at build time, reloaded and checked against the index before any search or add.

The check embeds a fixed probe text: a model of another dimension, or one that embeds the probe differently
(cosine < 0.99), is not the index's model. The same model on another device or in bf16 stays far above that.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.errors import ModelMismatchError
from koembed.index.faiss import normalized
from koembed.index.manifest import IndexManifest
from koembed.models import MODEL_ALIASES, EncodeOptions, Encoder, ModelSpec, encode, load_model, model_identity
from koembed.models.prompts import Prompts, Role, model_prompts
from koembed.models.static_numpy import NumpyStaticModel, numpy_static_folder

if TYPE_CHECKING:
    import numpy as np

# A fixed text embedded at build time: a model that embeds it differently at load time is not the index's model.
PROBE_TEXT = "koembed 색인 점검 문장: 전세 보증금은 계약이 끝나면 언제 돌려받을 수 있나요?"
PROBE_MIN_COSINE = 0.99


def embed(encoder: Encoder, texts: Sequence[str], options: EncodeOptions) -> np.ndarray:
    """Embeddings as float32, L2-normalised, so inner product is cosine (a no-op for normalising models)."""
    return normalized(encode(encoder, texts, options))


def index_prompts(manifest: IndexManifest) -> Prompts:
    """The query and passage prompts the index was built with (none for an index built before prompts)."""
    return Prompts(**manifest.model.get("prompts", {}))


def with_prompt(options: EncodeOptions, manifest: IndexManifest, role: Role) -> EncodeOptions:
    """``options`` with the index's recorded prompt for ``role``: the one its passages were embedded with."""
    return replace(options, prompt=index_prompts(manifest).for_role(role) or None)


def probe(encoder: Encoder) -> np.ndarray:
    return embed(encoder, [PROBE_TEXT], EncodeOptions(batch_size=1, show_progress=False))[0]


def normalized_by(encoder: Encoder) -> str:
    """``model`` when the model ends in a Normalize layer (its embeddings are unit vectors), else ``koembed``."""
    modules = encoder.modules() if hasattr(encoder, "modules") else []
    return "model" if any(type(m).__name__ == "Normalize" for m in modules) else "koembed"


def model_record(name: str, encoder: Encoder) -> dict[str, Any]:
    """What the manifest records of the model: identity, backend, and its probe embedding."""
    identity = model_identity(name)
    local = name not in MODEL_ALIASES and Path(name).expanduser().is_dir()
    return {**identity, "local": local, "backend": getattr(encoder, "backend", "torch"),
            "prompts": model_prompts(encoder).to_json(), "probe": [round(float(v), 7) for v in probe(encoder)]}


def checked_encoder(encoder: Encoder | None, manifest: IndexManifest, index_dir: Path, device: str | None = None
                    ) -> Encoder:
    """``encoder`` (None: the manifest's model, loaded on ``device``; a plain static model on the CPU runs with
    numpy, :mod:`koembed.models.static_numpy`) after checking it is the index's model."""
    record = manifest.model
    if encoder is None:
        label = record["name"]
        folder = Path(str(record.get("resolved", ""))).expanduser()
        if device in (None, "cpu") and record.get("backend", "torch") in ("torch", "auto") and \
                numpy_static_folder(folder):  # the same embeddings without importing torch (seconds)
            encoder = NumpyStaticModel(folder)
        else:
            encoder = load_model(ModelSpec(record["resolved"] if record["local"] else record["name"], device=device,
                                           backend=record.get("backend", "torch"), precision="fp32"))
    else:
        label = type(encoder).__name__
    vector = probe(encoder)
    built = f"{index_dir} was built with {record['name']} ({manifest.dimension} dimensions)"
    if vector.shape[0] != manifest.dimension:
        raise ModelMismatchError(f"{built}, but {label} gives {vector.shape[0]}-dimensional embeddings: search "
                                 "with the index's own model, or rebuild the index with this one")
    import numpy as np

    cosine = float(vector @ np.asarray(record["probe"], dtype=np.float32))
    if cosine < PROBE_MIN_COSINE:
        raise ModelMismatchError(f"{built}, but {label} embeds the probe text differently (cosine {cosine:.3f}): "
                                 "it is another model; search with the index's own model, or rebuild")
    return encoder
