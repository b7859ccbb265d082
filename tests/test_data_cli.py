"""The CLI around the readers: koembed inspect and bench on good and bad retrieval sets (exit 2 with the message,
nothing written).

Every fixture is written inside ``tmp_path`` by the helpers of :mod:`tests.data_files`; expected values are written
out by hand (or computed from the fixture itself, never from the reader under test).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.data_files import (
    all_output,
    basic_corpus,
    basic_qa,
    cli,
    good_corpus,
    good_queries,
    numbered_articles,
    small_beir,
    write_autorag,
    write_beir,
    write_squad,
)


def test_cli_bench_bad_data_exits_2_and_writes_nothing(tmp_path):
    qa = basic_qa()
    del qa["retrieval_gt"]
    directory = write_autorag(tmp_path / "auto", qa, basic_corpus())
    out, runs, plot = tmp_path / "results.json", tmp_path / "runs", tmp_path / "p.png"
    result = cli("bench", "--data", str(directory), "-r", "bm25", "--out", str(out), "--run-out", str(runs),
                 "--plot", str(plot), "-q")
    assert result.exit_code == 2, result.output
    assert "retrieval_gt" in all_output(result)
    assert not isinstance(result.exception, (TypeError, AttributeError, ValueError))
    assert not out.exists() and not runs.exists() and not plot.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["auto"]


def test_cli_inspect_good_beir(tmp_path):
    directory = small_beir(tmp_path / "beir")
    result = cli("inspect", "--data", str(directory))
    assert result.exit_code == 0, all_output(result)
    text = all_output(result)
    assert "valid" in text
    assert "queries: 3" in text and "passages: 4" in text


def test_cli_inspect_bad_beir_exits_2(tmp_path):
    directory = write_beir(tmp_path / "beir", corpus=good_corpus(), queries=good_queries(),
                           qrels=[("q1", "zzz", 1)])
    result = cli("inspect", "--data", str(directory))
    assert result.exit_code == 2
    assert "zzz" in all_output(result) and "row 2" in all_output(result)


def test_cli_bench_bm25_writes_results_and_runs(tmp_path):
    directory = small_beir(tmp_path / "small")
    out, runs = tmp_path / "out" / "results.json", tmp_path / "runs"
    result = cli("bench", "--data", str(directory), "-r", "bm25", "--out", str(out), "--run-out", str(runs), "-q")
    assert result.exit_code == 0, all_output(result)

    doc = json.loads(out.read_text(encoding="utf-8"))
    assert set(doc) == {"dataset", "results"}
    assert doc["dataset"] == {"name": "small", "queries": 3, "corpus": 4}
    assert len(doc["results"]) == 1
    res = doc["results"][0]
    assert set(res) == {"retriever", "ir", "autorag", "run", "seconds", "prompts"}
    assert res["retriever"] == "bm25"
    assert isinstance(res["seconds"], (int, float)) and res["seconds"] >= 0
    assert set(res["autorag"]) == {"1", "3", "5", "10", "50"}
    for metrics in res["autorag"].values():
        assert set(metrics) == {"f1", "recall", "precision", "map", "mrr", "ndcg"}
        assert all(0.0 <= v <= 1.0 for v in metrics.values())
    assert res["ir"] and all(isinstance(v, float) for v in res["ir"].values())

    run_path = Path(res["run"])
    assert run_path.parent == runs and run_path.name == "bm25.jsonl" and run_path.is_file()
    lines = [json.loads(line) for line in run_path.read_text(encoding="utf-8").splitlines()]
    assert all(set(line) == {"qid", "docid", "rank", "score"} for line in lines)
    by_query: dict[str, list[dict]] = {}
    for line in lines:
        by_query.setdefault(line["qid"], []).append(line)
    assert list(by_query) == ["q1", "q2", "q3"]
    corpus_ids = {"c1", "c2", "c 3", "c4"}
    for hits in by_query.values():
        # BM25 ranks the passages sharing a term with the query, 1..n with n <= 4
        assert [h["rank"] for h in hits] == list(range(1, len(hits) + 1)) and 1 <= len(hits) <= 4
        assert {h["docid"] for h in hits} <= corpus_ids and all(h["score"] > 0 for h in hits)
        scores = [h["score"] for h in hits]
        assert scores == sorted(scores, reverse=True)

    # the metrics can be recomputed from the run file alone (one relevant passage per query)
    gold = {"q1": "c1", "q2": "c2", "q3": "c 3"}
    first_rank = {q: next(h["rank"] for h in hits if h["docid"] == gold[q]) for q, hits in by_query.items()}
    assert res["autorag"]["1"]["recall"] == pytest.approx(sum(r == 1 for r in first_rank.values()) / 3)
    assert res["autorag"]["50"]["recall"] == pytest.approx(1.0)
    assert res["autorag"]["50"]["mrr"] == pytest.approx(sum(1 / r for r in first_rank.values()) / 3)


def test_cli_inspect_set_without_judged_queries_exits_2(tmp_path):
    directory = write_beir(tmp_path / "b", corpus=good_corpus(), queries=good_queries(), qrels=[("q1", "d1", 0)])
    result = cli("inspect", "--data", str(directory))
    assert result.exit_code == 2 and "no query has a relevant document" in " ".join(result.output.split())


def test_cli_unknown_squad_split_exits_2(tmp_path):
    path = write_squad(tmp_path / "s.json", numbered_articles(1))
    result = cli("inspect", "--data", str(path), "--split", "dev")
    assert result.exit_code == 2 and "unknown split 'dev'" in " ".join(result.output.split())
