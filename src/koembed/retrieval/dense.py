"""Exact dense search: a sentence-transformers (or ONNX / static) encoder, the corpus embedded once, queries scored
against corpus blocks so memory is the embeddings plus one block of scores.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from koembed.models import EncodeOptions, Encoder, encode
from koembed.models.prompts import Prompts, model_prompts, role_options
from koembed.models.spec import ProgressFromOptions
from koembed.ranking import TIE_SLACK, Hit, best_rows, id_ranks

if TYPE_CHECKING:
    import numpy as np


class DenseRetriever(ProgressFromOptions):
    """Exact nearest-neighbour search with an embedding model.

    The corpus is embedded once (n x dim float32); queries are scored against it in blocks of
    ``query_block`` x ``corpus_block``, keeping a running top-k, so memory stays at
    O(n * dim + query_block * corpus_block) and never holds a queries x corpus matrix.
    ``similarity`` is ``cosine`` or ``dot`` (sentence-transformers' ``cos_sim`` / ``dot_score``);
    ``None`` uses the model's own similarity function. ``options`` say how texts are encoded; queries and
    passages get the model's query and passage prompts (:mod:`koembed.models.prompts`).
    """

    def __init__(self, model: Encoder, name: str, similarity: str | None = None,
                 options: EncodeOptions = EncodeOptions(), query_block: int = 1024, corpus_block: int = 16384):
        self.model = model
        self.name = name
        self.similarity = similarity or getattr(model, "similarity_fn_name", None) or "cosine"
        if self.similarity not in ("cosine", "dot"):
            raise ValueError(f"similarity must be cosine or dot, not {self.similarity!r}")
        self.options = options
        self.query_block, self.corpus_block = query_block, corpus_block
        self._doc_ids: list[str] = []
        self._corpus_emb = None
        self._id_rank: np.ndarray | None = None
        self._query_cache: tuple[tuple[str, ...], object] | None = None

    @property
    def prompts(self) -> Prompts:
        return model_prompts(self.model)

    def fit(self, doc_ids: Sequence[str], texts: Sequence[str]) -> None:
        self.fit_embeddings(doc_ids, encode(self.model, texts, role_options(self.options, self.model, "passage")))

    def fit_embeddings(self, doc_ids: Sequence[str], embeddings: np.ndarray) -> None:
        """Use corpus embeddings computed elsewhere (stored shards, a timed benchmark) instead of encoding."""
        import numpy as np
        import torch

        if len(doc_ids) != len(embeddings):
            raise ValueError(f"{len(doc_ids)} doc ids but {len(embeddings)} embeddings")
        self._doc_ids = list(doc_ids)
        self._corpus_emb = torch.from_numpy(np.ascontiguousarray(embeddings, dtype=np.float32))
        self._id_rank = id_ranks(self._doc_ids)

    def with_similarity(self, similarity: str) -> DenseRetriever:
        """A view on the same fitted corpus embeddings that scores with another similarity."""
        other = DenseRetriever(self.model, self.name, similarity, self.options, self.query_block, self.corpus_block)
        other._doc_ids, other._corpus_emb, other._id_rank = self._doc_ids, self._corpus_emb, self._id_rank
        other._query_cache = self._query_cache
        return other

    def _embed_queries(self, queries: Sequence[str]):
        import torch

        key = tuple(queries)
        if self._query_cache is None or self._query_cache[0] != key:
            self._query_cache = (key, torch.from_numpy(
                encode(self.model, queries, role_options(self.options, self.model, "query"))))
        return self._query_cache[1]

    def score(self, queries: Sequence[str], pairs: Sequence[tuple[int, int]]) -> list[float]:
        """Scores of (query position, corpus row) pairs on the search's scale, from the same embeddings."""
        from sentence_transformers.util import pairwise_cos_sim, pairwise_dot_score

        if self._corpus_emb is None:
            raise RuntimeError("call fit() before search()")
        q_emb = self._embed_queries(queries)
        pair_fn = pairwise_cos_sim if self.similarity == "cosine" else pairwise_dot_score
        values = pair_fn(q_emb[[q for q, _ in pairs]], self._corpus_emb[[r for _, r in pairs]])
        return [float(v) for v in values.tolist()]

    def search(self, queries: Sequence[str], k: int) -> list[list[Hit]]:
        import torch
        from sentence_transformers.util import cos_sim, dot_score

        if self._corpus_emb is None:
            raise RuntimeError("call fit() before search()")
        score_fn = cos_sim if self.similarity == "cosine" else dot_score
        n = len(self._doc_ids)
        k = min(k, n)
        q_emb = self._embed_queries(queries)
        keep = min(n, k + TIE_SLACK)
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
                for row_s, row_i in zip(best_s.numpy(), best_i.numpy()):
                    top = best_rows(row_s, self._id_rank, k, rows=row_i)
                    results.append([(self._doc_ids[row_i[j]], float(row_s[j])) for j in top])
        return results
