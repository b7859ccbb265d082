"""koembed: Korean text embeddings for retrieval (RAG): train, evaluate, search and serve.

The common path is one call each::

    import koembed
    model = koembed.load_model("BAAI/bge-m3")                   # or a local folder, or "minilm"
    vectors = koembed.encode(model, ["전세 보증금은 언제 돌려받나요?"])
    rs = koembed.load_retrieval_set("path/to/autorag_or_beir")  # None: the bundled Korean sample
    results = koembed.run_bench(rs, ["bm25", "dense:BAAI/bge-m3"])
    koembed.build_index("BAAI/bge-m3", doc_ids, texts, "idx/")
    hits = koembed.load_index("idx/").search(["여권 재발급"], k=5, mode="hybrid")
    koembed.train(koembed.load_config("configs/bge-m3-ko.yaml"))

The names are resolved on first use (:mod:`koembed._lazy`), so ``import koembed`` stays fast; everything else
lives in the submodules (``koembed.models``, ``koembed.index``, ...).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from koembed._lazy import lazy_exports
from koembed.version import __version__

_API = {
    "ModelSpec": "koembed.models", "RunSettings": "koembed.models", "EncodeOptions": "koembed.models", "load_model": "koembed.models",
    "encode": "koembed.models", "load_retrieval_set": "koembed.data", "run_bench": "koembed.evaluation",
    "build_index": "koembed.index", "load_index": "koembed.index", "load_config": "koembed.training",
    "train": "koembed.training",
}
__all__ = ["__version__", *_API]  # noqa: PLE0604 - _API's keys are the names
__getattr__, __dir__ = lazy_exports(__name__, _API)

if TYPE_CHECKING:
    from koembed.data import load_retrieval_set
    from koembed.evaluation import run_bench
    from koembed.index import build_index, load_index
    from koembed.models import EncodeOptions, ModelSpec, RunSettings, encode, load_model
    from koembed.training import load_config, train
