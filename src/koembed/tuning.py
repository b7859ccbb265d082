"""Fit the weights of a score combination on development sets: lexical fields today, any set of scorers that
gives each candidate passage one score per component.

A :class:`RankingProblem` holds, for every development query, its candidate passages (the union of each
component's top ``depth``), their per-component scores under each per-query normalisation, and which are
relevant. :func:`fit_field_weights` then evaluates a fixed grid of weights exactly and vectorised (a weighted
sum, ties by doc id, ndcg@10 with the IR suite's definition) and keeps the combination whose worst development
set gains most over the first component alone: a weight that helps one kind of query by hurting another is not
chosen. Deterministic: no sampling, ties between combinations go to the smaller weights.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from koembed.data import RetrievalSet
from koembed.lexical import BM25Retriever, LexicalConfig
from koembed.ranking import id_ranks, normalized

if TYPE_CHECKING:
    import numpy as np

WEIGHT_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
NDCG_AT = 10


@dataclass
class RankingProblem:
    """One development set as arrays over (query, candidate[, component]). Each query's candidates are in doc-id
    order, so a stable sort by score breaks ties by doc id; padding rows are not ``valid``."""

    name: str
    components: tuple[str, ...]
    scores: dict[str, np.ndarray]  # normalisation -> (Q, C, F) float32
    matched: np.ndarray  # (Q, C, F) bool: the candidate shares a term with the query in that component
    relevant: np.ndarray  # (Q, C) bool
    n_relevant: np.ndarray  # (Q,) relevant passages per query, found or not
    valid: np.ndarray  # (Q, C) bool


def lexical_problem(rs: RetrievalSet, config: LexicalConfig, normalizations: Sequence[str] = ("none", "max", "z"),
                    depth: int = 100) -> RankingProblem:
    """The fields of ``config`` on ``rs`` as a :class:`RankingProblem` (one BM25 analysis of the corpus)."""
    import numpy as np

    bm25 = BM25Retriever(config, show_progress=False)
    bm25.fit(rs.doc_ids, list(rs.corpus.values()))
    ranks = id_ranks(rs.doc_ids)
    row_of = {doc: i for i, doc in enumerate(rs.doc_ids)}
    per_query = []
    for qid, field_scores in zip(rs.query_ids, bm25.field_scores([rs.queries[q] for q in rs.query_ids])):
        top = {int(i) for s in field_scores for i in np.argsort(-s, kind="stable")[:depth] if s[i] > 0}
        rows = np.array(sorted(top, key=lambda r: ranks[r]), dtype=np.int64)  # doc-id order: stable sorts tie-break
        norms = {m: np.stack([normalized(s, m)[rows] for s in field_scores], axis=-1) for m in normalizations}
        relevant = {row_of[d] for d in rs.relevant_ids(qid)}
        per_query.append((rows, norms, (field_scores[:, rows] > 0).T, relevant))
    width = max(1, max(len(rows) for rows, *_ in per_query))
    q, f = len(per_query), len(config.fields)
    scores = {m: np.zeros((q, width, f), dtype=np.float32) for m in normalizations}
    matched = np.zeros((q, width, f), dtype=bool)
    relevant = np.zeros((q, width), dtype=bool)
    valid = np.zeros((q, width), dtype=bool)
    for i, (rows, norms, hit, rel) in enumerate(per_query):
        n = len(rows)
        for m in normalizations:
            scores[m][i, :n] = norms[m]
        matched[i, :n], valid[i, :n] = hit, True
        relevant[i, :n] = [r in rel for r in rows]
    n_relevant = np.array([len(rs.relevant_ids(qid)) for qid in rs.query_ids], dtype=np.int64)
    return RankingProblem(rs.name, config.fields, scores, matched, relevant, n_relevant, valid)


def mean_ndcg(problem: RankingProblem, weights: Sequence[float], normalization: str) -> float:
    """Mean ndcg@10 of ranking each query's candidates by the weighted sum (ties by doc id)."""
    import numpy as np

    w = np.asarray(weights, dtype=np.float32)
    used = w > 0
    hit = problem.valid & problem.matched[..., used].any(axis=-1)
    score = np.where(hit, problem.scores[normalization] @ w, -np.inf)
    order = np.argsort(-score, axis=1, kind="stable")[:, :NDCG_AT]  # candidates are in doc-id order
    gains = np.take_along_axis(problem.relevant & hit, order, axis=1)
    discounts = 1.0 / np.log2(np.arange(2, NDCG_AT + 2))
    ideal = np.cumsum(discounts)[np.minimum(problem.n_relevant, NDCG_AT) - 1]
    return float(np.mean((gains * discounts).sum(axis=1) / ideal))


def fit_field_weights(problems: Sequence[RankingProblem], components: Sequence[str], normalization: str,
                      grid: Sequence[float] = WEIGHT_GRID) -> dict[str, Any]:
    """The weights (first component fixed at 1, the others on ``grid``) that maximise the smallest ndcg@10 gain
    over the first component alone across ``problems``, then the mean gain; returns the weights and the gains."""
    if not grid or any(not math.isfinite(g) or g < 0 for g in grid):
        raise ValueError(f"weight grid must be non-negative finite numbers, not {list(grid)!r}")
    baseline = [mean_ndcg(p, [1.0] + [0.0] * (len(components) - 1), normalization) for p in problems]
    best: tuple[Any, ...] | None = None
    for rest in itertools.product(grid, repeat=len(components) - 1):
        weights = (1.0, *rest)
        gains = [mean_ndcg(p, weights, normalization) - b for p, b in zip(problems, baseline)]
        key = (round(min(gains), 6), round(sum(gains) / len(gains), 6), -sum(rest))
        if best is None or key > best[0]:
            best = (key, weights, gains)
    assert best is not None
    (objective, mean_gain, _), weights, gains = best
    return {"normalization": normalization, "weights": {c: w for c, w in zip(components, weights) if w > 0},
            "objective": objective, "mean_gain": mean_gain,
            "dev": {p.name: {"ndcg@10": round(b + g, 4), "unigram": round(b, 4)}
                    for p, b, g in zip(problems, baseline, gains)}}
