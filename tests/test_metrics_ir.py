"""IR suite: equal to sentence-transformers' InformationRetrievalEvaluator on the same model and data."""

from __future__ import annotations

import json
import math

import pytest

from koembed.evaluation.metrics import ir_metrics, query_ir_metrics


def test_hand_computed_query():
    # relevant {a, b}; ranking x a y b
    m = query_ir_metrics(["x", "a", "y", "b"], {"a", "b"})
    assert m["accuracy@1"] == 0.0 and m["accuracy@3"] == 1.0
    assert m["precision@3"] == pytest.approx(1 / 3) and m["recall@3"] == pytest.approx(1 / 2)
    assert m["recall@5"] == 1.0
    assert m["mrr@10"] == pytest.approx(1 / 2)
    assert m["ndcg@10"] == pytest.approx((1 / math.log2(3) + 1 / math.log2(5)) / (1 + 1 / math.log2(3)))
    assert m["map@100"] == pytest.approx((1 / 2 + 2 / 4) / 2)


def test_map_divides_by_min_k_relevant_and_missing_ranking_counts_as_miss():
    assert query_ir_metrics(["a"], {"a", "b", "c"})["map@100"] == pytest.approx(1 / 3)
    m = ir_metrics({"q1": ["a"]}, {"q1": {"a"}, "q2": {"b"}})
    assert m["accuracy@1"] == pytest.approx(0.5)


@pytest.mark.slow
def test_eval_equals_sentence_transformers_evaluator(tiny_model_dir, sample, tmp_path):
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator
    from sentence_transformers.util import cos_sim, dot_score
    from typer.testing import CliRunner

    from koembed.cli import app

    out = tmp_path / "eval.json"
    # Same batch size as the evaluator (32): padding changes float rounding, and a random tiny model
    # scores many passages nearly alike, so different batches could reorder near-ties.
    result = CliRunner().invoke(app, ["eval", "--model", str(tiny_model_dir), "--out", str(out), "-q", "--batch-size", "32"])
    assert result.exit_code == 0, result.output
    ours = json.loads(out.read_text())["metrics"]

    evaluator = InformationRetrievalEvaluator(
        queries=sample.queries, corpus=sample.corpus,
        relevant_docs={q: sample.relevant_ids(q) for q in sample.relevant},
        score_functions={"cosine": cos_sim, "dot": dot_score}, show_progress_bar=False, write_csv=False)
    theirs = evaluator(SentenceTransformer(str(tiny_model_dir), device="cpu"))
    assert len(ours) == 2 * 15
    for name, value in ours.items():
        assert value == pytest.approx(float(theirs[name]), abs=1e-6), name
    # The tiny random model must not be trivially perfect or zero, or equality would prove little.
    assert 0.0 < ours["cosine_ndcg@10"] < 1.0
