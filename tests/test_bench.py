"""`koembed bench` end to end: every number in results.json is recomputed from the run files."""

from __future__ import annotations

import json
from collections import defaultdict

import pytest
from typer.testing import CliRunner

from koembed.cli import app
from tests.helpers import REFERENCE, read_run


def recompute_ir(rankings, rs):
    """sentence-transformers' own metric code, fed with the run file's rankings."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    relevant = {q: rs.relevant_ids(q) for q in rs.relevant}
    evaluator = InformationRetrievalEvaluator(rs.queries, rs.corpus, relevant, write_csv=False)
    n = len(evaluator.queries_ids)
    results = [[{"corpus_id": d, "score": float(n - i)} for i, d in enumerate(rankings[q])]
               for q in evaluator.queries_ids]
    scores = evaluator.compute_metrics(results)
    return {f"{name.replace('@k', '')}@{k}": float(v) for name, per_k in scores.items() for k, v in per_k.items()}


def recompute_autorag(rankings, rs, k):
    totals, counted = defaultdict(float), 0
    for qid, gt in rs.relevant.items():
        pred = rankings.get(qid, [])[:k]
        if not pred or not gt:
            continue
        counted += 1
        for name, ref in REFERENCE.items():
            totals[name] += ref(gt, pred)
    return {name: totals[name] / counted for name in REFERENCE}


@pytest.mark.slow
def test_default_bench_numbers_equal_recomputation_from_runs(tmp_path, sample):
    out, runs, plot = tmp_path / "results.json", tmp_path / "runs", tmp_path / "bench.png"
    result = CliRunner().invoke(app, ["bench", "--out", str(out), "--run-out", str(runs), "--plot", str(plot), "-q"])
    assert result.exit_code == 0, result.output
    assert "AutoRAG metrics, top-k = 50" in result.output and "ndcg@10" in result.output
    doc = json.loads(out.read_text())
    assert doc["dataset"] == {"name": "koembed-sample", "queries": len(sample.queries), "corpus": len(sample.corpus)}
    assert [r["retriever"] for r in doc["results"]] == ["bm25-phrase", "bm25-phrase@kiwi", "bm25", "dense:static-ko"]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    for entry in doc["results"]:
        rankings, rows = read_run(entry["run"])
        if entry["retriever"].startswith("bm25"):  # only passages sharing a term with the query
            assert set(rankings) <= set(sample.queries)
            assert all(r["score"] > 0 for hits in rows.values() for r in hits)
        else:
            assert set(rankings) == set(sample.queries)
            assert all(len(v) == min(100, len(sample.corpus)) for v in rankings.values())
        ir = recompute_ir(rankings, sample)
        assert set(entry["ir"]) == set(ir)
        for name, value in ir.items():
            assert entry["ir"][name] == pytest.approx(value, abs=1e-9), (entry["retriever"], name)
        assert sorted(entry["autorag"], key=int) == ["1", "3", "5", "10", "50"]
        for k, values in entry["autorag"].items():
            for name, value in recompute_autorag(rankings, sample, int(k)).items():
                assert values[name] == pytest.approx(value, abs=1e-9), (entry["retriever"], k, name)
    phrase, phrase_kiwi, bm25, dense = (r["ir"] for r in doc["results"])
    assert bm25["accuracy@1"] > 0.7  # BM25 on our Korean sample; the static model is below it
    assert dense["accuracy@1"] < bm25["accuracy@1"] <= phrase["accuracy@1"]
    assert bm25["ndcg@10"] < min(phrase["ndcg@10"], phrase_kiwi["ndcg@10"])  # the phrase fields help either analyzer


@pytest.mark.slow
@pytest.mark.shared_data
def test_bm25_on_korquad_heldout_articles(korquad_path, tmp_path):
    out = tmp_path / "r.json"
    result = CliRunner().invoke(app, ["bench", "--data", str(korquad_path), "--split", "test", "-r", "bm25",
                                      "--top-k", "1,10", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    entry = json.loads(out.read_text())["results"][0]
    # Measured 0.90 / 0.95 on all 961 paragraphs (docs/BENCHMARKS.md); a tokenizer regression falls well below.
    assert entry["ir"]["accuracy@1"] > 0.8 and entry["ir"]["ndcg@10"] > 0.88


def test_bad_retriever_spec_fails_before_any_work(tmp_path):
    out = tmp_path / "results.json"
    result = CliRunner().invoke(app, ["bench", "-r", "bm25", "-r", "hybrid:bm25", "--out", str(out),
                                      "--run-out", str(tmp_path / "runs"), "-q"])
    assert result.exit_code == 2
    assert "hybrid needs two or more retrievers" in result.output
    assert not out.exists() and not (tmp_path / "runs").exists()
    assert "AutoRAG metrics" not in result.output  # bm25 did not run first


def test_top_k_must_be_positive_integers(tmp_path):
    result = CliRunner().invoke(app, ["bench", "--top-k", "1,x", "-r", "bm25"])
    assert result.exit_code == 2 and "expected comma-separated integers, got '1,x'" in result.output


def test_cache_dir_reuses_corpus_embeddings_across_runs(tmp_path, tiny_model_dir, monkeypatch):
    import koembed.encoding.job
    import koembed.models
    import koembed.retrieval.dense

    calls = []
    real_encode = koembed.models.encode

    def counting_encode(model, texts, *args, **kwargs):
        calls.append(len(texts))
        return real_encode(model, texts, *args, **kwargs)

    for user in (koembed.retrieval.dense, koembed.encoding.job):  # the two modules that encode for a bench
        monkeypatch.setattr(user, "encode", counting_encode)
    spec = f"dense:{tiny_model_dir}"
    outs = []
    for run in range(2):
        out = tmp_path / f"r{run}.json"
        result = CliRunner().invoke(app, ["bench", "-r", spec, "--top-k", "1,10", "--cache-dir", str(tmp_path / "cache"),
                                          "--out", str(out), "-q"])
        assert result.exit_code == 0, result.output
        outs.append(json.loads(out.read_text())["results"][0]["ir"])
    from koembed.data import load_retrieval_set

    n_corpus, n_queries = len(load_retrieval_set().corpus), len(load_retrieval_set().queries)
    # first run: corpus + queries; second run: queries only (the corpus comes from the cache)
    assert sum(c for c in calls if c == n_corpus) == n_corpus and calls.count(n_queries) == 2
    assert outs[0] == outs[1]
    assert len(list((tmp_path / "cache").iterdir())) == 1


def test_plot_scales_y_to_the_data_tells_equal_lines_apart_and_names_the_set():
    import matplotlib.pyplot as plt

    from koembed.evaluation.plot import bench_figure
    from koembed.evaluation.runner import RetrieverResult

    ks = [1, 3, 10]
    same = {str(k): {"recall": 0.7 + 0.1 * i, "ndcg": 0.67 + 0.1 * i} for i, k in enumerate(ks)}
    top = {str(k): {"recall": 1.0, "ndcg": 0.95} for k in ks}
    results = [RetrieverResult(name, {}, autorag, 0.0, {})
               for name, autorag in (("bm25", same), ("fused", same), ("bm25-phrase", top))]
    fig = bench_figure(results, ks, {"name": "my-set", "queries": 96, "corpus": 48})
    try:
        assert fig._suptitle.get_text() == "my-set: 96 queries, 48 passages"
        for ax, (lowest, highest) in zip(fig.axes, ((0.7, 1.0), (0.67, 0.95))):
            bottom, top_ = ax.get_ylim()
            assert 0.6 < bottom < lowest and highest < top_ < highest + 0.05  # the data's range, not 0..1
            lines = ax.get_lines()
            assert [line.get_label() for line in lines] == ["bm25", "fused", "bm25-phrase"]
            styles = {(line.get_marker(), line.get_linestyle(), line.get_markersize()) for line in lines}
            assert len(styles) == 3  # the two equal lines differ in marker, style and size
            assert lines[0].get_markersize() > lines[1].get_markersize()  # the one drawn first shows around it
    finally:
        plt.close(fig)


def test_bench_says_once_why_same_named_metrics_differ(tmp_path):
    """A query BM25 answers with nothing is skipped by AutoRAG and counted by the IR suite: the two recall@1
    differ, and the note under the tables says so once, with the count."""
    data = tmp_path / "qp.json"
    data.write_text(json.dumps([
        {"id": "q1", "query": "전세 보증금 반환", "positive": ["전세 보증금을 돌려받는 절차를 설명합니다."]},
        {"id": "q2", "query": "여권 재발급 서류", "positive": ["여권을 재발급하려면 신분증과 사진이 필요합니다."]},
        {"id": "q3", "query": "zzqx", "positive": ["연차 휴가는 일 년에 십오 일입니다."]}], ensure_ascii=False))
    out = tmp_path / "r.json"
    result = CliRunner(env={"COLUMNS": "200"}).invoke(app, ["bench", "--data", str(data), "-r", "bm25",
                                                            "--top-k", "1", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    entry = json.loads(out.read_text())["results"][0]
    assert entry["autorag"]["1"]["recall"] == 1.0 and entry["ir"]["recall@1"] == pytest.approx(2 / 3)
    text = " ".join(result.output.split())
    assert text.count("Same names, different definitions") == 1
    assert "bm25 returned nothing for 1 of 3 queries" in text
