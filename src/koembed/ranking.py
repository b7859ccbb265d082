"""Rankings: top-k with doc-id tie-breaking, rank fusion, and the hit rows users see.

Every koembed ranking orders hits by score, best first, and equal scores by ascending doc id, the order
sentence-transformers' InformationRetrievalEvaluator uses; the functions here are the only places that do it:
- :func:`best_rows` for score arrays (BM25 score vectors, dense blocks): numpy, no Python sort over a corpus;
- :func:`sort_hits` for candidate lists (FAISS results, fused scores).
A search that takes a fixed number of candidates from an engine asks for :data:`TIE_SLACK` more than k, so
that ties at the k-th score are still ordered by doc id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

Hit = tuple[str, float]
TIE_SLACK = 16  # extra candidates per engine search so ties at the k-th score are ordered by doc id
RRF_K = 60  # the constant of Cormack et al. (2009), used by Elasticsearch and AutoRAG too
FUSIONS = ("rrf", "cc", "z", "dbsf")
NORMALIZATIONS = ("none", "max", "minmax", "z", "dbsf")
FUSION_NORMALIZATION = {"cc": "minmax", "z": "z", "dbsf": "dbsf"}  # score fusions: how each run is normalised


def id_ranks(doc_ids: Sequence[str]) -> np.ndarray:
    """Each doc's position in ascending doc-id order (int64): the tie-breaker of :func:`best_rows`."""
    import numpy as np

    order = np.argsort(np.array(doc_ids, dtype=object), kind="stable")
    ranks: np.ndarray = np.empty(len(order), dtype=np.int64)
    ranks[order] = np.arange(len(order))
    return ranks


def best_rows(scores: np.ndarray, id_rank: np.ndarray, k: int, rows: np.ndarray | None = None) -> np.ndarray:
    """Positions into ``scores`` of the ``k`` best, ordered by (-score, doc id).

    ``rows`` (optional, same length as ``scores``) are the corpus rows the scores belong to, for candidate
    lists; without it position i is corpus row i. Exact also when ties straddle the k-th place.
    """
    import numpy as np

    scores = np.asarray(scores)
    rows = np.arange(len(scores)) if rows is None else np.asarray(rows)
    if k <= 0 or not len(scores):
        return np.empty(0, dtype=np.int64)
    if k < len(scores):
        kth = np.partition(scores, len(scores) - k)[len(scores) - k]
        candidates = np.flatnonzero(scores >= kth)
    else:
        candidates = np.arange(len(scores))
    order = np.lexsort((id_rank[rows[candidates]], -scores[candidates]))[:k]
    return candidates[order]


def top_k(scores: np.ndarray, id_rank: np.ndarray, doc_ids: Sequence[str], k: int) -> list[Hit]:
    """The ``k`` best of a full score vector as ``(doc_id, score)`` hits (see :func:`best_rows`)."""
    return [(doc_ids[i], float(scores[i])) for i in best_rows(scores, id_rank, k)]


def sort_hits(hits: Mapping[str, float] | Iterable[Hit], k: int | None = None) -> list[Hit]:
    """Hits ordered by (-score, doc id), the first ``k`` (all when None)."""
    items = hits.items() if isinstance(hits, Mapping) else hits
    ordered = sorted(items, key=lambda kv: (-kv[1], kv[0]))
    return ordered if k is None else ordered[:k]


def normalized(values: np.ndarray, method: str) -> np.ndarray:
    """One query's scores put on a common scale before they are added to another retriever's or field's.

    ``none``: as they are. ``max``: divided by the largest (0 stays 0). ``minmax``: (v - min) / (max - min), a
    constant list becomes all 1. ``z``: (v - mean) / std, a constant list becomes all 0. ``dbsf``: Qdrant's
    distribution-based score fusion scale, (v - (mean - 3 std)) / (6 std) clipped to [0, 1], a constant list
    becomes all 0.5 (its mean). Returns float64.
    """
    import numpy as np

    values = np.asarray(values, dtype=np.float64)
    if method == "none" or not len(values):
        return values
    if method == "max":
        top = values.max()
        return values / top if top > 0 else values
    if method == "minmax":
        lo, span = values.min(), values.max() - values.min()
        return (values - lo) / span if span > 0 else np.ones_like(values)
    if method == "z":
        std = values.std()
        return (values - values.mean()) / std if std > 0 else np.zeros_like(values)
    if method == "dbsf":
        std = values.std()
        if std == 0:
            return np.full_like(values, 0.5)
        return np.clip((values - (values.mean() - 3 * std)) / (6 * std), 0.0, 1.0)
    raise ValueError(f"unknown normalization {method!r}: use {', '.join(NORMALIZATIONS)}")


def fusion_scores(scores: Sequence[float], fusion: str, rrf_k: int = RRF_K) -> tuple[np.ndarray, float]:
    """One run's scores (best first) on ``fusion``'s scale, and the value a passage missing from the run counts.

    ``rrf``: 1 / (rrf_k + rank), rank from 1; missing counts 0. Score fusions normalise the run's scores over its
    own hits (:func:`normalized`): ``cc`` min-max, ``z`` z-score, ``dbsf`` mean +- 3 std; a missing passage
    counts the scale's floor: 0 for ``cc`` and ``dbsf``, the run's lowest z-score for ``z`` (a passage the
    retriever did not return is at best as good as its last hit, never average).
    """
    import numpy as np

    if fusion == "rrf":
        return 1.0 / (rrf_k + np.arange(1, len(scores) + 1, dtype=np.float64)), 0.0
    if fusion not in FUSION_NORMALIZATION:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")
    values = normalized(np.asarray(scores, dtype=np.float64), FUSION_NORMALIZATION[fusion])
    floor = float(values.min()) if fusion == "z" and len(values) else 0.0
    return values, floor


def default_weights(fusion: str, n: int) -> list[float]:
    """Weights when a spec gives none: 1 each for RRF (Cormack et al.'s sum), 1/n each for score fusions."""
    return [1.0] * n if fusion == "rrf" else [1.0 / n] * n


def fuse(runs: Sequence[Sequence[Hit]], fusion: str = "rrf", weights: Sequence[float] | None = None,
         k: int | None = None, rrf_k: int = RRF_K) -> list[Hit]:
    """Fuse one query's rankings from several retrievers into one: each passage scores the weighted sum of its
    :func:`fusion_scores` over the runs (a run that misses it adds its floor), over the passages some run with a
    positive weight returned; a weight of 0 leaves a run out.

    ``rrf``: reciprocal-rank fusion (weights default 1: Cormack et al.'s plain sum), robust because it ignores
    the retrievers' incomparable score scales, with ``rrf_k`` damping the top ranks. ``cc`` (min-max), ``z``
    (z-score) and ``dbsf`` (Qdrant's 3-sigma scale) keep each retriever's score margins; weights default to 1/n.
    """
    if fusion not in FUSIONS:
        raise ValueError(f"fusion must be one of {', '.join(FUSIONS)}, not {fusion!r}")
    weights = list(weights) if weights is not None else default_weights(fusion, len(runs))
    scores: dict[str, float] = {}
    base = 0.0
    for weight, hits in zip(weights, runs):
        if weight <= 0 or not hits:
            continue
        values, floor = fusion_scores([s for _, s in hits], fusion, rrf_k)
        base += weight * floor
        for (doc, _), value in zip(hits, values):
            scores[doc] = scores.get(doc, 0.0) + weight * (float(value) - floor)
    return sort_hits({doc: base + value for doc, value in scores.items()}, k)


def hit_rows(hits: Sequence[Hit], text: Callable[[str], str]) -> list[dict[str, Any]]:
    """Hits as the rows ``koembed search --json`` prints and ``/search`` returns: rank, docid, score, text."""
    return [{"rank": rank, "docid": doc, "score": score, "text": text(doc)}
            for rank, (doc, score) in enumerate(hits, start=1)]
