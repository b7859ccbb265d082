"""A persistent search index: FAISS (a folder) or Qdrant (a collection), with Kiwi/BM25 and the passages.

Rooms: :mod:`.manifest` (what a FAISS index folder holds), :mod:`.versions` (versions, locking, verification),
:mod:`.faiss` (vector index kinds), :mod:`.encoder` (the index's model and its check), :mod:`.build` (build,
add, delete) and :mod:`.search` (the loaded :class:`Index`); the Qdrant store in :mod:`.qdrant` (collection,
manifest, recovery), :mod:`.qdrant_build`, :mod:`.qdrant_search`,
:mod:`.qdrant_m3` (BGE-M3's lexical weights and ColBERT vectors) and :mod:`.qdrant_sparse` (BM25 as sparse vectors).
:mod:`.protocols` says what every store offers (:class:`SearchIndex`, :class:`Store`, and the manifest base
:class:`IndexManifest`); :mod:`.backends` holds the public functions, which look the store up by name.
"""

from koembed.errors import DocumentIdError, IndexStoreError, ModelMismatchError
from koembed.index.backends import (
           STORE_REGISTRY,
           STORES,
           add_documents,
           build_index,
           build_index_from_embeddings,
           delete_documents,
           export_index,
           index_info,
           load_index,
           optimize_index,
           store_of,
)
from koembed.index.manifest import KINDS, IndexManifest, IndexParams, Manifest, default_mode, describe_mode
from koembed.index.protocols import SearchIndex, Store
from koembed.index.qdrant import QdrantManifest, QdrantTarget
from koembed.index.qdrant_search import QdrantIndex
from koembed.index.search import MODES, Index

__all__ = ["KINDS", "MODES", "STORES", "STORE_REGISTRY", "DocumentIdError", "Index", "IndexManifest", "IndexParams",
           "IndexStoreError", "Manifest", "ModelMismatchError", "QdrantIndex", "QdrantManifest", "QdrantTarget",
           "SearchIndex", "Store", "add_documents", "build_index",
           "build_index_from_embeddings", "default_mode", "delete_documents", "describe_mode", "export_index", "index_info", "load_index",
           "optimize_index", "store_of"]
