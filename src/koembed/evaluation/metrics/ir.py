"""The IR suite of the BGE-m3-ko card, with sentence-transformers' InformationRetrievalEvaluator definitions.

Relevance is binary. For each query with at least one relevant doc, on its ranking (sorted by score,
ties by ascending doc id):
- accuracy@k: 1 if any relevant doc is in the top k;
- precision@k: relevant docs in the top k / k;  recall@k: ... / number relevant;
- mrr@k: 1 / rank of the first relevant doc in the top k (0 if none);
- ndcg@k: sum over relevant hits of 1/log2(rank+1), over the ideal sum for min(k, number relevant) docs;
- map@k: sum of precision at each relevant hit in the top k, / min(k, number relevant).
All are averaged over queries. ``tests/test_metrics_ir.py`` checks equality with the evaluator itself.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

ACCURACY_AT = (1, 3, 5, 10)
PRECISION_RECALL_AT = (1, 3, 5, 10)
NDCG_AT = (10,)
MRR_AT = (10,)
MAP_AT = (100,)
IR_DEPTH = max(MAP_AT)  # how many results per query the suite needs


def metric_names() -> list[str]:
    """The suite's keys in the card's order: accuracy, precision, recall, ndcg, mrr, map."""
    names = [f"accuracy@{k}" for k in ACCURACY_AT]
    names += [f"precision@{k}" for k in PRECISION_RECALL_AT]
    names += [f"recall@{k}" for k in PRECISION_RECALL_AT]
    names += [f"ndcg@{k}" for k in NDCG_AT] + [f"mrr@{k}" for k in MRR_AT] + [f"map@{k}" for k in MAP_AT]
    return names


def _dcg(relevances: Sequence[int], k: int) -> float:
    return sum(relevances[i] / math.log2(i + 2) for i in range(min(len(relevances), k)))


def query_ir_metrics(ranking: Sequence[str], relevant: set[str]) -> dict[str, float]:
    """All metrics for one query; ``ranking`` is doc ids best first."""
    hits = [1 if doc in relevant else 0 for doc in ranking]
    out: dict[str, float] = {}
    for k in ACCURACY_AT:
        out[f"accuracy@{k}"] = 1.0 if any(hits[:k]) else 0.0
    for k in PRECISION_RECALL_AT:
        out[f"precision@{k}"] = sum(hits[:k]) / k
        out[f"recall@{k}"] = sum(hits[:k]) / len(relevant)
    for k in NDCG_AT:
        out[f"ndcg@{k}"] = _dcg(hits, k) / _dcg([1] * len(relevant), k)
    for k in MRR_AT:
        out[f"mrr@{k}"] = next((1.0 / (i + 1) for i, h in enumerate(hits[:k]) if h), 0.0)
    for k in MAP_AT:
        found, total = 0, 0.0
        for i, h in enumerate(hits[:k]):
            if h:
                found += 1
                total += found / (i + 1)
        out[f"map@{k}"] = total / min(k, len(relevant))
    return out


def ir_metrics(rankings: Mapping[str, Sequence[str]], relevant: Mapping[str, set[str]]) -> dict[str, float]:
    """Mean of :func:`query_ir_metrics` over the queries of ``relevant`` that have relevant docs.

    A query with no ranking counts as all misses, as it would in the evaluator.
    """
    qids = [q for q in relevant if relevant[q]]
    if not qids:
        raise ValueError("no query has a relevant document")
    totals = dict.fromkeys(metric_names(), 0.0)
    for qid in qids:
        for name, value in query_ir_metrics(rankings.get(qid, []), relevant[qid]).items():
            totals[name] += value
    return {name: total / len(qids) for name, total in totals.items()}
