"""Lexical weights of a corpus (BGE-M3's sparse output) as an inverted index in memory.

The corpus is a scipy CSR matrix (passages x vocabulary): a query's scores against every passage are one sparse
product, which touches only the postings of the query's token ids, as an inverted index does. The score is
FlagEmbedding's lexical matching score, the sum of weight products over shared token ids
(:func:`koembed.models.m3.lexical_score`). Hits, like BM25's, are only the passages sharing a token with the
query. Used by the ``m3-sparse:`` / ``m3:`` retrievers and rebuilt by an index from its stored weights.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from koembed.ranking import Hit, id_ranks, top_k

if TYPE_CHECKING:
    import numpy as np
    from scipy.sparse import csr_matrix


def weights_matrix(weights: Sequence[Mapping[int, float]], vocab_size: int) -> csr_matrix:
    """Rows of ``{token id: weight}`` as a (len(weights), vocab_size) float32 CSR matrix; ids outside the
    vocabulary are dropped (a query token the corpus cannot hold)."""
    import numpy as np
    from scipy.sparse import csr_matrix

    indptr: np.ndarray = np.zeros(len(weights) + 1, dtype=np.int64)
    indices: list[int] = []
    data: list[float] = []
    for row, mapping in enumerate(weights):
        kept = [(int(t), float(w)) for t, w in mapping.items() if 0 <= int(t) < vocab_size]
        indices.extend(t for t, _ in kept)
        data.extend(w for _, w in kept)
        indptr[row + 1] = len(indices)
    return csr_matrix((np.asarray(data, dtype=np.float32), np.asarray(indices, dtype=np.int64), indptr),
                      shape=(len(weights), vocab_size))


class SparseIndex:
    """An in-memory inverted index of lexical weights (see the module docstring)."""

    def __init__(self, doc_ids: Sequence[str], weights: Sequence[Mapping[int, float]], vocab_size: int):
        if len(doc_ids) != len(weights):
            raise ValueError(f"{len(doc_ids)} doc ids but {len(weights)} weight maps")
        self.doc_ids = list(doc_ids)
        self.vocab_size = vocab_size
        self._matrix = weights_matrix(weights, vocab_size).T.tocsr()  # vocabulary x passages: the postings
        self._rank = id_ranks(self.doc_ids)

    def __len__(self) -> int:
        return len(self.doc_ids)

    def score_vectors(self, queries: Sequence[Mapping[int, float]]) -> np.ndarray:
        """(queries, passages) float32 scores; 0 where a passage shares no token with the query."""
        import numpy as np

        product = weights_matrix(queries, self.vocab_size) @ self._matrix
        return np.asarray(product.toarray(), dtype=np.float32)

    def search(self, queries: Sequence[Mapping[int, float]], k: int) -> list[list[Hit]]:
        """Top-``k`` passages sharing a token with each query, best first, ties by ascending doc id."""
        k = min(k, len(self.doc_ids))
        return [[(doc, score) for doc, score in top_k(row, self._rank, self.doc_ids, k) if score > 0]
                for row in self.score_vectors(queries)]
