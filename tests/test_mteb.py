"""``koembed eval --mteb``: an MTEB retrieval task run by the mteb package on a koembed model.

The hub is out of reach in tests, so the task's data is a local copy of a dataset repository built from the
bundled sample (``--mteb-data``); mteb's NDCG@10, recall@10 and MRR@10 must equal koembed's own IR suite on the
same data and model (sentence-transformers' definitions, computed without mteb). Missing data with no hub, an
unknown task, a task of another type and a folder that is not a dataset are exit 2 with a clear message.
"""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import koembed.evaluation.mteb_tasks as mteb_eval
from koembed.cli import app
from koembed.data import load_retrieval_set
from koembed.evaluation.runner import evaluate_model
from koembed.models import ModelSpec
from tests.helpers import QUIET, write_mteb_dataset

TASK = "Ko-StrategyQA"  # a Korean retrieval task; its eval split is "dev"


@pytest.fixture(autouse=True)
def _datasets_cache(tmp_path, monkeypatch):
    """datasets caches what it reads (the local copy too) in a folder of this test, not the user's."""
    import datasets

    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", tmp_path / "hf-datasets")


def _eval(*args):
    return CliRunner().invoke(app, ["eval", *map(str, args), "-q"])


@pytest.mark.slow
def test_mteb_scores_equal_koembed_ir_suite(tmp_path, tiny_model_dir):
    rs = load_retrieval_set(None)
    data = write_mteb_dataset(rs, tmp_path / "ko-strategyqa")
    out = tmp_path / "mteb.json"
    result = _eval("-m", tiny_model_dir, "--mteb", TASK, "--mteb-data", data, "--out", out)
    assert result.exit_code == 0, result.output
    document = json.loads(out.read_text(encoding="utf-8"))
    assert document["task"] == TASK and document["mteb"]["task_name"] == TASK
    scores = document["mteb"]["scores"]["dev"][0]
    ours = evaluate_model(rs, ModelSpec(str(tiny_model_dir)), QUIET)
    assert scores["main_score"] == scores["ndcg_at_10"]
    for theirs, mine in (("ndcg_at_10", "cosine_ndcg@10"), ("recall_at_10", "cosine_recall@10"),
                         ("mrr_at_10", "cosine_mrr@10")):
        assert scores[theirs] == pytest.approx(ours[mine], abs=6e-6), theirs  # mteb rounds to 5 decimals
    assert 0 < ours["cosine_ndcg@10"] < 1
    assert f"{scores['ndcg_at_10']:.4f}" in result.output


def test_mteb_without_hub_or_local_data_exits_2(tmp_path, monkeypatch):
    monkeypatch.setattr(mteb_eval, "hub_reachable", lambda *a, **k: False)
    out = tmp_path / "mteb.json"
    result = _eval("-m", "minilm", "--mteb", TASK, "--out", out)
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    assert "cannot be reached" in message and "--mteb-data" in message and "hf download" in message
    assert not out.exists()


@pytest.mark.parametrize("args, words", [
    (["--mteb", "NoSuchTask"], ["not an mteb task", "Ko-StrategyQA"]),
    (["--mteb", "KLUE-TC"], ["Classification", "retrieval tasks"]),
    (["--mteb", TASK, "--mteb-data", "{tmp}/missing"], ["no such folder"]),
    (["--mteb", TASK, "--mteb-data", "{tmp}"], ["could not read", "corpus"]),
    (["--mteb-data", "{tmp}"], ["needs --mteb"]),
    (["--mteb", TASK, "--data", "{tmp}"], ["do not apply"]),
])
def test_mteb_bad_requests_exit_2(tmp_path, args, words):
    (tmp_path / "notes.txt").write_text("not a dataset", encoding="utf-8")
    result = _eval("-m", "minilm", *[a.format(tmp=tmp_path) for a in args])
    assert result.exit_code == 2, result.output
    message = " ".join(result.output.split())
    for word in words:
        assert word in message, message
