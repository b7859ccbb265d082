"""Retrievers over BGE-M3's sparse and multi-vector outputs: ``m3-sparse:``, ``m3-colbert:`` and ``m3:``.

- ``m3-sparse:<model>``: lexical weights in an inverted index (:class:`koembed.retrieval.inverted.SparseIndex`); hits are the
  passages sharing a token with the query.
- ``m3-colbert:<model>``: exact late interaction over every passage's ColBERT vectors (held in memory: tokens x
  dim float32 for the corpus, e.g. about 1 GB for 1,000 bge-m3 passages of 250 tokens).
- ``m3:<model>`` (``m3@0.4,0.2,0.4:<model>``): FlagEmbedding's ``colbert+sparse+dense`` score, the weighted sum
  of the three scores divided by the sum of the weights (dense, sparse, colbert; default 0.4, 0.2, 0.4), computed
  exactly for every passage.

Definitions of the outputs and scores: :mod:`koembed.models.m3`. One forward pass per text gives all three.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING

from koembed.models import EncodeOptions
from koembed.models.m3 import (
    M3Encoder,
    M3Output,
    colbert_score,
    combined_score,
    lexical_score,
    m3_weights,
)
from koembed.models.prompts import Prompts, model_prompts
from koembed.models.spec import ProgressFromOptions
from koembed.progress import progress
from koembed.ranking import Hit, id_ranks, top_k
from koembed.retrieval.inverted import SparseIndex

if TYPE_CHECKING:
    import numpy as np

M3_MODES = ("sparse", "colbert", "m3")
QUERY_BLOCK = 256  # queries scored at once: bounds the (queries x passages) score block


class M3Retriever(ProgressFromOptions):
    """One of the three M3 retrievers (see the module docstring); ``mode`` is ``sparse``, ``colbert`` or ``m3``."""

    def __init__(self, encoder: M3Encoder, name: str, mode: str = "m3", weights: Sequence[float] | None = None,
                 options: EncodeOptions = EncodeOptions()):
        if mode not in M3_MODES:
            raise ValueError(f"mode must be one of {', '.join(M3_MODES)}, not {mode!r}")
        self.encoder, self.name, self.mode = encoder, name, mode
        self.weights = m3_weights(weights)
        self.options = options
        self._doc_ids: list[str] = []
        self._corpus: M3Output | None = None
        self._sparse: SparseIndex | None = None
        self._tokens: np.ndarray | None = None  # every passage's ColBERT vectors, stacked
        self._starts: np.ndarray | None = None  # the row of each passage's first vector in _tokens

    @property
    def prompts(self) -> Prompts:
        return model_prompts(self.encoder.model)

    def _outputs(self) -> dict[str, bool]:
        return {"dense": self.mode == "m3", "sparse": self.mode != "colbert", "colbert": self.mode != "sparse"}

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        self.fit_outputs(doc_ids, self.encoder.encode(texts, self.options, "passage", **self._outputs()))

    def fit_outputs(self, doc_ids: Sequence[str], corpus: M3Output) -> None:
        """Use corpus outputs computed elsewhere (a stored index's lexical weights, a benchmark)."""
        import numpy as np

        self._doc_ids = list(doc_ids)
        self._rank = id_ranks(self._doc_ids)
        self._corpus = corpus
        if corpus.sparse:
            self._sparse = SparseIndex(self._doc_ids, corpus.sparse, len(self.encoder.tokenizer))
        if corpus.colbert:
            self._tokens = np.concatenate(corpus.colbert)
            self._starts = np.cumsum([0] + [len(v) for v in corpus.colbert[:-1]])

    def _colbert_scores(self, query: np.ndarray) -> np.ndarray:
        """Late interaction of one query with every passage: mean over query vectors of the best passage vector."""
        import numpy as np

        if not len(query):
            return np.zeros(len(self._doc_ids), dtype=np.float32)
        if self._tokens is None or self._starts is None:
            raise RuntimeError("colbert scores need a corpus fitted with ColBERT vectors")
        best = np.maximum.reduceat(query @ self._tokens.T, self._starts, axis=1)  # (query tokens, passages)
        return best.sum(axis=0) / len(query)

    def score_vectors(self, queries: Sequence[str]) -> np.ndarray:
        """(queries, passages) scores on the retriever's scale, every passage scored."""
        import numpy as np

        if self._corpus is None:
            raise RuntimeError("call fit() before search()")
        q = self.encoder.encode(queries, replace(self.options, show_progress=False), "query", **self._outputs())
        parts: dict[str, np.ndarray] = {}
        if self.mode != "colbert":
            if self._sparse is None:
                raise RuntimeError("sparse scores need a corpus fitted with lexical weights")
            parts["sparse"] = self._sparse.score_vectors(q.sparse)
        if self.mode != "sparse":
            parts["colbert"] = np.stack([self._colbert_scores(v) for v in q.colbert])
        if self.mode == "m3":
            dense = q.dense @ self._corpus.dense.T
            return combined_score(dense, parts["sparse"], parts["colbert"], self.weights).astype(np.float32)
        return parts[self.mode].astype(np.float32)

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        k = min(k, len(self._doc_ids))
        results: list[list[Hit]] = []
        with progress(total=len(queries), desc=self.name, unit="query", disable=not self.show_progress) as bar:
            for start in range(0, len(queries), QUERY_BLOCK):
                for scores in self.score_vectors(queries[start: start + QUERY_BLOCK]):
                    hits = top_k(scores, self._rank, self._doc_ids, k)
                    results.append([h for h in hits if h[1] > 0] if self.mode == "sparse" else hits)
                bar.update(len(queries[start: start + QUERY_BLOCK]))
        return results

    def score(self, queries: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[float]:
        """Scores of (query position, corpus row) pairs, the numbers :meth:`search` ranks by."""
        if self._corpus is None:
            raise RuntimeError("call fit() before search()")
        q = self.encoder.encode(queries, replace(self.options, show_progress=False), "query", **self._outputs())
        corpus = self._corpus
        out = []
        for qi, row in pairs:
            sparse = lexical_score(q.sparse[qi], corpus.sparse[row]) if corpus.sparse else 0.0
            colbert = colbert_score(q.colbert[qi], corpus.colbert[row]) if corpus.colbert else 0.0
            if self.mode == "m3":
                out.append(combined_score(float(q.dense[qi] @ corpus.dense[row]), sparse, colbert, self.weights))
            else:
                out.append(sparse if self.mode == "sparse" else colbert)
        return out
