"""One Retriever interface: BM25, exact dense search in corpus chunks, and hybrid fusion.

A retriever is fitted on a corpus, then returns for each query its top-k ``(doc_id, score)`` hits,
best first, ties broken by ascending doc id (the order sentence-transformers' evaluator uses).
Specs name retrievers on the command line:
- ``bm25``: :class:`koembed.lexical.BM25Retriever`;
- ``dense:<model>``: a hub id, local folder, or ``minilm`` (the bundled all-MiniLM-L6-v2);
- ``hybrid:<a>+<b>`` (or ``hybrid-rrf:``): reciprocal-rank fusion of two or more specs;
- ``hybrid-cc:<a>+<b>``: convex combination of min-max normalised scores, equal weights;
  ``hybrid-cc@0.3:<a>+<b>`` gives the first retriever weight 0.3 and the rest share 0.7.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from koembed.errors import SpecError

Hit = tuple[str, float]
RRF_K = 60  # the constant of Cormack et al. (2009), used by Elasticsearch and AutoRAG too
FUSION_DEPTH = 100  # candidates each child contributes to a fusion


class Retriever(Protocol):
    name: str

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        """Index the corpus; called once before :meth:`search`."""

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-``k`` hits per query, best first."""


def _sort_hits(hits: dict[str, float], k: int) -> list[Hit]:
    return sorted(hits.items(), key=lambda kv: (-kv[1], kv[0]))[:k]


class DenseRetriever:
    """Exact nearest-neighbour search with a sentence-transformers model.

    The corpus is embedded once (n x dim float32); queries are scored against it in blocks of
    ``query_block`` x ``corpus_block``, keeping a running top-k, so memory stays at
    O(n * dim + query_block * corpus_block) and never holds a queries x corpus matrix.
    ``similarity`` is ``cosine`` or ``dot`` (sentence-transformers' ``cos_sim`` / ``dot_score``);
    ``None`` uses the model's own similarity function.
    """

    def __init__(self, model, name: str, similarity: str | None = None, batch_size: int = 32,
                 query_block: int = 1024, corpus_block: int = 16384, show_progress: bool = True):
        self.model = model
        self.name = name
        self.similarity = similarity or getattr(model, "similarity_fn_name", None) or "cosine"
        if self.similarity not in ("cosine", "dot"):
            raise ValueError(f"similarity must be cosine or dot, not {self.similarity!r}")
        self.batch_size = batch_size
        self.query_block, self.corpus_block = query_block, corpus_block
        self.show_progress = show_progress
        self._doc_ids: list[str] = []
        self._corpus_emb = None
        self._id_rank = None
        self._query_cache: tuple[tuple[str, ...], object] | None = None

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        from koembed.models import encode

        self.fit_embeddings(doc_ids, encode(self.model, texts, batch_size=self.batch_size,
                                            show_progress=self.show_progress))

    def fit_embeddings(self, doc_ids: Sequence[str], embeddings: np.ndarray) -> None:
        """Use corpus embeddings computed elsewhere (stored shards, a timed benchmark) instead of encoding."""
        import torch

        if len(doc_ids) != len(embeddings):
            raise ValueError(f"{len(doc_ids)} doc ids but {len(embeddings)} embeddings")
        self._doc_ids = list(doc_ids)
        self._corpus_emb = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
        # each row's position in doc-id order, for tie-breaking; an int64 array, not 1M Python ints
        order = np.argsort(np.array(self._doc_ids, dtype=object), kind="stable")
        self._id_rank = np.empty(len(order), dtype=np.int64)
        self._id_rank[order] = np.arange(len(order))

    def with_similarity(self, similarity: str) -> DenseRetriever:
        """A view on the same fitted corpus embeddings that scores with another similarity."""
        other = DenseRetriever(self.model, self.name, similarity, self.batch_size, self.query_block,
                               self.corpus_block, self.show_progress)
        other._doc_ids, other._corpus_emb, other._id_rank = self._doc_ids, self._corpus_emb, self._id_rank
        other._query_cache = self._query_cache
        return other

    def _embed_queries(self, queries: Sequence[str]):
        import torch

        from koembed.models import encode

        key = tuple(queries)
        if self._query_cache is None or self._query_cache[0] != key:
            emb = encode(self.model, queries, batch_size=self.batch_size, show_progress=self.show_progress)
            self._query_cache = (key, torch.from_numpy(emb))
        return self._query_cache[1]

    def score_pairs(self, queries: Sequence[str], rows: Sequence[tuple[int, int]]) -> list[float]:
        """Scores of (query position, corpus row) pairs on the search's scale, from the same embeddings."""
        from sentence_transformers.util import pairwise_cos_sim, pairwise_dot_score

        if self._corpus_emb is None:
            raise RuntimeError("call fit() before search()")
        q_emb = self._embed_queries(queries)
        pair_fn = pairwise_cos_sim if self.similarity == "cosine" else pairwise_dot_score
        values = pair_fn(q_emb[[q for q, _ in rows]], self._corpus_emb[[r for _, r in rows]])
        return [float(v) for v in values.tolist()]

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        import torch
        from sentence_transformers.util import cos_sim, dot_score

        if self._corpus_emb is None:
            raise RuntimeError("call fit() before search()")
        score_fn: Callable = cos_sim if self.similarity == "cosine" else dot_score
        n = len(self._doc_ids)
        k = min(k, n)
        q_emb = self._embed_queries(queries)
        # A few extra candidates per block so ties at the k-th score are resolved by doc id exactly.
        keep = min(n, k + 16)
        results: list[list[Hit]] = []
        with torch.inference_mode():
            for qs in range(0, len(queries), self.query_block):
                q = q_emb[qs: qs + self.query_block]
                best_s = torch.full((len(q), 0), float("-inf"))
                best_i = torch.zeros((len(q), 0), dtype=torch.long)
                for cs in range(0, n, self.corpus_block):
                    scores = score_fn(q, self._corpus_emb[cs: cs + self.corpus_block])
                    s, i = torch.topk(scores, min(keep, scores.shape[1]), dim=1)
                    merged_s, merged_i = torch.cat([best_s, s], 1), torch.cat([best_i, i + cs], 1)
                    best_s, pos = torch.topk(merged_s, min(keep, merged_s.shape[1]), dim=1)
                    best_i = merged_i.gather(1, pos)
                for row_s, row_i in zip(best_s.tolist(), best_i.tolist()):
                    pairs = sorted(zip(row_s, row_i), key=lambda p: (-p[0], self._id_rank[p[1]]))[:k]
                    results.append([(self._doc_ids[i], s) for s, i in pairs])
        return results


class HybridRetriever:
    """Fuses the rankings of two or more retrievers.

    ``fusion="rrf"``: score = sum over retrievers of 1 / (60 + rank), rank from 1 — robust because it
    ignores the retrievers' incomparable score scales. ``fusion="cc"``: each retriever's scores are
    min-max normalised per query over its top 100, a missing doc counts 0, and the normalised scores
    are combined with ``weights`` (default equal). Each child contributes its top 100 (or k if larger).
    """

    def __init__(self, children: Sequence[Retriever], fusion: str = "rrf", weights: Sequence[float] | None = None,
                 name: str | None = None):
        if len(children) < 2:
            raise ValueError("a hybrid retriever needs at least two retrievers")
        if fusion not in ("rrf", "cc"):
            raise ValueError(f"fusion must be rrf or cc, not {fusion!r}")
        self.children = list(children)
        self.fusion = fusion
        self.weights = list(weights) if weights is not None else [1.0 / len(children)] * len(children)
        if len(self.weights) != len(self.children):
            raise ValueError("one weight per retriever")
        self.name = name or f"hybrid-{fusion}:" + "+".join(c.name for c in children)

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        for child in self.children:
            child.fit(doc_ids, texts)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        depth = max(k, FUSION_DEPTH)
        runs = [child.search(queries, depth) for child in self.children]
        fused = []
        for per_query in zip(*runs):
            scores: dict[str, float] = {}
            for weight, hits in zip(self.weights, per_query):
                if self.fusion == "rrf":
                    for rank, (doc, _) in enumerate(hits, start=1):
                        scores[doc] = scores.get(doc, 0.0) + 1.0 / (RRF_K + rank)
                elif hits:
                    values = np.array([s for _, s in hits], dtype=np.float64)
                    lo, span = values.min(), values.max() - values.min()
                    for (doc, _), v in zip(hits, values):
                        norm = (v - lo) / span if span > 0 else 1.0
                        scores[doc] = scores.get(doc, 0.0) + weight * norm
            fused.append(_sort_hits(scores, k))
        return fused


class RetrieverFactory:
    """Builds retrievers from specs, sharing loaded models and fitted children between specs.

    ``dense:minilm`` and ``hybrid:bm25+dense:minilm`` in one bench load the model and embed the corpus once.
    ``precision`` and ``backend`` apply to every dense model (:func:`koembed.models.load_model`). With ``cache_dir``,
    corpus embeddings are stored there per model, precision and corpus, reused by later runs and resumed if a
    run was interrupted (:func:`koembed.encode.cached_corpus_embeddings`).
    """

    def __init__(self, doc_ids: Sequence[str], texts: Sequence[str], batch_size: int = 32,
                 show_progress: bool = True, device: str | None = None, precision: str = "fp32",
                 cache_dir: str | None = None, backend: str = "torch"):
        self.doc_ids, self.texts = list(doc_ids), list(texts)
        self.batch_size, self.show_progress, self.device = batch_size, show_progress, device
        self.precision, self.cache_dir, self.backend = precision, cache_dir, backend
        self._fitted: dict[str, Retriever] = {}

    def get(self, spec: str) -> Retriever:
        """A fitted retriever for ``spec``."""
        spec = spec.strip()
        if spec not in self._fitted:
            self._fitted[spec] = self._build(spec)
        return self._fitted[spec]

    def _build(self, spec: str) -> Retriever:
        from koembed.lexical import BM25Retriever
        from koembed.models import load_model

        parsed = parse_spec(spec)
        if parsed.kind == "bm25":
            bm25 = BM25Retriever(show_progress=self.show_progress)
            bm25.fit(self.doc_ids, self.texts)
            return bm25
        if parsed.kind == "dense":
            model = load_model(parsed.model, device=self.device, precision=self.precision, backend=self.backend)
            dense = DenseRetriever(model, name=spec, batch_size=self.batch_size, show_progress=self.show_progress)
            if self.cache_dir is None:
                dense.fit(self.doc_ids, self.texts)
            else:
                from koembed.encode import cached_corpus_embeddings

                dense.fit_embeddings(self.doc_ids, cached_corpus_embeddings(
                    parsed.model, model, self.doc_ids, self.texts, self.cache_dir, batch_size=self.batch_size,
                    show_progress=self.show_progress))
            return dense
        children = [self.get(child) for child in parsed.children]
        return HybridRetriever(children, fusion=parsed.fusion, weights=parsed.weights, name=spec)


@dataclass(frozen=True)
class Spec:
    kind: str  # bm25 | dense | hybrid
    model: str = ""
    children: tuple[str, ...] = ()
    fusion: str = "rrf"
    weights: tuple[float, ...] | None = None


def parse_spec(spec: str) -> Spec:
    """Parse a retriever spec without loading anything, so a typo fails before any work starts."""
    spec = spec.strip()
    if spec == "bm25":
        return Spec("bm25")
    if spec.startswith("dense:"):
        model = spec[len("dense:"):].strip()
        if not model:
            raise SpecError("dense: needs a model, e.g. dense:minilm or dense:BAAI/bge-m3")
        return Spec("dense", model=model)
    if spec.startswith("hybrid"):
        head, sep, rest = spec.partition(":")
        fusion, weight = _parse_hybrid_head(head, spec)
        children = _split_children(rest) if sep else []
        if len(children) < 2:
            raise SpecError(f"{spec!r}: a hybrid needs two or more retrievers, e.g. hybrid:bm25+dense:minilm")
        for child in children:
            parse_spec(child)
        weights = None
        if weight is not None:
            weights = (weight,) + ((1.0 - weight) / (len(children) - 1),) * (len(children) - 1)
        return Spec("hybrid", children=tuple(children), fusion=fusion, weights=weights)
    raise SpecError(f"unknown retriever {spec!r}: use bm25, dense:<model>, hybrid:<a>+<b> or hybrid-cc:<a>+<b>")


def _parse_hybrid_head(head: str, spec: str) -> tuple[str, float | None]:
    name, _, weight_text = head.partition("@")
    fusion = {"hybrid": "rrf", "hybrid-rrf": "rrf", "hybrid-cc": "cc"}.get(name)
    if fusion is None:
        raise SpecError(f"{spec!r}: unknown fusion {name!r}; use hybrid, hybrid-rrf or hybrid-cc")
    if not weight_text:
        return fusion, None
    if fusion != "cc":
        raise SpecError(f"{spec!r}: a weight (@w) only applies to hybrid-cc")
    try:
        weight = float(weight_text)
    except ValueError:
        raise SpecError(f"{spec!r}: weight {weight_text!r} is not a number") from None
    if not 0.0 <= weight <= 1.0:
        raise SpecError(f"{spec!r}: weight must be between 0 and 1")
    return fusion, weight


def _split_children(rest: str) -> list[str]:
    """Split ``bm25+dense:a/b`` at '+' signs that start a new spec (model paths may contain '+')."""
    parts: list[str] = []
    for piece in rest.split("+"):
        if parts and not piece.startswith(("bm25", "dense:", "hybrid")):
            parts[-1] += "+" + piece
        else:
            parts.append(piece)
    return [p.strip() for p in parts if p.strip()]
