"""Fusion tuning: the ranking problem built from retrievers' runs ranks exactly as the fused retriever does, and
koembed tune-fusion prints a spec whose bench score is the score it fitted."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from koembed.cli import app
from koembed.evaluation.runner import run_bench, score_run
from koembed.evaluation.tuning import fit_fusion, fusion_problem, fusion_scale, mean_ndcg
from koembed.retrieval.factory import RetrieverFactory
from koembed.retrieval.hybrid import HybridRetriever
from tests.helpers import QUIET

PARTS = ("bm25", "bm25-char")


@pytest.fixture(scope="module")
def runs(sample):
    return {r.retriever: r.hits for r in run_bench(sample, PARTS, (1,), options=QUIET)}


@pytest.mark.parametrize("fusion, weights, rrf_k", [("z", (1.0, 0.3), 60), ("dbsf", (1.0, 2.0), 60),
                                                    ("cc", (1.0, 0.5), 60), ("rrf", (1.0, 1.0), 20),
                                                    ("z", (1.0, 0.0), 60)])
def test_problem_ndcg_equals_the_fused_retrievers_ndcg(sample, runs, fusion, weights, rrf_k):
    problem = fusion_problem(sample, runs, [(fusion, rrf_k)])
    factory = RetrieverFactory(sample.doc_ids, list(sample.corpus.values()), options=QUIET)
    hybrid = HybridRetriever([factory.get(p) for p in PARTS], fusion=fusion, weights=weights, rrf_k=rrf_k)
    hits = dict(zip(sample.query_ids, hybrid.search([sample.queries[q] for q in sample.query_ids], 100)))
    ir, _ = score_run(sample, hits, ())
    assert mean_ndcg(problem, weights, fusion_scale(fusion, rrf_k)) == pytest.approx(ir["ndcg@10"], abs=1e-9)


def test_fit_never_loses_to_the_best_part_on_its_sets(sample, runs):
    scales = [("z", 60), ("dbsf", 60), ("rrf", 10)]
    problem = fusion_problem(sample, runs, scales)
    fit = fit_fusion([problem], scales, (0.0, 0.5, 1.0, 2.0))
    # each part alone as it really ranks (DBSF clips a run's best scores to 1: alone on that scale it would tie them)
    real = {r.retriever: r.ir["ndcg@10"] for r in run_bench(sample, PARTS, (1,), options=QUIET)}
    assert fit["dev"][sample.name]["alone"] == pytest.approx({k: round(v, 4) for k, v in real.items()}, abs=1e-9)
    assert fit["dev"][sample.name]["baseline"] == round(max(real.values()), 4) and fit["objective"] >= 0
    assert [(f["fusion"], f["rrf_k"]) for f in fit["all"]] == scales and (fit["fusion"], fit["rrf_k"]) in scales


def test_cli_tune_fusion_prints_a_spec_whose_bench_score_is_the_fit(tmp_path):
    out = tmp_path / "fit.json"
    result = CliRunner().invoke(app, ["tune-fusion", "-d", "sample", "-r", "bm25", "-r", "bm25-char", "--fusion",
                                      "z,rrf", "--rrf-k", "20,60", "--grid", "0,0.5,1", "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    fit = json.loads(out.read_text(encoding="utf-8"))
    spec = result.output.split("spec: ")[1].split()[0]
    assert spec == fit["spec"] and fit["retrievers"] == list(PARTS)
    bench_out = tmp_path / "r.json"
    bench = CliRunner().invoke(app, ["bench", "-r", spec, "--top-k", "1", "--out", str(bench_out), "-q"])
    assert bench.exit_code == 0, bench.output
    ndcg = json.loads(bench_out.read_text())["results"][0]["ir"]["ndcg@10"]
    assert ndcg == pytest.approx(fit["dev"]["koembed-sample"]["ndcg@10"], abs=1e-4)
    for args, words in [(["-r", "bm25"], "two or more"), (["-r", "bm25", "-r", "hybrid:bm25+bm25-char"], "already"),
                        (["-r", "bm25", "-r", "bm25-char", "--fusion", "mean"], "unknown fusion")]:
        bad = CliRunner().invoke(app, ["tune-fusion", "-d", "sample", *args])
        assert bad.exit_code == 2 and words in bad.output, bad.output


@pytest.mark.parametrize("width", [1, 2, 5, 9])
def test_problem_ndcg_equals_the_ir_suite_with_fewer_than_ten_candidates(width):
    """Every query has at most ``width`` candidates (< 10 ranks): the problem's ndcg@10 is still the IR suite's
    (it once summed all ten discounts over one candidate: 4.54, or broke on 2-9 with a broadcast error)."""
    from koembed.data import RetrievalSet
    from koembed.evaluation.metrics.ir import ir_metrics

    corpus = {f"d{i}": f"passage {i}" for i in range(12)}
    # q0: the relevant passage ranked last of its run; q1: two relevant, one found first; q2: a miss
    runs = {"only": {"q0": [(f"d{i}", 1.0 - i / 10) for i in range(width)],
                     "q1": [(f"d{i + 1}", 1.0 - i / 10) for i in range(width)],
                     "q2": [(f"d{i + 3}", 1.0 - i / 10) for i in range(width)]}}
    relevant = {"q0": [[f"d{width - 1}"]], "q1": [["d1"], ["d11"]], "q2": [["d0"]]}
    rs = RetrievalSet("tiny", {q: q for q in relevant}, corpus, relevant)
    problem = fusion_problem(rs, runs, [("rrf", 60)])
    want = ir_metrics({q: [d for d, _ in hits] for q, hits in runs["only"].items()},
                      {q: rs.relevant_ids(q) for q in relevant})["ndcg@10"]
    assert 0 < want < 1
    assert mean_ndcg(problem, [1.0], fusion_scale("rrf", 60)) == pytest.approx(want, abs=1e-9)
