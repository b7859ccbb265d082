"""The public index functions, for both stores: FAISS (a folder, the fastest on one machine) and Qdrant (a
collection, local or on a server). A new index's store is chosen by ``target`` (None: FAISS); an existing
index's by the ``store`` its manifest records (a manifest without one is a FAISS index)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from koembed.errors import IndexStoreError
from koembed.index import build as faiss_build
from koembed.index import search as faiss_search
from koembed.index.analysis import check_analysis
from koembed.index.manifest import MANIFEST, IndexManifest, IndexParams, Manifest, read_manifest
from koembed.index.protocols import SearchIndex, Store
from koembed.index.qdrant import STORE as QDRANT
from koembed.index.qdrant import QdrantManifest, QdrantTarget
from koembed.index.qdrant_build import (
    add_qdrant_documents,
    build_qdrant_index,
    delete_qdrant_documents,
    export_faiss_index,
)
from koembed.index.qdrant_manifest import read_qdrant_manifest
from koembed.index.qdrant_search import QdrantIndex, load_qdrant_index, qdrant_info
from koembed.index.search import Index
from koembed.index.versions import merge_lexical
from koembed.lexical import UserDict
from koembed.models import EncodeOptions, Encoder, ModelSpec

Tokens = Sequence[Sequence[str]] | None


def store_of(index_dir: str | Path) -> str:
    """``faiss`` or ``qdrant``: the store an index folder's manifest records (unreadable: ``faiss``, whose reader
    then says what is wrong)."""
    try:
        data = json.loads((Path(index_dir) / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return "faiss"
    return data.get("store", "faiss") if isinstance(data, dict) else "faiss"


def build_index(model: ModelSpec | str, doc_ids: Sequence[str], texts: Sequence[str], out_dir: str | Path, *,
                params: IndexParams = IndexParams(), options: EncodeOptions = EncodeOptions(),
                encoder: Encoder | None = None, target: QdrantTarget | None = None,
                tokens: Tokens = None) -> Manifest | QdrantManifest:
    """Embed and tokenise the passages into a new index in ``out_dir``: FAISS with ``params``
    (:func:`koembed.index.build.build_index`), or a Qdrant collection when ``target`` is given
    (:func:`koembed.index.qdrant_build.build_qdrant_index`; of ``params`` only the BM25 fields apply)."""
    if target is not None:
        return build_qdrant_index(model, doc_ids, texts, out_dir, target, options=options, encoder=encoder,
                                  tokens=tokens, lexical=params.lexical, user_dict=params.user_dict)
    return faiss_build.build_index(model, doc_ids, texts, out_dir, params=params, options=options, encoder=encoder,
                                   tokens=tokens)


def build_index_from_embeddings(model: ModelSpec | str, embedding_dirs: Sequence[str | Path],
                                doc_ids: Sequence[str], texts: Sequence[str], out_dir: str | Path, *,
                                params: IndexParams = IndexParams(), show_progress: bool = True,
                                encoder: Encoder | None = None, target: QdrantTarget | None = None,
                                tokens: Tokens = None) -> Manifest | QdrantManifest:
    """:func:`build_index` with the vectors read from ``koembed encode`` output (checked as
    :func:`koembed.encoding.shards.read_embeddings` checks them); Qdrant streams them chunk by chunk."""
    if target is not None:
        return build_qdrant_index(model, doc_ids, texts, out_dir, target, encoder=encoder, tokens=tokens,
                                  embedding_dirs=embedding_dirs, options=EncodeOptions(show_progress=show_progress),
                                  lexical=params.lexical, user_dict=params.user_dict)
    return faiss_build.build_index_from_embeddings(model, embedding_dirs, doc_ids, texts, out_dir, params=params,
                                                   show_progress=show_progress, encoder=encoder, tokens=tokens)


class _FaissStore:
    """FAISS: a folder of versions (:mod:`koembed.index.build`, :mod:`koembed.index.search`)."""

    name = "faiss"

    def add(self, index_dir: Path, doc_ids: Sequence[str], texts: Sequence[str], *, encoder: Encoder | None,
            options: EncodeOptions, api_key: str | None) -> Manifest:
        return faiss_build.add_documents(index_dir, doc_ids, texts, encoder=encoder, options=options)

    def delete(self, index_dir: Path, doc_ids: Sequence[str], *, api_key: str | None) -> Manifest:
        return faiss_build.delete_documents(index_dir, doc_ids)

    def info(self, index_dir: Path, *, api_key: str | None) -> dict[str, Any]:
        return {"store": self.name, **faiss_search.index_info(index_dir)}

    def load(self, index_dir: Path, encoder: Encoder | None, *, options: EncodeOptions, device: str | None,
             api_key: str | None) -> Index:
        return faiss_search.load_index(index_dir, encoder, options=options, device=device)


class _QdrantStore:
    """Qdrant: a collection, local or on a server (:mod:`koembed.index.qdrant_build`, :mod:`.qdrant_search`)."""

    name = QDRANT

    def add(self, index_dir: Path, doc_ids: Sequence[str], texts: Sequence[str], *, encoder: Encoder | None,
            options: EncodeOptions, api_key: str | None) -> QdrantManifest:
        return add_qdrant_documents(index_dir, doc_ids, texts, encoder=encoder, options=options, api_key=api_key)

    def delete(self, index_dir: Path, doc_ids: Sequence[str], *, api_key: str | None) -> QdrantManifest:
        return delete_qdrant_documents(index_dir, doc_ids, api_key=api_key)

    def info(self, index_dir: Path, *, api_key: str | None) -> dict[str, Any]:
        return qdrant_info(index_dir, api_key=api_key)

    def load(self, index_dir: Path, encoder: Encoder | None, *, options: EncodeOptions, device: str | None,
             api_key: str | None) -> QdrantIndex:
        return load_qdrant_index(index_dir, encoder, options=options, device=device, api_key=api_key)


# The stores by the name a manifest records; a new store is one entry here (and its build in build_index).
STORE_REGISTRY: dict[str, Store] = {store.name: store for store in (_FaissStore(), _QdrantStore())}
STORES = tuple(STORE_REGISTRY)


def _store(index_dir: str | Path) -> Store:
    """The :class:`~koembed.index.protocols.Store` of an existing index folder (:func:`store_of`); a manifest
    naming a store this koembed does not know is an :class:`~koembed.errors.IndexStoreError`."""
    name = store_of(index_dir)
    if name not in STORE_REGISTRY:
        raise IndexStoreError(f"{Path(index_dir) / MANIFEST}: unknown store {name!r}: this koembed reads "
                              f"{', '.join(STORES)}")
    return STORE_REGISTRY[name]


def _recorded_bm25(index_dir: Path) -> dict[str, Any]:
    """The manifest's ``bm25`` record of either store (the manifest checked, nothing else read)."""
    if _store(index_dir).name == "qdrant":
        return read_qdrant_manifest(index_dir).bm25
    return read_manifest(index_dir).bm25


def add_documents(index_dir: str | Path, doc_ids: Sequence[str], texts: Sequence[str], *,
                  encoder: Encoder | None = None, options: EncodeOptions = EncodeOptions(show_progress=False),
                  api_key: str | None = None, analyzer: str | None = None, user_dict: UserDict | None = None
                  ) -> IndexManifest:
    """Add passages (ids must be new) to either store; ``api_key`` is for a Qdrant server (else
    ``$QDRANT_API_KEY``). They are analysed by the index's analyzer with its user dictionary; an ``analyzer`` or
    ``user_dict`` given that is not the index's is refused before anything is done
    (:func:`koembed.index.analysis.check_analysis`)."""
    if analyzer is not None or user_dict is not None:
        check_analysis(Path(index_dir), _recorded_bm25(Path(index_dir)), analyzer, user_dict)
    return _store(index_dir).add(Path(index_dir), doc_ids, texts, encoder=encoder, options=options, api_key=api_key)


def delete_documents(index_dir: str | Path, doc_ids: Sequence[str], *, api_key: str | None = None) -> IndexManifest:
    """Delete passages by id from either store (an unknown id deletes nothing)."""
    return _store(index_dir).delete(Path(index_dir), doc_ids, api_key=api_key)


def optimize_index(index_dir: str | Path) -> IndexManifest | None:
    """Merge a FAISS index's BM25 segments into one, as a new version (queries pay per segment; rankings stay);
    None when there is nothing to merge, or for Qdrant, whose optimizer merges its own segments."""
    if _store(index_dir).name != "faiss":
        return None
    return merge_lexical(Path(index_dir))


def index_info(index_dir: str | Path, *, api_key: str | None = None) -> dict[str, Any]:
    """The verified manifest of either store (Qdrant: with what the collection holds now)."""
    return _store(index_dir).info(Path(index_dir), api_key=api_key)


def load_index(index_dir: str | Path, encoder: Encoder | None = None, *,
               options: EncodeOptions = EncodeOptions(show_progress=False), device: str | None = None,
               api_key: str | None = None, verify: bool = False, analyzer: str | None = None,
               user_dict: UserDict | None = None) -> SearchIndex:
    """Load either store's index for search (same ``search(queries, k, mode)``, same checks of the model).
    ``verify``: a FAISS index reads every row and checks every file's sha256 now, not only sizes
    (:func:`koembed.index.search.load_index`). Queries are analysed by the index's analyzer with its user
    dictionary; an ``analyzer`` or ``user_dict`` given that is not the index's is refused."""
    store = _store(index_dir)
    if verify and store.name == "faiss":
        index: SearchIndex = faiss_search.load_index(Path(index_dir), encoder, options=options, device=device,
                                                     verify=True)
    else:
        index = store.load(Path(index_dir), encoder, options=options, device=device, api_key=api_key)
    check_analysis(Path(index_dir), index.manifest.bm25, analyzer, user_dict)
    return index


def export_index(faiss_dir: str | Path, out_dir: str | Path, target: QdrantTarget = QdrantTarget(), *,
                 show_progress: bool = True) -> QdrantManifest:
    """Move a FAISS index into a new Qdrant index without encoding or analysing again."""
    return export_faiss_index(faiss_dir, out_dir, target, show_progress=show_progress)
