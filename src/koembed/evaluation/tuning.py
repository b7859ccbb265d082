"""Fit the weights of a score combination on development sets: the lexical fields of one BM25
(``koembed tune-lexical``) or the runs of several retrievers fused (``koembed tune-fusion``).

A :class:`RankingProblem` holds, for every development query, its candidate passages (the union of each
component's top ``depth``), their per-component scores under each scale (a per-query normalisation of BM25
fields, or a fusion's scale of each retriever's run), and which are relevant. :func:`fit_weights` then evaluates
a fixed grid of weights exactly and vectorised (a weighted sum, ties by doc id, ndcg@10 with the IR suite's
definition) and keeps the combination whose worst development set gains most over a baseline (the first
component alone, or the best single component): a weight that helps one kind of query by hurting another is not
chosen. Deterministic: no sampling, ties between combinations go to the smaller weights.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from koembed.data import RetrievalSet
from koembed.lexical import BM25Retriever, LexicalConfig
from koembed.ranking import RRF_K, Hit, fusion_scores, id_ranks, normalized

if TYPE_CHECKING:
    import numpy as np

WEIGHT_GRID = (0.0, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0)
NDCG_AT = 10
BASELINES = ("first", "best")


@dataclass
class RankingProblem:
    """One development set as arrays over (query, candidate[, component]). Each query's candidates are in doc-id
    order, so a stable sort by score breaks ties by doc id; padding rows are not ``valid``."""

    name: str
    components: tuple[str, ...]
    scores: dict[str, np.ndarray]  # scale -> (Q, C, F) float32
    matched: np.ndarray  # (Q, C, F) bool: the component returned (or matched) the candidate
    relevant: np.ndarray  # (Q, C) bool
    n_relevant: np.ndarray  # (Q,) relevant passages per query, found or not
    valid: np.ndarray  # (Q, C) bool
    own_scale: str | None = None  # a scale on which each component alone ranks as it does on its own (no ties added)


def _assemble(rs: RetrievalSet, components: Sequence[str], scales: Sequence[str],
              per_query: Sequence[tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]],
              own_scale: str | None = None) -> RankingProblem:
    """Pad each query's (candidate rows in doc-id order, scale -> (C, F) scores, (C, F) matched) into arrays."""
    import numpy as np

    width = max(1, max((len(rows) for rows, *_ in per_query), default=1))
    q, f = len(per_query), len(components)
    scores: dict[Any, np.ndarray] = {m: np.zeros((q, width, f), dtype=np.float32) for m in scales}
    matched: np.ndarray = np.zeros((q, width, f), dtype=bool)
    relevant: np.ndarray = np.zeros((q, width), dtype=bool)
    valid: np.ndarray = np.zeros((q, width), dtype=bool)
    row_of = {doc: i for i, doc in enumerate(rs.doc_ids)}
    for i, (qid, (rows, norms, hit)) in enumerate(zip(rs.query_ids, per_query)):
        n = len(rows)
        for m in scales:
            scores[m][i, :n] = norms[m]
        matched[i, :n], valid[i, :n] = hit, True
        rel = {row_of[d] for d in rs.relevant_ids(qid)}
        relevant[i, :n] = [r in rel for r in rows]
    n_relevant = np.array([len(rs.relevant_ids(qid)) for qid in rs.query_ids], dtype=np.int64)
    return RankingProblem(rs.name, tuple(components), scores, matched, relevant, n_relevant, valid, own_scale)


def lexical_problem(rs: RetrievalSet, config: LexicalConfig, normalizations: Sequence[str] = ("none", "max", "z"),
                    depth: int = 100) -> RankingProblem:
    """The fields of ``config`` on ``rs`` as a :class:`RankingProblem` (one BM25 analysis of the corpus); the
    scales are per-query normalisations of each field's scores over the whole corpus."""
    import numpy as np

    bm25 = BM25Retriever(config, show_progress=False)
    bm25.fit(rs.doc_ids, list(rs.corpus.values()))
    ranks = id_ranks(rs.doc_ids)
    per_query = []
    for field_scores in bm25.field_scores([rs.queries[q] for q in rs.query_ids]):
        top = {int(i) for s in field_scores for i in np.argsort(-s, kind="stable")[:depth] if s[i] > 0}
        rows = np.array(sorted(top, key=lambda r: ranks[r]), dtype=np.int64)  # doc-id order: stable sorts tie-break
        norms = {m: np.stack([normalized(s, m)[rows] for s in field_scores], axis=-1) for m in normalizations}
        per_query.append((rows, norms, (field_scores[:, rows] > 0).T))
    return _assemble(rs, config.fields, normalizations, per_query)


def fusion_scale(fusion: str, rrf_k: int = RRF_K) -> str:
    """The name of a fusion's scale in a problem's ``scores``: ``z``, ``dbsf``, ``cc``, or ``rrf@K``."""
    return f"rrf@{rrf_k}" if fusion == "rrf" else fusion


def fusion_problem(rs: RetrievalSet, runs: Mapping[str, Mapping[str, Sequence[Hit]]],
                   scales: Sequence[tuple[str, int]] = (("z", RRF_K),)) -> RankingProblem:
    """Several retrievers' runs on ``rs`` (``runs[spec][qid]``: its top hits, best first) as a
    :class:`RankingProblem`: a query's candidates are the union of the runs' hits, each scored on every
    ``(fusion, rrf_k)`` scale exactly as :func:`koembed.ranking.fuse` scores it (a run that misses a candidate
    gives it the scale's floor), so a weighted sum here ranks as the fused retriever will."""
    import numpy as np

    names = list(runs)
    ranks = id_ranks(rs.doc_ids)
    row_of = {doc: i for i, doc in enumerate(rs.doc_ids)}
    scales = list(dict.fromkeys([*scales, ("rrf", RRF_K)]))  # reciprocal ranks: each run alone, exactly as it ranks
    keys = [fusion_scale(f, k) for f, k in scales]
    per_query = []
    for qid in rs.query_ids:
        hits = [runs[name].get(qid, []) for name in names]
        rows = np.array(sorted({row_of[d] for h in hits for d, _ in h}, key=lambda r: ranks[r]), dtype=np.int64)
        column = {int(r): c for c, r in enumerate(rows)}
        matched: np.ndarray = np.zeros((len(rows), len(names)), dtype=bool)
        norms = {key: np.zeros((len(rows), len(names))) for key in keys}
        for f, run in enumerate(hits):
            cols = [column[row_of[d]] for d, _ in run]
            matched[cols, f] = True
            for key, (fusion, rrf_k) in zip(keys, scales):
                values, floor = fusion_scores([s for _, s in run], fusion, rrf_k)
                norms[key][:, f] = floor
                norms[key][cols, f] = values
        per_query.append((rows, norms, matched))
    return _assemble(rs, names, keys, per_query, own_scale=fusion_scale("rrf", RRF_K))


def mean_ndcg(problem: RankingProblem, weights: Sequence[float], scale: str) -> float:
    """Mean ndcg@10 of ranking each query's candidates by the weighted sum (ties by doc id); a candidate counts
    only if a component with a positive weight returned it."""
    import numpy as np

    w = np.asarray(weights, dtype=np.float32)
    used = w > 0
    hit = problem.valid & problem.matched[..., used].any(axis=-1)
    score = np.where(hit, problem.scores[scale] @ w, -np.inf)
    order = np.argsort(-score, axis=1, kind="stable")[:, :NDCG_AT]  # candidates are in doc-id order
    gains = np.take_along_axis(problem.relevant & hit, order, axis=1)  # (Q, min(C, 10)): fewer candidates, fewer ranks
    discounts = 1.0 / np.log2(np.arange(2, NDCG_AT + 2))
    ideal = np.cumsum(discounts)[np.minimum(problem.n_relevant, NDCG_AT) - 1]  # over all relevant, found or not
    discounts = discounts[:gains.shape[1]]
    return float(np.mean((gains * discounts).sum(axis=1) / ideal))


def fit_weights(problems: Sequence[RankingProblem], components: Sequence[str], scale: str,
                grid: Sequence[float] = WEIGHT_GRID, baseline: str = "first") -> dict[str, Any]:
    """The weights (first component fixed at 1, the others on ``grid``) that maximise the smallest ndcg@10 gain
    across ``problems`` over ``baseline`` (``first``: the first component alone; ``best``: each set's best single
    component), then the mean gain; returns the weights, the gains and each set's baseline and fitted ndcg@10."""
    if not grid or any(not math.isfinite(g) or g < 0 for g in grid):
        raise ValueError(f"weight grid must be non-negative finite numbers, not {list(grid)!r}")
    if baseline not in BASELINES:
        raise ValueError(f"baseline must be one of {', '.join(BASELINES)}, not {baseline!r}")
    n = len(components)
    # each component alone, ranked as it ranks on its own: DBSF's clipping would tie its best passages at 1
    alone = [[mean_ndcg(p, [float(i == j) for j in range(n)], p.own_scale or scale) for i in range(n)]
             for p in problems]
    base = [a[0] if baseline == "first" else max(a) for a in alone]
    best: tuple[Any, ...] | None = None
    for rest in itertools.product(grid, repeat=n - 1):
        weights = (1.0, *rest)
        gains = [mean_ndcg(p, weights, scale) - b for p, b in zip(problems, base)]
        key = (round(min(gains), 6), round(sum(gains) / len(gains), 6), -sum(rest))
        if best is None or key > best[0]:
            best = (key, weights, gains)
    assert best is not None
    (objective, mean_gain, _), weights, gains = best
    return {"scale": scale, "weights": {c: w for c, w in zip(components, weights) if w > 0},
            "objective": objective, "mean_gain": mean_gain, "baseline": baseline,
            "dev": {p.name: {"ndcg@10": round(b + g, 4), "baseline": round(b, 4),
                             "alone": {c: round(v, 4) for c, v in zip(components, a)}}
                    for p, b, g, a in zip(problems, base, gains, alone)}}


def fit_fusion(problems: Sequence[RankingProblem], scales: Sequence[tuple[str, int]],
               grid: Sequence[float] = WEIGHT_GRID, report: Callable[[dict[str, Any]], None] | None = None
               ) -> dict[str, Any]:
    """:func:`fit_weights` for every fusion scale (``(fusion, rrf_k)``) against each set's best single retriever;
    returns the best fit (largest worst-set gain, then mean gain; ties to the earlier scale) with all fits."""
    fits = []
    for fusion, rrf_k in scales:
        fit = fit_weights(problems, problems[0].components, fusion_scale(fusion, rrf_k), grid, baseline="best")
        fit.update(fusion=fusion, rrf_k=rrf_k)
        fits.append(fit)
        if report is not None:
            report(fit)
    best = max(fits, key=lambda f: (f["objective"], f["mean_gain"]))  # max keeps the first of equals
    return {**best, "all": [{k: f[k] for k in ("fusion", "rrf_k", "weights", "objective", "mean_gain")}
                            for f in fits]}
