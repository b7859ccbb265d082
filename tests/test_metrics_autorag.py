"""AutoRAG suite: hand-computed cases, and agreement with a transcription of AutoRAG's own functions."""

from __future__ import annotations

import math
import random

import pytest

from koembed.evaluation.metrics import autorag_metrics, query_autorag_metrics
from tests.helpers import REFERENCE


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
