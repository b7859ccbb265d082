"""A static model run with numpy and ``tokenizers`` alone: what sentence-transformers computes for a
``StaticEmbedding`` (+ ``Normalize``) folder, without importing torch or sentence-transformers.

Written by hand because importing sentence-transformers (and torch) takes seconds, while the computation is a
table lookup: the mean of a text's token vectors (its tokenizer's ids, no special tokens, no length limit, as
``StaticEmbedding`` reads it), in float32, then L2-normalised when the folder ends in ``Normalize``. koembed's index
commands use it to reload an index's static model on the CPU (:func:`koembed.index.encoder.checked_encoder`), so
``koembed index add`` and a dense search of a static index start in milliseconds; the index's probe embedding
still checks it against the model the index was built with. Models that respace their texts with Kiwi
(:mod:`koembed.models.spacing`) and model2vec folders are not handled here (:func:`numpy_static_folder` says no).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.errors import ModelLoadError

if TYPE_CHECKING:
    import numpy as np

ST_STATIC = "sentence_transformers.sentence_transformer.modules.static_embedding.StaticEmbedding"
ST_NORMALIZE = "sentence_transformers.base.modules.normalize.Normalize"
CHUNK = 256  # texts whose token vectors are gathered at once


def numpy_static_folder(path: str | Path) -> bool:
    """Whether ``path`` is a folder this module runs: sentence-transformers' ``StaticEmbedding`` saved with its
    ``model.safetensors`` and ``tokenizer.json``, optionally followed by ``Normalize``, nothing else."""
    folder = Path(path).expanduser()
    try:
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        types = [str(m["type"]) for m in modules]
        first = folder / str(modules[0].get("path", ""))
    except (OSError, ValueError, KeyError, IndexError, TypeError):
        return False
    return (types in ([ST_STATIC], [ST_STATIC, ST_NORMALIZE]) and (first / "model.safetensors").is_file()
            and (first / "tokenizer.json").is_file())


class _Normalize:
    """Stands for the folder's ``Normalize`` module, as :func:`koembed.index.encoder.normalized_by` looks for it."""


_Normalize.__name__ = "Normalize"


class NumpyStaticModel:
    """A static model folder (:func:`numpy_static_folder`) as an :class:`~koembed.models.Encoder`: ``encode``
    returns what ``SentenceTransformer(folder).encode`` returns, in float32 (the table is read in float32 whatever
    it was saved in, as koembed runs static models in fp32)."""

    backend = "numpy"
    max_seq_length: int | None = None  # no limit, as StaticEmbedding
    spacing = "none"
    tokenizer: Any

    def __init__(self, folder: str | Path):
        import numpy as np
        from safetensors.numpy import load_file

        from koembed.models.static import STATIC_TABLE_KEYS, read_tokenizer

        folder = Path(folder).expanduser()
        if not numpy_static_folder(folder):
            raise ModelLoadError(f"{folder}: not a sentence-transformers StaticEmbedding folder")
        modules = json.loads((folder / "modules.json").read_text(encoding="utf-8"))
        first = folder / str(modules[0].get("path", ""))
        self.tokenizer = read_tokenizer(first / "tokenizer.json")
        self.tokenizer.no_padding()
        self.tokenizer.no_truncation()
        try:
            tensors = load_file(str(first / "model.safetensors"))
        except Exception as exc:  # safetensors raises its own error types for a damaged file
            raise ModelLoadError(f"{first / 'model.safetensors'}: unreadable ({exc})") from None
        key = next((k for k in STATIC_TABLE_KEYS if k in tensors), None)
        table = tensors.get(key) if key else None
        if table is None or table.ndim != 2 or table.shape[0] < self.tokenizer.get_vocab_size():
            raise ModelLoadError(f"{first / 'model.safetensors'}: no (vocabulary, dimension) vector table with a row "
                                 "for every token of tokenizer.json")
        self.table = np.ascontiguousarray(table, dtype=np.float32)
        if not np.isfinite(self.table).all():
            raise ModelLoadError(f"{first / 'model.safetensors'}: the vector table holds non-finite values")
        self.normalize = len(modules) == 2
        self.num_embeddings, self.embedding_dim = self.table.shape
        config = folder / "config_sentence_transformers.json"
        settings = json.loads(config.read_text(encoding="utf-8")) if config.is_file() else {}
        self.prompts: dict[str, str] = dict(settings.get("prompts") or {})

    def modules(self) -> Iterable[Any]:
        return [self, _Normalize()] if self.normalize else [self]

    def get_embedding_dimension(self) -> int:
        return int(self.embedding_dim)

    def encode(self, sentences: Sequence[str] | str, batch_size: int = 32, show_progress_bar: bool = False,
               convert_to_numpy: bool = True, prompt: str | None = None, **kwargs: Any) -> np.ndarray:
        """The embeddings of ``sentences`` (one text: one vector), ``prompt`` put before each text."""
        import numpy as np

        single = isinstance(sentences, str)
        texts = [sentences] if isinstance(sentences, str) else list(sentences)
        if prompt:
            texts = [prompt + text for text in texts]
        out = np.zeros((len(texts), self.embedding_dim), dtype=np.float32)
        for start in range(0, len(texts), CHUNK):  # a chunk's token vectors in memory, not the corpus's
            ids = [e.ids for e in self.tokenizer.encode_batch(texts[start: start + CHUNK], add_special_tokens=False)]
            counts = np.fromiter(map(len, ids), dtype=np.int64, count=len(ids))
            full = np.flatnonzero(counts)  # a text without tokens stays zeros, as EmbeddingBag gives
            if not len(full):
                continue
            rows = self.table[np.fromiter((i for row in ids for i in row), dtype=np.int64, count=int(counts.sum()))]
            ends = np.cumsum(counts[full])
            sums = np.add.reduceat(rows, ends - counts[full], axis=0)
            out[start + full] = sums / counts[full, None].astype(np.float32)  # EmbeddingBag's mean
        if self.normalize:
            norms = np.linalg.norm(out, axis=1, keepdims=True)
            out = out / np.maximum(norms, np.float32(1e-12))  # torch.nn.functional.normalize's eps
        return out[0] if single else out
