"""The Qdrant store: one collection per index, holding the dense vectors, Kiwi-BM25 sparse vectors and passages.

An index folder of this store holds only ``manifest.json`` (store, collection, where it lives, model and
tokenizer settings, counts; never an API key) and, without ``--url``, the storage of Qdrant's own Rust engine
embedded in this process (``qdrant-edge-py``, :mod:`koembed.index.qdrant_embedded`; ``qdrant/`` unless
``--path`` put it elsewhere). A server or cluster (``--url``) is reached with ``qdrant-client``; both get the
same requests. The collection has a named dense vector ``dense`` (cosine) and a named sparse vector ``bm25`` with
``modifier=idf``: koembed writes each passage's BM25 term-frequency part (:mod:`koembed.index.qdrant_sparse`) and Qdrant
multiplies it by its idf, which is Lucene's, so Qdrant's sparse score is koembed's BM25 score. Built with a
bge-m3-layout model, it also holds BGE-M3's lexical weights (sparse ``m3_sparse``) and ColBERT vectors
(multivector ``m3_colbert``): :mod:`koembed.index.qdrant_m3`.

Points: id = uuid5 of the passage id (so an id is found and deleted without a search); payload ``id``, ``text``
and ``txn`` (the build's id or the add's random transaction id that wrote it). Changes are ordered by the folder's lock file, and an add or
delete is recorded in the manifest as ``pending`` before the collection changes: an add killed half-way is
removed (by its ``txn``) at the next change, a delete killed half-way is finished, and until then searches
leave the pending add's points out, from hits and from the idf statistics. Points written before are never
touched by an add, so nothing from before is lost.

The embedded engine is the segment engine a Qdrant server runs per shard, in one process (one process at a
time per collection), searched exactly (koembed never builds its HNSW graph); a Qdrant server or cluster is
where it scales out (docs/BENCHMARKS.md has both and the capacity plan). qdrant-client's Python "local mode"
is not used: its storage is pickled, so a folder from elsewhere could run code when opened.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from koembed.errors import IndexStoreError
from koembed.index.manifest import MANIFEST
from koembed.index.qdrant_embedded import EmbeddedClient
from koembed.index.qdrant_m3 import check_m3_collection, m3_sparse_params, m3_vector_params, point_vectors
from koembed.index.qdrant_manifest import (  # noqa: F401 (the store's public names, re-exported)
    FORMAT_VERSION,
    STORE,
    QdrantManifest,
    binding,
    bm25_record,
    check_binding,
    read_qdrant_manifest,
    write_qdrant_manifest,
)
from koembed.index.qdrant_sparse import passage_vectors
from koembed.models.m3 import M3Output

DENSE, BM25 = "dense", "bm25"
LOCAL_DIR = "qdrant"
DEFAULT_COLLECTION = "koembed"
QUANTIZATIONS = ("none", "int8")
UPSERT_BATCH = 256
# uuid5 namespace of point ids: uuid5(NAMESPACE_URL, "koembed:passage")
POINT_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "koembed:passage")
API_KEY_ENV = "QDRANT_API_KEY"


@dataclass(frozen=True)
class QdrantTarget:
    """Where a new Qdrant index goes and how its collection is laid out.

    ``path``: a local-mode storage folder (default: ``qdrant/`` inside the index folder); ``url``: a Qdrant
    server or cluster instead (``api_key``, else ``$QDRANT_API_KEY``; never written to disk). ``collection``:
    its name (default ``koembed``). On a server: ``shards`` and ``replicas`` (Qdrant's ``shard_number`` and
    ``replication_factor``), ``quantization`` ``int8`` (scalar int8 copies of the vectors in RAM, originals
    for rescoring) and ``on_disk`` (original vectors memory-mapped). Local mode ignores the layout settings.
    """

    path: str | None = None
    url: str | None = None
    api_key: str | None = field(default=None, repr=False)
    collection: str = DEFAULT_COLLECTION
    shards: int = 1
    replicas: int = 1
    quantization: str = "none"
    on_disk: bool = False

    def __post_init__(self) -> None:
        if self.path and self.url:
            raise IndexStoreError("give --path (Qdrant's embedded engine) or --url (a Qdrant server), not both")
        if self.quantization not in QUANTIZATIONS:
            raise IndexStoreError(f"unknown quantization {self.quantization!r}: use {', '.join(QUANTIZATIONS)}")
        if self.shards < 1 or self.replicas < 1:
            raise IndexStoreError("shards and replicas must be at least 1")


def point_id(doc_id: str) -> str:
    return str(uuid.uuid5(POINT_NAMESPACE, doc_id))


def storage_path(index_dir: Path, path: str | None) -> Path:
    """A local-mode storage folder: ``path`` as given when absolute, else inside ``index_dir`` (None: LOCAL_DIR)."""
    where = Path(path if path is not None else LOCAL_DIR)
    return where if where.is_absolute() else index_dir / where


@contextmanager
def connected(index_dir: Path, path: str | None, url: str | None, api_key: str | None = None) -> Iterator[Any]:
    """An open client (the embedded engine at ``path``, or ``qdrant-client`` at ``url``), closed on exit."""
    client = open_client(index_dir, path, url, api_key)
    try:
        yield client
    finally:
        client.close()


def open_client(index_dir: Path, path: str | None, url: str | None, api_key: str | None = None) -> Any:
    """A client for an index; the caller closes it. Without ``url``: :class:`EmbeddedClient` (Qdrant's engine in
    this process, one process per collection)."""
    if not url:
        if not path:
            raise IndexStoreError(f"{index_dir / MANIFEST}: neither local_path nor url says where the collection is; "
                                  "rebuild the index")
        return EmbeddedClient(storage_path(index_dir, path))
    from qdrant_client import QdrantClient

    try:
        client = QdrantClient(url=url, api_key=api_key or os.environ.get(API_KEY_ENV), timeout=60)
        client.get_collections()  # fail now, with the URL in the message, if it cannot be reached
        return client
    except Exception as exc:
        if type(exc).__module__.startswith(("qdrant_client", "httpx", "httpcore", "grpc")):
            raise IndexStoreError(f"cannot reach the Qdrant server at {url}: {exc}") from exc
        raise


def durable(client: Any) -> None:
    """Before a manifest commits a change: the embedded engine writes its segments (a server has acknowledged
    each ``wait=True`` write already)."""
    if isinstance(client, EmbeddedClient):
        client.flush()


def create_collection(client: Any, target: QdrantTarget, manifest: QdrantManifest) -> dict[str, Any]:
    """Create the index's collection (refused if it exists), bound to ``manifest`` (:func:`binding` as its
    metadata), with the M3 vectors when the manifest records them; returns the layout for the manifest."""
    from qdrant_client import models

    dimension, m3 = manifest.dimension, manifest.m3
    if client.collection_exists(target.collection):
        raise IndexStoreError(f"{manifest.where} already exists (left by an interrupted build, or another index's): "
                              "delete it, or choose another --collection")
    quantization = None
    if target.quantization == "int8":
        quantization = models.ScalarQuantization(scalar=models.ScalarQuantizationConfig(
            type=models.ScalarType.INT8, quantile=0.99, always_ram=True))
    server = bool(target.url)
    client.create_collection(
        target.collection,
        vectors_config={DENSE: models.VectorParams(size=dimension, distance=models.Distance.COSINE,
                                                   on_disk=target.on_disk if server else None),
                        **(m3_vector_params(m3, target.on_disk if server else None) if m3 else {})},
        sparse_vectors_config={BM25: models.SparseVectorParams(modifier=models.Modifier.IDF),
                               **(m3_sparse_params() if m3 else {})},
        shard_number=target.shards if server else None,
        replication_factor=target.replicas if server else None,
        quantization_config=quantization if server else None,
        metadata=binding(manifest))
    if server:  # keyword indexes for the payload filters koembed uses (one embedded shard scans its payloads)
        for key in ("id", "txn"):
            client.create_payload_index(target.collection, key, models.PayloadSchemaType.KEYWORD)
    return {"shards": target.shards, "replicas": target.replicas, "quantization": target.quantization,
            "on_disk": target.on_disk, "applied": server}


def check_collection(client: Any, manifest: QdrantManifest, index_dir: Path) -> None:
    """The collection exists and has the vectors the manifest describes."""
    from qdrant_client import models

    if not client.collection_exists(manifest.collection):
        raise IndexStoreError(f"{index_dir}: {manifest.where} does not exist (deleted, or another --url/--path?); "
                              "rebuild the index")
    params = client.get_collection(manifest.collection).config.params
    dense = (params.vectors or {}).get(DENSE) if isinstance(params.vectors, dict) else None
    sparse = (params.sparse_vectors or {}).get(BM25)
    if dense is None or dense.size != manifest.dimension or dense.distance != models.Distance.COSINE:
        raise IndexStoreError(f"{index_dir}: {manifest.where} has no {manifest.dimension}-dimensional cosine vector "
                              f"{DENSE!r}: it is not this index's collection")
    if sparse is None or sparse.modifier != models.Modifier.IDF:
        raise IndexStoreError(f"{index_dir}: {manifest.where} has no sparse vector {BM25!r} with modifier=idf")
    if manifest.m3:
        check_m3_collection(params, manifest.m3, manifest.where, index_dir)
    check_binding(getattr(client.get_collection(manifest.collection).config, "metadata", None), manifest, index_dir)
    check_counts(client, manifest, index_dir)


def check_counts(client: Any, manifest: QdrantManifest, index_dir: Path) -> None:
    """The collection holds the passages the manifest counts (with what a pending change may have done): a
    collection emptied or cut outside koembed is refused, not searched as an index with no hits."""
    pending, passages = manifest.pending or {}, manifest.counts["passages"]
    live = live_count(client, manifest.collection, txn_filter(manifest))
    low = passages - len(pending["ids"]) if pending.get("op") == "delete" else passages
    if not low <= live <= passages:
        raise IndexStoreError(f"{index_dir}: {manifest.where} holds {live} of this index's passages, its manifest "
                              f"records {passages}: the collection was changed outside koembed; rebuild the index")


def txn_filter(manifest: QdrantManifest) -> Any:
    """The filter that makes a pending change all-or-nothing to readers (None when nothing is pending): a pending
    add's points are hidden (the next change removes them), and so are all of a pending delete's passages,
    not only those a killed delete had already removed (the next change finishes it)."""
    from qdrant_client import models

    pending = manifest.pending
    if not pending:
        return None
    if pending.get("op") == "delete":
        return models.Filter(must_not=[models.FieldCondition(key="id", match=models.MatchAny(any=pending["ids"]))])
    return models.Filter(must_not=[models.FieldCondition(key="txn", match=models.MatchValue(value=pending["txn"]))])


def hidden(manifest: QdrantManifest, payload: dict[str, Any]) -> bool:
    """Whether :func:`txn_filter` hides the point with ``payload``."""
    pending = manifest.pending or {}
    if pending.get("op") == "delete":
        return payload.get("id") in pending["ids"]
    return pending.get("op") == "add" and payload.get("txn") == pending["txn"]


def upsert_passages(client: Any, manifest: QdrantManifest, doc_ids: Sequence[str], texts: Sequence[str],
                    tokens: Sequence[Sequence[str]], vectors: Any, txn: str, m3: M3Output | None = None) -> None:
    """Upsert one batch of passages (rows aligned: ids, texts, Kiwi tokens, normalised float32 vectors, and
    the BGE-M3 lexical weights and ColBERT vectors when the collection holds them)."""
    rows = []
    fields = manifest.fields
    if manifest.m3 and (m3 is None or len(m3.sparse) != len(doc_ids) or len(m3.colbert) != len(doc_ids)):
        raise IndexStoreError(f"{manifest.where} holds BGE-M3 vectors: every passage needs its lexical weights "
                              "and ColBERT vectors")
    sparse = passage_vectors(tokens, texts, fields)  # (indices, values) per passage
    for row, (doc_id, text, bm25, vector) in enumerate(zip(doc_ids, texts, sparse, vectors.tolist(), strict=True)):
        named = {DENSE: vector, BM25: bm25}
        if m3 is not None:  # with manifest.m3, checked above
            named.update(point_vectors(m3.sparse[row], m3.colbert[row]))
        rows.append((point_id(doc_id), {"id": doc_id, "text": text, "txn": txn}, named))
    if isinstance(client, EmbeddedClient):  # plain rows: pydantic models would cost as much as the engine
        client.upsert(manifest.collection, points=rows, wait=True)
        return
    from qdrant_client import models

    points = [models.PointStruct(id=pid, payload=payload, vector={
        k: models.SparseVector(indices=v[0], values=v[1]) if isinstance(v, tuple) else v for k, v in named.items()})
        for pid, payload, named in rows]
    client.upsert(manifest.collection, points=points, wait=True)


def existing_ids(client: Any, collection: str, doc_ids: Sequence[str]) -> list[str]:
    """Which of ``doc_ids`` the collection holds."""
    found: list[str] = []
    for start in range(0, len(doc_ids), 1024):
        part = doc_ids[start: start + 1024]
        points = client.retrieve(collection, ids=[point_id(d) for d in part], with_payload=["id"], with_vectors=False)
        found += [p.payload["id"] for p in points]
    return found


def recover(client: Any, manifest: QdrantManifest) -> bool:
    """Finish what an interrupted change left: remove a pending add's points, or complete a pending delete.
    Returns whether there was anything to do (the caller then writes the manifest)."""
    from qdrant_client import models

    pending = manifest.pending
    if not pending:
        return False
    if pending["op"] == "add":
        mine = live_count(client, manifest.collection, models.Filter(must=[models.FieldCondition(
            key="txn", match=models.MatchValue(value=pending["txn"]))]))
        if mine > pending["passages"]:
            raise IndexStoreError(f"{manifest.where}: the pending add {pending['txn']} would remove {mine} points, "
                                  f"more than the {pending['passages']} it was adding: not this index's change; "
                                  "nothing was removed (rebuild the index)")
        client.delete(manifest.collection, points_selector=models.FilterSelector(filter=models.Filter(
            must=[models.FieldCondition(key="txn", match=models.MatchValue(value=pending["txn"]))])), wait=True)
    else:
        delete_points(client, manifest.collection, pending["ids"])
        manifest.counts["deleted"] += len(pending["ids"])
    manifest.pending = None
    manifest.counts["passages"] = live_count(client, manifest.collection)
    return True


def delete_points(client: Any, collection: str, doc_ids: Sequence[str]) -> None:
    from qdrant_client import models

    for start in range(0, len(doc_ids), 1024):
        ids = [point_id(d) for d in doc_ids[start: start + 1024]]
        client.delete(collection, points_selector=models.PointIdsList(points=ids), wait=True)


def live_count(client: Any, collection: str, flt: Any = None) -> int:
    return int(client.count(collection, count_filter=flt, exact=True).count)
