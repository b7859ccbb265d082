"""The AutoRAG retrieval metrics, with AutoRAG's definitions (autorag/evaluation/metric/retrieval.py).

Ground truth is a list of groups of doc ids; any id of a group satisfies the group. On the top-k
retrieved ids ``pred`` of one query:
- recall = groups with at least one id retrieved / number of groups;
- precision = distinct retrieved ids that belong to some group / len(pred);
- f1 = 2RP / (R + P), 0 when both are 0;
- ndcg = sum_i rel_i / log2(i + 2) over pred (rel 1 if the id is in some group), divided by the ideal
  sum over min(number of ids in all groups, len(pred)) ranks;
- mrr = sum over groups of 1 / (first rank hitting the group), / number of groups;
- map = for each group, the mean over its hit positions of (hits so far in the group) / rank, 0 when
  never hit; summed and / number of groups.
Queries with empty ground truth or no results are skipped (AutoRAG returns None for them).

The published AutoRAG Korean embedding table computed the rank metrics at k >= 3 on results that were
not sorted by score, so only its top-1 numbers and recall are comparable with ours.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

AUTORAG_TOP_K = (1, 3, 5, 10, 50)
AUTORAG_METRICS = ("f1", "recall", "precision", "map", "mrr", "ndcg")


def query_autorag_metrics(pred: Sequence[str], gt: Sequence[Sequence[str]]) -> dict[str, float] | None:
    """All six metrics for one query, or None when it has no ground truth or no results."""
    if not gt or not pred:
        return None
    groups = [frozenset(g) for g in gt]
    pred_set = set(pred)
    recall = sum(1 for g in groups if g & pred_set) / len(groups)
    precision = sum(1 for p in pred_set if any(p in g for g in groups)) / len(pred)
    f1 = 0.0 if recall + precision == 0 else 2 * recall * precision / (recall + precision)

    relevant = frozenset().union(*groups)
    dcg = sum(1.0 / math.log2(i + 2) for i, p in enumerate(pred) if p in relevant)
    n_ideal = min(sum(len(g) for g in gt), len(pred))
    idcg = sum(1.0 / math.log2(i + 2) for i in range(n_ideal))
    ndcg = dcg / idcg if idcg > 0 else 0.0

    rr, ap = 0.0, 0.0
    for group in groups:
        positions = [i for i, p in enumerate(pred) if p in group]
        if positions:
            rr += 1.0 / (positions[0] + 1)
            ap += sum((n + 1) / (i + 1) for n, i in enumerate(positions)) / len(positions)
    return {"f1": f1, "recall": recall, "precision": precision, "map": ap / len(groups),
            "mrr": rr / len(groups), "ndcg": ndcg}


def autorag_metrics(rankings: Mapping[str, Sequence[str]], gt: Mapping[str, Sequence[Sequence[str]]],
                    top_k: int) -> dict[str, float]:
    """Mean of :func:`query_autorag_metrics` on the first ``top_k`` results, over non-skipped queries."""
    totals = dict.fromkeys(AUTORAG_METRICS, 0.0)
    counted = 0
    for qid, groups in gt.items():
        scores = query_autorag_metrics(list(rankings.get(qid, []))[:top_k], groups)
        if scores is None:
            continue
        counted += 1
        for name, value in scores.items():
            totals[name] += value
    if counted == 0:
        return {name: float("nan") for name in AUTORAG_METRICS}
    return {name: total / counted for name, total in totals.items()}
