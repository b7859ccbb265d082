"""A persistent search index: FAISS (a folder) or Qdrant (a collection), with Kiwi/BM25 and the passages.

Rooms: :mod:`.manifest` (what a FAISS index folder holds), :mod:`.store` (versions, locking, verification),
:mod:`.faiss` (vector index kinds), :mod:`.encoder` (the index's model and its check), :mod:`.build` (build,
add, delete) and :mod:`.search` (the loaded :class:`Index`); the Qdrant store in :mod:`.qdrant` (collection,
manifest, recovery), :mod:`.qdrant_build`, :mod:`.qdrant_search`,
:mod:`.qdrant_m3` (BGE-M3's lexical weights and ColBERT vectors) and :mod:`.sparse` (BM25 as sparse vectors).
:mod:`.stores` holds the public functions, which pick the store.
"""

from koembed.errors import DocumentIdError, IndexStoreError, ModelMismatchError
from koembed.index.backends import (  # noqa: I001
           STORES,
           add_documents,
           build_index,
           build_index_from_embeddings,
           delete_documents,
           export_index,
           index_info,
           load_index,
           store_of,
)
from koembed.index.manifest import KINDS, IndexParams, Manifest, default_mode
from koembed.index.qdrant import QdrantManifest, QdrantTarget
from koembed.index.qdrant_search import QdrantIndex
from koembed.index.search import MODES, Index

__all__ = ["KINDS", "MODES", "STORES", "DocumentIdError", "Index", "IndexParams", "IndexStoreError", "Manifest",
           "ModelMismatchError", "QdrantIndex", "QdrantManifest", "QdrantTarget", "add_documents", "build_index",
           "build_index_from_embeddings", "default_mode", "delete_documents", "export_index", "index_info", "load_index",
           "store_of"]
