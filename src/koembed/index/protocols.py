"""What every index store offers, whatever holds the vectors: :class:`SearchIndex` (a loaded index) and
:class:`Store` (the operations on an index folder), so callers (the CLI, the server) are written once for FAISS
and Qdrant. Structural (``typing.Protocol``): :class:`koembed.index.Index` and
:class:`koembed.index.QdrantIndex` satisfy :class:`SearchIndex` without inheriting from it; the stores are
registered by name in :data:`koembed.index.backends.STORE_REGISTRY`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

from koembed.index.manifest import IndexManifest
from koembed.lexical import Analyzer
from koembed.models import EncodeOptions, Encoder
from koembed.ranking import Hit


@runtime_checkable
class SearchIndex(Protocol):
    """A loaded index: search it and read its passages. Hits are ``(doc_id, score)``, best first, ties by
    ascending doc id; ``mode`` is one of the store's modes (a mode it cannot serve is a
    :class:`~koembed.errors.SpecError`). ``text`` raises KeyError for an id the index does not hold."""

    @property
    def path(self) -> Path: ...

    @property
    def manifest(self) -> IndexManifest: ...

    def __len__(self) -> int: ...

    @property
    def doc_ids(self) -> list[str]: ...

    @property
    def passages(self) -> Mapping[str, str]: ...

    @property
    def encoder(self) -> Encoder: ...

    @property
    def analyzer(self) -> Analyzer: ...

    def text(self, doc_id: str) -> str: ...

    def search(self, queries: Sequence[str], k: int = 10, mode: str = "dense") -> list[list[Hit]]: ...


class Store(Protocol):
    """The operations on an existing index folder of one store (``name``: what its manifest's ``store`` says).
    ``api_key`` is for a store on a server (Qdrant; else ``$QDRANT_API_KEY``), ignored by a local one."""

    name: str

    def add(self, index_dir: Path, doc_ids: Sequence[str], texts: Sequence[str], *, encoder: Encoder | None,
            options: EncodeOptions, api_key: str | None) -> IndexManifest: ...

    def delete(self, index_dir: Path, doc_ids: Sequence[str], *, api_key: str | None) -> IndexManifest: ...

    def info(self, index_dir: Path, *, api_key: str | None) -> dict[str, Any]: ...

    def load(self, index_dir: Path, encoder: Encoder | None, *, options: EncodeOptions, device: str | None,
             api_key: str | None) -> SearchIndex: ...
