"""A persistent search index on disk: FAISS vectors, Kiwi/BM25 tokens and the passages, updated atomically.

Rooms: :mod:`.manifest` (what an index folder holds), :mod:`.store` (versions, locking, verification),
:mod:`.faiss` (vector index kinds), :mod:`.encoder` (the index's model and its check), :mod:`.build` (build,
add, delete) and :mod:`.search` (the loaded :class:`Index`).
"""

from koembed.errors import DocumentIdError, IndexStoreError, ModelMismatchError
from koembed.index.build import add_documents, build_index, build_index_from_embeddings, delete_documents
from koembed.index.manifest import KINDS, IndexParams, Manifest
from koembed.index.search import MODES, Index, index_info, load_index

__all__ = ["KINDS", "MODES", "DocumentIdError", "Index", "IndexParams", "IndexStoreError", "Manifest",
           "ModelMismatchError", "add_documents", "build_index", "build_index_from_embeddings", "delete_documents",
           "index_info", "load_index"]
