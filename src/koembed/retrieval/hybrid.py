"""Fusion of several retrievers' top hits (RRF, min-max, z-score, DBSF; :mod:`koembed.ranking`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from koembed.errors import SpecError
from koembed.ranking import FUSIONS, RRF_K, Hit, default_weights, fuse
from koembed.retrieval.base import FUSION_DEPTH, Retriever

if TYPE_CHECKING:
    pass


class HybridRetriever:
    """Fuses the rankings of two or more retrievers (:func:`koembed.ranking.fuse`).

    ``fusion``: ``rrf`` (reciprocal ranks, ``rrf_k``), ``cc`` (min-max), ``z`` (z-scores) or ``dbsf`` (3-sigma
    scale); ``weights`` one per retriever (default :func:`koembed.ranking.default_weights`). Each child
    contributes its top 100 (or k if larger).
    """

    def __init__(self, children: Sequence[Retriever], fusion: str = "rrf", weights: Sequence[float] | None = None,
                 name: str | None = None, rrf_k: int = RRF_K):
        if len(children) < 2:
            raise ValueError("a hybrid retriever needs at least two retrievers")
        if fusion not in FUSIONS:
            raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")
        self.children = list(children)
        self.fusion = fusion
        self.rrf_k = rrf_k
        self.weights = list(weights) if weights is not None else default_weights(fusion, len(children))
        if len(self.weights) != len(self.children):
            raise ValueError("one weight per retriever")
        self.name = name or f"hybrid-{fusion}:" + "+".join(c.name for c in children)

    @property
    def show_progress(self) -> bool:
        return any(child.show_progress for child in self.children)

    @show_progress.setter
    def show_progress(self, show: bool) -> None:
        for child in self.children:
            child.show_progress = show

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        for child in self.children:
            child.fit(doc_ids, texts)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        depth = max(k, FUSION_DEPTH)
        runs = [child.search(queries, depth) for child in self.children]
        return [fuse(per_query, self.fusion, self.weights, k, self.rrf_k) for per_query in zip(*runs)]

    def score(self, queries: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[float]:
        raise SpecError(f"{self.name!r}: a fusion has no score for a passage outside its hits")
