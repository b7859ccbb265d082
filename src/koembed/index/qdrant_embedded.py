"""Qdrant's own Rust engine in this process (``qdrant-edge-py``), behind the part of ``QdrantClient`` koembed uses.

``qdrant-edge-py`` embeds Qdrant's segment engine (the code a Qdrant server runs per shard): named dense vectors
(cosine, dot), sparse vectors with ``Modifier.Idf``, multivectors with MaxSim, payloads and payload filters,
deletes by id or filter, prefetch + RRF / DBSF fusion, idf over a filtered corpus. It has no REST or gRPC API,
so :class:`EmbeddedClient` takes the same ``qdrant_client.models`` requests the store sends a server
(:mod:`koembed.index.qdrant`, :mod:`koembed.index.qdrant_search`) and runs them on an ``EdgeShard``; one code
path builds every request for both engines, and this adapter is the only place that knows the second one.

Storage (``local_path``): one folder per collection, ``<storage>/<collection>/``, holding ``shard/`` (the
engine's own files: its config, write-ahead log, segments; no pickle, nothing that runs code) and
``metadata.json`` (what a server keeps as the collection's ``metadata``: koembed's build id and model
fingerprint, :func:`koembed.index.qdrant.binding`). The engine locks its write-ahead log, so one process at a
time opens a collection (a second gets :class:`IndexStoreError`). Every engine error, a Rust panic included,
becomes an :class:`IndexStoreError` naming the folder.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from koembed.errors import IndexStoreError
from koembed.files import write_json

SHARD, METADATA, ENGINE_CONFIG = "shard", "metadata.json", "edge_config.json"


@contextmanager
def engine_errors(where: Path) -> Iterator[None]:
    """Engine failures (``Exception`` from the bindings, or pyo3's ``PanicException``, a ``BaseException``) as
    :class:`IndexStoreError`; koembed's own errors and interrupts pass."""
    try:
        yield
    except IndexStoreError:
        raise
    except BaseException as exc:
        if not isinstance(exc, Exception) and type(exc).__name__ != "PanicException":
            raise
        if "WouldBlock" in str(exc):
            raise IndexStoreError(f"{where} is open in another process: the embedded Qdrant engine allows one "
                                  "process at a time (stop it, or use a Qdrant server with --url)") from exc
        raise IndexStoreError(f"{where}: the Qdrant engine cannot read it ({str(exc)[:300]}); it is damaged or "
                              "was not written by koembed: rebuild the index") from exc


class EmbeddedClient:
    """``QdrantClient``'s methods that koembed calls, on Qdrant's embedded Rust engine in ``root``."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._shards: dict[str, Any] = {}

    # collections
    def get_collections(self) -> Any:
        names = sorted(p.name for p in self.root.iterdir() if (p / METADATA).is_file()) if self.root.is_dir() else []
        return SimpleNamespace(collections=[SimpleNamespace(name=n) for n in names])

    def collection_exists(self, name: str) -> bool:
        return (self.root / name / SHARD).exists() or (self.root / name / METADATA).exists()

    def create_collection(self, name: str, vectors_config: dict[str, Any], sparse_vectors_config: dict[str, Any],
                          metadata: dict[str, Any] | None = None, **server_only: Any) -> None:
        """A new shard with the named dense / multi and sparse vectors (``qdrant_client.models`` params); the
        server's layout settings (shards, replicas, quantization) do not apply to one embedded shard."""
        import qdrant_edge as edge
        from qdrant_client import models

        distances = {models.Distance.COSINE: edge.Distance.Cosine, models.Distance.DOT: edge.Distance.Dot}
        vectors = {}
        for vname, p in vectors_config.items():
            multi = None
            if p.multivector_config is not None:
                multi = edge.MultiVectorConfig(edge.MultiVectorComparator.MaxSim)
            vectors[vname] = edge.EdgeVectorParams(size=p.size, distance=distances[p.distance],
                                                   multivector_config=multi)
        sparse = {vname: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf if p.modifier == models.Modifier.IDF
                                                     else None) for vname, p in sparse_vectors_config.items()}
        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        write_json(folder / METADATA, metadata or {})
        with engine_errors(folder):
            self._shards[name] = edge.EdgeShard.create(str(folder / SHARD), edge.EdgeConfig(
                vectors=vectors, sparse_vectors=sparse))

    def delete_collection(self, name: str) -> None:
        shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        shutil.rmtree(self.root / name, ignore_errors=True)

    def get_collection(self, name: str) -> Any:
        """``config.params`` (vectors, sparse_vectors as ``qdrant_client.models``, from the engine's config file),
        ``config.metadata`` and ``status``, as a server describes a collection."""
        from qdrant_client import models

        folder = self.root / name
        self._shard(name)  # the engine reads the folder first: a damaged one fails here
        try:
            config = json.loads((folder / SHARD / ENGINE_CONFIG).read_text(encoding="utf-8"))
            metadata = json.loads((folder / METADATA).read_text(encoding="utf-8"))
            distances = {"Cosine": models.Distance.COSINE, "Dot": models.Distance.DOT}
            vectors = {}
            for vname, p in config.get("vectors", {}).items():
                multi = None
                if (p.get("multivector_config") or {}).get("comparator") == "max_sim":
                    multi = models.MultiVectorConfig(comparator=models.MultiVectorComparator.MAX_SIM)
                vectors[vname] = models.VectorParams(size=p["size"], distance=distances.get(p["distance"], "Euclid"),
                                                     multivector_config=multi)
            sparse = {vname: models.SparseVectorParams(modifier=models.Modifier.IDF if p.get("modifier") == "idf"
                                                       else None) for vname, p in config.get("sparse_vectors", {}).items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise IndexStoreError(f"{folder}: unreadable collection description ({exc}); it is damaged or was not "
                                  "written by koembed: rebuild the index") from exc
        if not isinstance(metadata, dict):
            raise IndexStoreError(f"{folder / METADATA}: not a JSON object; rebuild the index")
        params = SimpleNamespace(vectors=vectors, sparse_vectors=sparse)
        return SimpleNamespace(config=SimpleNamespace(params=params, metadata=metadata), status="green")

    def create_payload_index(self, *args: Any, **kwargs: Any) -> None:  # arguments unused: a server's optimisation
        return None

    # points
    def upsert(self, name: str, points: Sequence[tuple[str, dict, dict]], wait: bool = True) -> None:
        """``points``: ``(id, payload, {vector name: vector})`` rows, a sparse vector as ``(indices, values)`` or
        ``models.SparseVector``."""
        import qdrant_edge as edge

        converted = [edge.Point(id=pid, vector={k: _vector(v) for k, v in named.items()}, payload=payload)
                     for pid, payload, named in points]
        with engine_errors(self.root / name):
            self._shard(name).update(edge.UpdateOperation.upsert_points(converted))

    def delete(self, name: str, points_selector: Any, wait: bool = True) -> None:
        import qdrant_edge as edge

        if hasattr(points_selector, "filter"):
            op = edge.UpdateOperation.delete_points_by_filter(_filter(points_selector.filter))
        else:
            op = edge.UpdateOperation.delete_points(list(points_selector.points))
        with engine_errors(self.root / name):
            self._shard(name).update(op)

    def retrieve(self, name: str, ids: Sequence[Any], with_payload: Any = True, with_vectors: Any = False) -> list:
        with engine_errors(self.root / name):
            return self._shard(name).retrieve(list(ids), with_payload=with_payload, with_vector=with_vectors)

    def count(self, name: str, count_filter: Any = None, exact: bool = True) -> Any:
        import qdrant_edge as edge

        with engine_errors(self.root / name):
            return SimpleNamespace(count=self._shard(name).count(edge.CountRequest(exact=exact,
                                                                                   filter=_filter(count_filter))))

    def scroll(self, name: str, scroll_filter: Any = None, limit: int = 10, offset: Any = None,
               with_payload: Any = True) -> tuple[list, Any]:
        import qdrant_edge as edge

        with engine_errors(self.root / name):
            return self._shard(name).scroll(edge.ScrollRequest(offset=offset, limit=limit,
                                                               filter=_filter(scroll_filter),
                                                               with_payload=with_payload, with_vector=False))

    def query_batch_points(self, name: str, requests: Sequence[Any]) -> list[Any]:
        import qdrant_edge as edge

        batch = edge.QueryBatchRequest([_request(r) for r in requests])
        with engine_errors(self.root / name):
            answers = self._shard(name).query_batch(batch)
        return [SimpleNamespace(points=points) for points in answers]

    def flush(self) -> None:
        """Write what the engine holds in memory to its segments (its write-ahead log already has it)."""
        for name, shard in self._shards.items():
            with engine_errors(self.root / name):
                shard.flush()

    def close(self) -> None:
        while self._shards:
            name, shard = self._shards.popitem()
            with engine_errors(self.root / name):
                shard.close()

    def _shard(self, name: str) -> Any:
        if name not in self._shards:
            import qdrant_edge as edge

            folder = self.root / name / SHARD
            if not (folder / ENGINE_CONFIG).is_file():
                raise IndexStoreError(f"{folder}: no {ENGINE_CONFIG}; not a collection of Qdrant's embedded engine "
                                      "(deleted, or built with an older koembed's local mode?): rebuild the index")
            with engine_errors(folder):
                self._shards[name] = edge.EdgeShard.load(str(folder))
        return self._shards[name]


def _vector(v: Any) -> Any:
    """A named vector (dense list, multivector, ``(indices, values)`` or ``models.SparseVector``) for the engine."""
    import qdrant_edge as edge

    if isinstance(v, tuple):
        return edge.SparseVector(v[0], v[1])
    if hasattr(v, "indices"):
        return edge.SparseVector(list(v.indices), list(v.values))
    return v


def _filter(f: Any) -> Any:
    """``models.Filter`` of ``must`` / ``must_not`` with keyword matches (one value or any of several) and id sets
    (what koembed sends)."""
    import qdrant_edge as edge

    if f is None:
        return None

    def condition(c: Any) -> Any:
        if hasattr(c, "has_id"):
            return edge.HasIdCondition(set(c.has_id))
        if hasattr(c, "must") or hasattr(c, "must_not"):
            return _filter(c)
        if hasattr(c.match, "any"):  # MatchAny: a pending delete's ids, hidden from readers
            return edge.FieldCondition(key=c.key, match=edge.MatchAny(list(c.match.any)))
        return edge.FieldCondition(key=c.key, match=edge.MatchValue(c.match.value))

    return edge.Filter(must=[condition(c) for c in f.must or []] or None,
                       must_not=[condition(c) for c in f.must_not or []] or None)


def _params(p: Any) -> Any:
    import qdrant_edge as edge

    if p is None:
        return None
    idf = edge.IdfParams(corpus=_filter(p.idf.corpus)) if p.idf is not None else None
    return edge.SearchParams(exact=bool(p.exact), idf=idf)


def _query(query: Any, using: str | None) -> Any:
    """The engine's scoring query for a request's ``query`` (a vector, a sparse vector, a multivector, or a
    fusion of the prefetches)."""
    import qdrant_edge as edge
    from qdrant_client import models

    if isinstance(query, models.RrfQuery):
        return edge.Fusion.Rrf(k=query.rrf.k)
    if isinstance(query, models.FusionQuery):
        if query.fusion == models.Fusion.DBSF:
            return edge.Fusion.Dbsf()
        return edge.Fusion.Rrf(k=2)  # Qdrant's default RRF k
    if isinstance(query, models.NearestQuery):
        query = query.nearest
    return edge.Query.Nearest(_vector(query), using=using)


def _request(r: Any) -> Any:
    import qdrant_edge as edge

    prefetches = [edge.Prefetch(limit=p.limit, query=_query(p.query, p.using), filter=_filter(p.filter),
                                params=_params(p.params)) for p in r.prefetch or []] or None
    return edge.QueryRequest(limit=r.limit, query=_query(r.query, r.using), prefetches=prefetches,
                             filter=_filter(r.filter), params=_params(r.params), with_payload=r.with_payload,
                             with_vector=False)
