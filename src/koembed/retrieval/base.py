"""The Retriever protocol every method implements (fit / search / score).

A retriever is fitted on a corpus, then returns for each query its top-k ``(doc_id, score)`` hits, best
first, ties broken by ascending doc id (:mod:`koembed.ranking`), and can score given (query, passage) pairs on
the same scale (:meth:`Retriever.score`, what hard-negative mining compares against).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from koembed.ranking import Hit

if TYPE_CHECKING:
    pass


FUSION_DEPTH = 100  # candidates each child contributes to a fusion


class Retriever(Protocol):
    name: str
    show_progress: bool

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        """Index the corpus; called once before :meth:`search`."""

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        """Top-``k`` hits per query, best first."""

    def score(self, queries: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[float]:
        """Scores of (query position, corpus row) pairs on :meth:`search`'s scale; :class:`SpecError` where a
        retriever has no such score (a fusion)."""
