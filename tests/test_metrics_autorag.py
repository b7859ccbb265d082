"""AutoRAG suite: hand-computed cases, and agreement with a transcription of AutoRAG's own functions."""

from __future__ import annotations

import itertools
import math
import random

import pytest

from koembed.metrics import autorag_metrics, query_autorag_metrics


# --- AutoRAG's definitions, transcribed in AutoRAG's own style (autorag/evaluation/metric/retrieval.py) ---
def ref_recall(gt, pred):
    gt_sets = [frozenset(g) for g in gt]
    pred_set = set(pred)
    hits = sum(any(pred_id in gt_set for pred_id in pred_set) for gt_set in gt_sets)
    return hits / len(gt) if len(gt) > 0 else 0.0


def ref_precision(gt, pred):
    gt_sets = [frozenset(g) for g in gt]
    pred_set = set(pred)
    hits = sum(any(pred_id in gt_set for gt_set in gt_sets) for pred_id in pred_set)
    return hits / len(pred) if len(pred) > 0 else 0.0


def ref_f1(gt, pred):
    r, p = ref_recall(gt, pred), ref_precision(gt, pred)
    return 0 if r + p == 0 else 2 * (r * p) / (r + p)


def ref_ndcg(gt, pred):
    gt_sets = [frozenset(g) for g in gt]
    relevance = {pid: 1 if any(pid in s for s in gt_sets) else 0 for pid in set(pred)}
    dcg = sum((2 ** relevance[d] - 1) / math.log2(i + 2) for i, d in enumerate(pred))
    n_gt = len(list(itertools.chain.from_iterable(gt)))
    ideal = [1] * min(n_gt, len(pred)) + [0] * max(0, len(pred) - n_gt)
    idcg = sum(r / math.log2(i + 2) for i, r in enumerate(ideal))
    return dcg / idcg if idcg > 0 else 0


def ref_mrr(gt, pred):
    rr = []
    for gt_set in [frozenset(g) for g in gt]:
        for i, pid in enumerate(pred):
            if pid in gt_set:
                rr.append(1.0 / (i + 1))
                break
    return sum(rr) / len(gt) if rr else 0.0


def ref_map(gt, pred):
    ap = []
    for gt_set in [frozenset(g) for g in gt]:
        hits = [1 if pid in gt_set else 0 for pid in pred]
        precisions = [sum(hits[: i + 1]) / (i + 1) for i, h in enumerate(hits) if h == 1]
        ap.append(sum(precisions) / len(precisions) if precisions else 0.0)
    return sum(ap) / len(gt) if ap else 0.0


REFERENCE = {"f1": ref_f1, "recall": ref_recall, "precision": ref_precision, "ndcg": ref_ndcg, "mrr": ref_mrr,
             "map": ref_map}


def test_hand_computed_two_groups():
    # Groups: {a} and {b, c}; retrieved x, b, a, c.
    gt = [["a"], ["b", "c"]]
    pred = ["x", "b", "a", "c"]
    m = query_autorag_metrics(pred, gt)
    assert m["recall"] == pytest.approx(1.0)
    assert m["precision"] == pytest.approx(3 / 4)
    assert m["f1"] == pytest.approx(2 * 0.75 / 1.75)
    dcg = 1 / math.log2(3) + 1 / math.log2(4) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3) + 1 / math.log2(4)  # 3 ids in the groups, 4 retrieved -> 3 ideal ranks
    assert m["ndcg"] == pytest.approx(dcg / idcg)
    assert m["mrr"] == pytest.approx((1 / 3 + 1 / 2) / 2)
    # group {a}: hit at rank 3 -> 1/3; group {b,c}: hits at ranks 2, 4 -> (1/2 + 2/4) / 2
    assert m["map"] == pytest.approx((1 / 3 + (1 / 2 + 2 / 4) / 2) / 2)


def test_miss_gives_zero_and_f1_defined():
    m = query_autorag_metrics(["x", "y"], [["a"]])
    assert m == {"f1": 0.0, "recall": 0.0, "precision": 0.0, "map": 0.0, "mrr": 0.0, "ndcg": 0.0}


def test_empty_ground_truth_or_results_are_skipped_not_zero():
    assert query_autorag_metrics([], [["a"]]) is None
    assert query_autorag_metrics(["a"], []) is None
    rankings = {"q1": ["a"], "q2": [], "q3": ["b"]}
    gt = {"q1": [["a"]], "q2": [["a"]], "q3": [["a"]]}
    m = autorag_metrics(rankings, gt, top_k=1)
    assert m["recall"] == pytest.approx(0.5)  # q2 skipped: (1 + 0) / 2, not / 3


def test_top_k_cuts_the_ranking():
    rankings = {"q": ["x", "y", "a"]}
    gt = {"q": [["a"]]}
    assert autorag_metrics(rankings, gt, 1)["recall"] == 0.0
    assert autorag_metrics(rankings, gt, 3)["recall"] == 1.0
    assert autorag_metrics(rankings, gt, 3)["mrr"] == pytest.approx(1 / 3)


def test_agrees_with_autorag_definitions_on_random_cases():
    rng = random.Random(7)
    ids = [f"d{i}" for i in range(12)]
    for _ in range(500):
        groups = [rng.sample(ids, rng.randint(1, 3)) for _ in range(rng.randint(1, 3))]
        pred = rng.sample(ids, rng.randint(1, 10))
        ours = query_autorag_metrics(pred, groups)
        for name, ref in REFERENCE.items():
            assert ours[name] == pytest.approx(ref(groups, pred), abs=1e-12), (name, groups, pred)
