"""A loaded Qdrant index: dense, bm25 and hybrid search through Qdrant's Query API, hits as koembed orders them.

Hits are ``(doc_id, score)``, best first, ties by ascending doc id (Qdrant breaks ties by its own order, so
koembed asks for :data:`koembed.ranking.TIE_SLACK` more and sorts). ``dense``: cosine. ``bm25``: Qdrant's
sparse score, ``idf x`` koembed's BM25 weights (= koembed's BM25, :mod:`koembed.index.qdrant_sparse`), only passages
sharing a term with the query. ``hybrid``: Qdrant fuses the dense and bm25 prefetches (each the top max(k,
100), as :class:`koembed.retrieval.hybrid.HybridRetriever` takes) server-side: ``rrf`` with Qdrant's ``k=61``, which
is koembed's RRF (1 / (60 + rank from 1)) since Qdrant counts ranks from 0, or ``dbsf``; with ``weights``
koembed fuses the two runs itself (:func:`koembed.ranking.fuse`, ``cc``). ``sparse``, ``colbert`` and ``m3``
(an index built with a bge-m3-layout model): BGE-M3's lexical, ColBERT and weighted-sum scores, as koembed's
``m3-sparse:``, ``m3-colbert:`` and ``m3:`` retrievers give them (:mod:`koembed.index.qdrant_m3`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from koembed.errors import SpecError
from koembed.index.analysis import index_analyzer
from koembed.index.encoder import checked_encoder, embed, with_prompt
from koembed.index.faiss import normalized
from koembed.index.manifest import MANIFEST
from koembed.index.qdrant import (
    BM25,
    DENSE,
    QdrantManifest,
    check_collection,
    connected,
    hidden,
    live_count,
    open_client,
    point_id,
    read_qdrant_manifest,
    txn_filter,
)
from koembed.index.qdrant_m3 import M3_COLBERT, M3_SEARCH_MODES, M3_SPARSE, m3_requests, require_m3
from koembed.index.qdrant_sparse import query_vector
from koembed.lexical import Analyzer
from koembed.models import EncodeOptions, Encoder
from koembed.models.m3 import M3Encoder, combined_score, m3_encoder, m3_weights
from koembed.ranking import RRF_K, TIE_SLACK, Hit, fuse, sort_hits
from koembed.retrieval.base import FUSION_DEPTH

MODES = ("dense", "bm25", "hybrid", *M3_SEARCH_MODES)
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
        self._tokenizer: Analyzer | None = None
        self._m3: M3Encoder | None = None

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
            if not points or hidden(self.manifest, points[0].payload):
                raise KeyError(doc_id)
            self._texts[doc_id] = points[0].payload["text"]
        return self._texts[doc_id]

    @property
    def encoder(self) -> Encoder:
        """The embedding model, loaded from the manifest on first use and checked against the index."""
        if self._encoder is None:
            self._encoder = checked_encoder(None, self.manifest, self.path, device=self._device)
        return self._encoder

    def search(self, queries: Sequence[str], k: int = 10, mode: str = "dense", *, fusion: str = "rrf",
               weights: Sequence[float] | None = None) -> list[list[Hit]]:
        """Top-``k`` ``(doc_id, score)`` per query (see the module docstring for the modes and fusions).
        ``weights``: hybrid's (dense, bm25), or m3's (dense, sparse, colbert; default 0.4, 0.2, 0.4)."""
        if mode not in MODES:
            raise SpecError(f"unknown search mode {mode!r}: use {', '.join(MODES)}")
        if fusion not in QDRANT_FUSIONS:
            raise SpecError(f"unknown fusion {fusion!r}: use {', '.join(QDRANT_FUSIONS)}")
        if mode in M3_SEARCH_MODES:
            require_m3(self.manifest.m3, mode, self.path)
            try:
                m3_weights(weights)
            except ValueError as exc:
                raise SpecError(str(exc)) from None
        elif weights is not None and len(weights) != 2:
            raise SpecError("hybrid weights: one for dense, one for bm25")
        if k < 1:
            raise SpecError(f"k must be at least 1, not {k}")
        queries = list(queries)
        if not self._size or not queries:
            return [[] for _ in queries]
        if mode in M3_SEARCH_MODES:
            return self._m3_search(queries, k, mode, weights)
        if mode == "hybrid" and weights is not None:
            depth = max(k, FUSION_DEPTH)
            runs = zip(self.search(queries, depth, "dense"), self.search(queries, depth, "bm25"))
            return [fuse(list(pair), "cc", weights, k) for pair in runs]
        requests = self._requests(queries, k, mode, fusion)
        answered = iter(self._run([r for r in requests if r is not None]))
        # a query with no BM25 term matches nothing
        return [sort_hits(next(answered).items(), k) if r is not None else [] for r in requests]

    def _run(self, requests: list[Any]) -> list[dict[str, float]]:
        """``{doc_id: score}`` of each request's points (their texts kept for :meth:`text`)."""
        runs = []
        for answer in self._client.query_batch_points(self.manifest.collection, requests) if requests else []:
            run = {}
            for point in answer.points:
                if "text" in point.payload:
                    self._texts[point.payload["id"]] = point.payload["text"]
                run[point.payload["id"]] = float(point.score)
            runs.append(run)
        if len(self._texts) > 100_000:
            self._texts.clear()
        return runs

    def _m3_search(self, queries: list[str], k: int, mode: str, weights: Sequence[float] | None) -> list[list[Hit]]:
        """``sparse`` / ``colbert``: one Qdrant query each (ColBERT: Qdrant's MaxSim sum / the query's vector
        count, FlagEmbedding's mean). ``m3``: candidates from all three, rescored exactly on each vector."""
        from qdrant_client import models

        if self._m3 is None:
            self._m3 = m3_encoder(self.manifest.model["resolved"], self.encoder)
        q = self._m3.encode(queries, with_prompt(self.options, self.manifest, "query"), None,
                            dense=mode == "m3", sparse=mode != "colbert", colbert=mode != "sparse")
        # m3: the candidates' texts come once, with the dense rescoring
        common = {"filter": self._filter, "with_payload": ["id"] if mode == "m3" else ["id", "text"]}
        per_query = max(k, FUSION_DEPTH) if mode == "m3" else min(k + TIE_SLACK, self._size)
        requests = []
        for i in range(len(queries)):
            dense_request = ([models.QueryRequest(query=normalized(q.dense[i: i + 1])[0].tolist(), using=DENSE,
                                                  limit=per_query, **common)] if mode == "m3" else [])
            requests.append(dense_request + m3_requests(mode, q.sparse[i] if q.sparse else None,
                                                q.colbert[i] if q.colbert else None, per_query, common))
        answered = iter(self._run([r for group in requests for r in group]))
        runs = [[next(answered) for _ in group] for group in requests]
        if mode != "m3":
            scale = [1.0 / len(v) for v in q.colbert] if mode == "colbert" else [1.0] * len(queries)
            return [sort_hits(((d, s * c) for d, s in run[0].items()), k) if run else []
                    for run, c in zip(runs, scale)]
        exact = None  # local mode is always exact; a server is told to be, on the original vectors
        if self.manifest.url:
            exact = models.SearchParams(exact=True, quantization=models.QuantizationSearchParams(ignore=True))
        rescoring: list[list[Any]] = []
        for group in requests:
            candidates = sorted({d for run in runs[len(rescoring)] for d in run})
            only = models.Filter(must=[models.HasIdCondition(has_id=[point_id(d) for d in candidates])])
            rescoring.append([r.model_copy(update={"filter": only, "limit": len(candidates), "params": exact,
                                                   "with_payload": ["id", "text"] if r.using == DENSE else ["id"]})
                              for r in group])
        answered = iter(self._run([r for group in rescoring for r in group]))
        results = []
        for i, group in enumerate(rescoring):
            scores = {r.using: next(answered) for r in group}
            dense, sparse, colbert = scores[DENSE], scores.get(M3_SPARSE, {}), scores[M3_COLBERT]
            results.append(sort_hits(((d, float(combined_score(dense[d], sparse.get(d, 0.0),
                                                               colbert[d] / len(q.colbert[i]), weights)))
                                      for d in dense), k))
        return results

    def _requests(self, queries: list[str], k: int, mode: str, fusion: str) -> list[Any]:
        from qdrant_client import models

        limit = min(k + TIE_SLACK, self._size)
        params = None
        if self._filter is not None:  # idf over the committed passages only, as before the interrupted add
            params = models.SearchParams(idf=models.IdfCorpusParams(corpus=self._filter))
        dense = ([v.tolist() for v in embed(self.encoder, queries, with_prompt(self.options, self.manifest, "query"))]
                 if mode != "bm25" else [])
        sparse: list[Any] = []  # per query (None: no query term in the vocabulary), unless mode is dense
        if mode != "dense":
            fields = self.manifest.fields
            for query, tokens in zip(queries, self.analyzer(queries)):
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
    def analyzer(self) -> Analyzer:
        """The analyzer the index was built with (and its user dictionary), loaded on first use."""
        if self._tokenizer is None:
            self._tokenizer = index_analyzer(self.path, self.manifest.bm25)
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
            checked = checked_encoder(encoder, manifest, index_dir, device=device)
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
