"""A loaded Qdrant index: dense, bm25 and hybrid search through Qdrant's Query API, hits as koembed orders them.

Hits are ``(doc_id, score)``, best first, ties by ascending doc id (Qdrant breaks ties by its own order, so
koembed asks for :data:`koembed.ranking.TIE_SLACK` more and sorts). ``dense``: cosine. ``bm25``: Qdrant's
sparse score, ``idf x`` koembed's BM25 weights (= koembed's BM25, :mod:`koembed.index.sparse`), only passages
sharing a term with the query. ``hybrid``: Qdrant fuses the dense and bm25 prefetches (each the top max(k,
100), as :class:`koembed.retrieve.HybridRetriever` takes) server-side: ``rrf`` with Qdrant's ``k=61``, which
is koembed's RRF (1 / (60 + rank from 1)) since Qdrant counts ranks from 0, or ``dbsf``; with ``weights``
koembed fuses the two runs itself (:func:`koembed.ranking.fuse`, ``cc``).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from koembed.errors import SpecError
from koembed.index.encoder import checked_encoder, embed, with_prompt
from koembed.index.manifest import MANIFEST
from koembed.index.qdrant import (
    BM25,
    DENSE,
    QdrantManifest,
    check_collection,
    connected,
    live_count,
    open_client,
    point_id,
    read_qdrant_manifest,
    txn_filter,
)
from koembed.index.sparse import query_vector
from koembed.lexical import KiwiTokenizer
from koembed.models import EncodeOptions, Encoder
from koembed.ranking import RRF_K, TIE_SLACK, Hit, fuse, sort_hits
from koembed.retrieve import FUSION_DEPTH

MODES = ("dense", "bm25", "hybrid")
QDRANT_FUSIONS = ("rrf", "dbsf")


class QdrantIndex:
    """A loaded Qdrant index (see :func:`load_qdrant_index`), with :class:`koembed.index.Index`'s interface.

    It holds the client open (in local mode that locks the storage folder for this process): call
    :meth:`close`, or use it as a context manager. Passage texts come back with the hits; :meth:`text`
    fetches any other passage by id.
    """

    def __init__(self, path: Path, manifest: QdrantManifest, client: Any, encoder: Encoder | None = None,
                 options: EncodeOptions = EncodeOptions(show_progress=False), device: str | None = None):
        self.path = path
        self.manifest = manifest
        self.options = options
        self._client = client
        self._device = device
        self._encoder = encoder
        self._filter = txn_filter(manifest)
        self._size = live_count(client, manifest.collection, self._filter)
        self._texts: dict[str, str] = {}
        self._tokenizer: KiwiTokenizer | None = None

    def __len__(self) -> int:
        return self._size

    def __enter__(self) -> QdrantIndex:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        self._client.close()

    @property
    def doc_ids(self) -> list[str]:
        """Every live passage id (a scroll through the whole collection: costly on a large one)."""
        return list(self._scroll())

    @property
    def passages(self) -> Mapping[str, str]:
        """``{doc_id: text}`` of every live passage (a scroll through the whole collection)."""
        return dict(self._scroll(with_text=True))

    def text(self, doc_id: str) -> str:
        """The passage text of ``doc_id`` (KeyError if the index does not hold it)."""
        if doc_id not in self._texts:
            points = self._client.retrieve(self.manifest.collection, ids=[point_id(doc_id)],
                                           with_payload=["id", "text", "txn"])
            pending = self.manifest.pending or {}
            hidden = bool(points) and pending.get("op") == "add" and points[0].payload.get("txn") == pending["txn"]
            if not points or hidden:
                raise KeyError(doc_id)
            self._texts[doc_id] = points[0].payload["text"]
        return self._texts[doc_id]

    @property
    def encoder(self) -> Encoder:
        """The embedding model, loaded from the manifest on first use and checked against the index."""
        if self._encoder is None:
            self._encoder = checked_encoder(None, self.manifest,  # type: ignore[arg-type]
                                            self.path, device=self._device)
        return self._encoder

    def search(self, queries: Sequence[str], k: int = 10, mode: str = "dense", *, fusion: str = "rrf",
               weights: Sequence[float] | None = None) -> list[list[Hit]]:
        """Top-``k`` ``(doc_id, score)`` per query (see the module docstring for the modes and fusions)."""
        if mode not in MODES:
            raise SpecError(f"unknown search mode {mode!r}: use {', '.join(MODES)}")
        if fusion not in QDRANT_FUSIONS:
            raise SpecError(f"unknown fusion {fusion!r}: use {', '.join(QDRANT_FUSIONS)}")
        if weights is not None and len(weights) != 2:
            raise SpecError("hybrid weights: one for dense, one for bm25")
        if k < 1:
            raise SpecError(f"k must be at least 1, not {k}")
        queries = list(queries)
        if not self._size or not queries:
            return [[] for _ in queries]
        if mode == "hybrid" and weights is not None:
            depth = max(k, FUSION_DEPTH)
            runs = zip(self.search(queries, depth, "dense"), self.search(queries, depth, "bm25"))
            return [fuse(list(pair), "cc", weights, k) for pair in runs]
        requests = self._requests(queries, k, mode, fusion)
        answers = self._client.query_batch_points(self.manifest.collection, [r for r in requests if r is not None])
        answered = iter(answers)
        results = []
        for request in requests:
            if request is None:  # a query with no BM25 term matches nothing
                results.append([])
                continue
            hits = []
            for point in next(answered).points:
                self._texts[point.payload["id"]] = point.payload["text"]
                hits.append((point.payload["id"], float(point.score)))
            results.append(sort_hits(hits, k))
        if len(self._texts) > 100_000:
            self._texts.clear()
        return results

    def _requests(self, queries: list[str], k: int, mode: str, fusion: str) -> list[Any]:
        from qdrant_client import models

        limit = min(k + TIE_SLACK, self._size)
        params = None
        if self._filter is not None:  # idf over the committed passages only, as before the interrupted add
            params = models.SearchParams(idf=models.IdfCorpusParams(corpus=self._filter))
        dense = ([v.tolist() for v in embed(self.encoder, queries, with_prompt(self.options, self.manifest, "query"))]
                 if mode != "bm25" else None)
        sparse = None
        if mode != "dense":
            sparse = []
            fields = self.manifest.fields
            for query, tokens in zip(queries, self.tokenizer(queries)):
                indices, values = query_vector(tokens, query, fields)
                sparse.append(models.SparseVector(indices=indices, values=values) if indices else None)
        out = []
        for i in range(len(queries)):
            common = {"limit": limit, "filter": self._filter, "with_payload": ["id", "text"]}
            if mode == "dense":
                out.append(models.QueryRequest(query=dense[i], using=DENSE, **common))
            elif sparse[i] is None and mode == "bm25":
                out.append(None)
            elif mode == "bm25":
                out.append(models.QueryRequest(query=sparse[i], using=BM25, params=params, **common))
            else:
                depth = max(k, FUSION_DEPTH)
                prefetch = [models.Prefetch(query=dense[i], using=DENSE, limit=depth, filter=self._filter)]
                if sparse[i] is not None:
                    prefetch.append(models.Prefetch(query=sparse[i], using=BM25, limit=depth, filter=self._filter,
                                                    params=params))
                query = (models.RrfQuery(rrf=models.Rrf(k=RRF_K + 1)) if fusion == "rrf"
                         else models.FusionQuery(fusion=models.Fusion.DBSF))
                out.append(models.QueryRequest(prefetch=prefetch, query=query, **common))
        return out

    @property
    def tokenizer(self) -> KiwiTokenizer:
        if self._tokenizer is None:
            self._tokenizer = KiwiTokenizer()
        return self._tokenizer

    def _scroll(self, with_text: bool = False):
        offset = None
        while True:
            points, offset = self._client.scroll(self.manifest.collection, scroll_filter=self._filter, limit=1024,
                                                 offset=offset, with_payload=["id", "text"] if with_text else ["id"])
            for p in points:
                yield (p.payload["id"], p.payload["text"]) if with_text else p.payload["id"]
            if offset is None:
                return


def load_qdrant_index(index_dir: str | Path, encoder: Encoder | None = None, *,
                      options: EncodeOptions = EncodeOptions(show_progress=False), device: str | None = None,
                      api_key: str | None = None) -> QdrantIndex:
    """Open a Qdrant index: the collection is checked against the manifest, and ``encoder`` (if given) against
    the index's model (:class:`~koembed.errors.ModelMismatchError` otherwise). Read-only: an interrupted add is
    hidden, not undone (the next add or delete undoes it)."""
    index_dir = Path(index_dir)
    manifest = read_qdrant_manifest(index_dir)
    client = open_client(index_dir, manifest.local_path, manifest.url, api_key)
    try:
        check_collection(client, manifest, index_dir)
        checked = None
        if encoder is not None:
            checked = checked_encoder(encoder, manifest, index_dir, device=device)  # type: ignore[arg-type]
        return QdrantIndex(index_dir, manifest, client, checked, options=options, device=device)
    except BaseException:
        client.close()
        raise


def qdrant_info(index_dir: str | Path, api_key: str | None = None) -> dict[str, Any]:
    """The manifest (without the model probe) and what the collection holds now."""
    index_dir = Path(index_dir)
    manifest = read_qdrant_manifest(index_dir)
    with connected(index_dir, manifest.local_path, manifest.url, api_key) as client:
        check_collection(client, manifest, index_dir)
        collection = client.get_collection(manifest.collection)
        live = {"points": live_count(client, manifest.collection), "status": str(collection.status)}
    info = asdict(manifest)
    info["model"] = {k: v for k, v in info["model"].items() if k != "probe"}
    return {"path": str(index_dir.resolve()), "manifest": str(index_dir / MANIFEST), **info, "collection_now": live}
