"""The rerank stage: a first stage's top ``depth`` hits rescored by a cross-encoder.

``rerank:<cross-encoder>@<first-stage spec>`` in bench, ``koembed search --rerank MODEL``, ``/search`` with
``"rerank": true`` and ``POST /v1/rerank`` all go through :func:`rerank_hits` / :func:`rerank_documents`, so a
query and its passages are scored the same way everywhere (``CrossEncoder.predict``,
:func:`koembed.models.reranker.rerank_scores`).

A reranked ranking holds the first stage's top ``depth`` hits (fewer if it had fewer), ordered by the
cross-encoder's score, ties by ascending doc id: it never drops a hit the first stage had within the depth, and
never adds one the first stage did not find. Hits past the depth are not returned (their scores are on another
scale), so ``k`` above ``depth`` gives ``depth`` hits.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

from koembed.models import EncodeOptions
from koembed.models.reranker import rerank_scores
from koembed.models.spec import ProgressFromOptions
from koembed.progress import progress
from koembed.ranking import Hit, sort_hits

if TYPE_CHECKING:
    from sentence_transformers import CrossEncoder

DEFAULT_RERANK_DEPTH = 50
QUERY_CHUNK = 64  # queries whose candidates are scored in one predict call (pairs sorted by length inside)


def rerank_hits(model: CrossEncoder, queries: Sequence[str], hits: Sequence[Sequence[Hit]],
                text: Callable[[str], str], k: int, depth: int = DEFAULT_RERANK_DEPTH,
                options: EncodeOptions = EncodeOptions()) -> list[list[Hit]]:
    """Each query's first ``depth`` hits rescored by ``model`` and ordered by that score; the top ``k``.

    ``text(doc_id)`` gives a passage's text. Scores are the cross-encoder's (the first stage's are dropped).
    """
    if depth < 1:
        raise ValueError(f"rerank depth must be at least 1, not {depth}")
    candidates = [list(h[:depth]) for h in hits]
    pairs = [(query, text(doc)) for query, cands in zip(queries, candidates) for doc, _ in cands]
    scores = rerank_scores(model, pairs, options).tolist()
    out, at = [], 0
    for cands in candidates:
        rescored = [(doc, float(s)) for (doc, _), s in zip(cands, scores[at: at + len(cands)])]
        at += len(cands)
        out.append(sort_hits(rescored, k))
    return out


def rerank_documents(model: CrossEncoder, query: str, documents: Sequence[str], top_n: int | None = None,
                     options: EncodeOptions = EncodeOptions()) -> list[dict[str, Any]]:
    """TEI / Cohere-style rerank of a document list: ``[{"index", "relevance_score"}]``, best first, ties by
    ascending index, the first ``top_n`` (all when None)."""
    scores = rerank_scores(model, [(query, doc) for doc in documents], options).tolist()
    order = sorted(range(len(documents)), key=lambda i: (-scores[i], i))
    return [{"index": i, "relevance_score": float(scores[i])} for i in order[:top_n]]


def first_stage_depth(k: int, depth: int, reranking: bool = True) -> int:
    """First-stage hits to fetch for a top-``k`` answer: ``depth`` candidates (at least ``k``) when a reranker
    rescores them, else ``k``. One rule for the rerank spec, ``koembed search --rerank`` and ``/search``."""
    return max(k, depth) if reranking else k


class ModeSearch(Protocol):
    """What :func:`search_then_rerank` needs of an index (:class:`koembed.index.Index`, a Qdrant index)."""

    def search(self, queries: Sequence[str], k: int, mode: str = ...) -> list[list[Hit]]: ...

    def text(self, doc_id: str) -> str: ...


def search_then_rerank(index: ModeSearch, queries: Sequence[str], k: int, *, mode: str,
                       reranker: CrossEncoder | None = None, depth: int = DEFAULT_RERANK_DEPTH,
                       options: EncodeOptions = EncodeOptions(show_progress=False)) -> list[list[Hit]]:
    """Each query's top ``k`` hits from ``index`` in ``mode``; with a ``reranker``, its first-stage
    :func:`first_stage_depth` hits rescored (:func:`rerank_hits`): ``koembed search``'s whole pipeline."""
    hits = index.search(queries, first_stage_depth(k, depth, reranker is not None), mode=mode)
    return hits if reranker is None else rerank_hits(reranker, queries, hits, index.text, k, depth, options)


class RerankRetriever(ProgressFromOptions):
    """A fitted first-stage retriever whose top ``depth`` hits a cross-encoder rescores (module docstring).

    ``fit`` keeps the passage texts the cross-encoder reads; the first stage is fitted by whoever built it
    (:class:`koembed.retrieval.factory.RetrieverFactory` shares it with other specs).
    """

    def __init__(self, first: Any, model: CrossEncoder, name: str, depth: int = DEFAULT_RERANK_DEPTH,
                 options: EncodeOptions = EncodeOptions()):
        if depth < 1:
            raise ValueError(f"rerank depth must be at least 1, not {depth}")
        self.first, self.model, self.name, self.depth, self.options = first, model, name, depth, options
        self._texts: dict[str, str] = {}

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        self._texts = dict(zip(doc_ids, texts))

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        first = self.first.search(queries, first_stage_depth(k, self.depth))
        quiet = replace(self.options, show_progress=False)
        out: list[list[Hit]] = []
        for start in progress(range(0, len(queries), QUERY_CHUNK), desc=f"Reranking {self.name}", unit="chunk",
                          disable=not self.show_progress):
            stop = start + QUERY_CHUNK
            out += rerank_hits(self.model, queries[start:stop], first[start:stop], self._texts.__getitem__, k,
                               self.depth, quiet)
        return out

    def score(self, queries: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[float]:
        """Cross-encoder scores of (query position, corpus row) pairs."""
        texts = list(self._texts.values())
        return rerank_scores(self.model, [(queries[q], texts[row]) for q, row in pairs], self.options).tolist()
