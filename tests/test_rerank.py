"""The rerank stage: a tiny cross-encoder's scores equal CrossEncoder.predict; reranking keeps exactly the first
stage's top-depth hits and orders them by those scores; bench, search, /search and /v1/rerank use it."""

from __future__ import annotations

import json

import httpx
import numpy as np
import pytest
from sentence_transformers import CrossEncoder
from typer.testing import CliRunner

from koembed.errors import ModelLoadError, SpecError
from koembed.evaluation.runner import run_bench
from koembed.models import load_model
from koembed.models.reranker import load_reranker, rerank_scores
from koembed.retrieval.factory import RetrieverFactory
from koembed.retrieval.rerank import RerankRetriever, rerank_documents, rerank_hits
from koembed.retrieval.specs import parse_spec
from koembed.server import ServerLimits, create_app
from tests.helpers import QUIET, ListRetriever, running

KEY = "rerank-key"


@pytest.fixture(scope="module")
def reranker(tiny_cross_encoder_dir):
    return load_reranker(str(tiny_cross_encoder_dir), device="cpu")


@pytest.fixture(scope="module")
def reference(tiny_cross_encoder_dir):
    """sentence-transformers' own CrossEncoder, loaded independently of koembed."""
    return CrossEncoder(str(tiny_cross_encoder_dir), device="cpu")


def _ordered(scores: dict[str, float]) -> list[str]:
    return sorted(scores, key=lambda d: (-scores[d], d))


def test_scores_equal_cross_encoder_predict(reranker, reference, sample):
    pairs = [(sample.queries[q], text) for q in sample.query_ids[:4] for text in list(sample.corpus.values())[:6]]
    np.testing.assert_allclose(rerank_scores(reranker, pairs, QUIET), reference.predict(pairs), atol=1e-6)
    docs = list(sample.corpus.values())[:7]
    expected = reference.predict([(sample.queries[sample.query_ids[0]], d) for d in docs])
    rows = rerank_documents(reranker, sample.queries[sample.query_ids[0]], docs, top_n=5, options=QUIET)
    assert [r["index"] for r in rows] == sorted(range(7), key=lambda i: (-expected[i], i))[:5]
    np.testing.assert_allclose([r["relevance_score"] for r in rows], sorted(expected, reverse=True)[:5], atol=1e-6)


def test_rerank_keeps_the_top_depth_and_orders_by_score(reranker, reference, sample):
    qids = sample.query_ids[:6]
    queries = [sample.queries[q] for q in qids]
    ids = sample.doc_ids
    # a first stage that puts each query's relevant passage at rank 4 (within the depth) and one at rank 9 (past it)
    first_hits = {}
    for n, q in enumerate(qids):
        relevant = sorted(sample.relevant_ids(q))[0]
        others = [d for d in ids if d != relevant]
        order = others[n: n + 3] + [relevant] + others[n + 3: n + 12]
        first_hits[sample.queries[q]] = [(d, 1.0 - i / 100) for i, d in enumerate(order)]
    first = ListRetriever("first", first_hits)
    stage = RerankRetriever(first, reranker, "rerank", depth=5, options=QUIET)
    stage.fit(ids, list(sample.corpus.values()))
    for query, hits in zip(queries, stage.search(queries, 10)):
        top = [d for d, _ in first_hits[query][:5]]
        assert sorted(d for d, _ in hits) == sorted(top)  # nothing dropped within the depth, nothing added
        expected = dict(zip(top, reference.predict([(query, sample.corpus[d]) for d in top])))
        assert [d for d, _ in hits] == _ordered(expected)
        np.testing.assert_allclose([s for _, s in hits], [expected[d] for d, _ in hits], atol=1e-6)
    assert [len(h) for h in rerank_hits(reranker, queries, [first_hits[q] for q in queries], sample.corpus.get,
                                        k=3, depth=5, options=QUIET)] == [3] * len(queries)


def test_rerank_spec_in_bench_rescores_the_first_stage(tiny_cross_encoder_dir, reference, sample):
    spec = f"rerank:{tiny_cross_encoder_dir}@bm25"
    assert parse_spec(spec).children == ("bm25",)
    bm25, reranked = run_bench(sample, ["bm25", spec], options=QUIET, rerank_depth=8)
    for qid in sample.query_ids[:10]:
        top = [d for d, _ in bm25.hits[qid][:8]]
        assert sorted(d for d, _ in reranked.hits[qid]) == sorted(top)
        scores = dict(zip(top, reference.predict([(sample.queries[qid], sample.corpus[d]) for d in top])))
        assert [d for d, _ in reranked.hits[qid]] == _ordered(scores)


def test_rerank_specs_errors(tiny_model_dir):
    for bad in ("rerank:", "rerank:model", "rerank:@bm25", "rerank:m@", "rerank:m@nope"):
        with pytest.raises(SpecError):
            parse_spec(bad)
    with pytest.raises(ModelLoadError):
        load_reranker(str(tiny_model_dir / "missing"))
    with pytest.raises(ModelLoadError, match="torch backend"):
        load_reranker("x", backend="onnx")


@pytest.fixture(scope="module")
def served(tmp_path_factory, tiny_model_dir, reranker, sample):
    from koembed.index import build_index, load_index

    model = load_model(str(tiny_model_dir))
    out = tmp_path_factory.mktemp("rerank-index") / "idx"
    build_index(str(tiny_model_dir), sample.doc_ids, list(sample.corpus.values()), out, options=QUIET, encoder=model)
    index = load_index(out, encoder=model)
    app = create_app(model, "tiny", index=index, api_key=KEY, limits=ServerLimits(max_inputs=8),
                     reranker=reranker, reranker_name="tiny-ce", rerank_depth=6)
    with running(app) as base, httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"},
                                            timeout=60) as client:
        yield client, index


def test_v1_rerank_shape_and_scores(served, reference, sample):
    client, _ = served
    query, docs = sample.queries[sample.query_ids[3]], list(sample.corpus.values())[:6]
    body = client.post("/v1/rerank", json={"query": query, "documents": docs, "top_n": 4, "truncate": True,
                                           "return_documents": True}).json()
    expected = reference.predict([(query, d) for d in docs])
    order = sorted(range(6), key=lambda i: (-expected[i], i))[:4]
    assert body.get("model") == "tiny-ce", body
    assert [r["index"] for r in body["results"]] == order
    assert [r["document"]["text"] for r in body["results"]] == [docs[i] for i in order]
    np.testing.assert_allclose([r["relevance_score"] for r in body["results"]], expected[order], atol=1e-6)
    plain = client.post("/v1/rerank", json={"query": query, "documents": docs, "truncate": True}).json()
    assert len(plain["results"]) == 6 and "document" not in plain["results"][0]
    assert client.get("/health").json()["reranker"] == "tiny-ce"


@pytest.mark.parametrize("body, status, code", [
    ({"query": "q", "documents": ["d"] * 9}, 413, "too_many_inputs"),
    ({"query": "q", "documents": []}, 422, "invalid_value"),
    ({"query": "", "documents": ["d"]}, 422, "invalid_value"),
    ({"query": "q", "documents": ["d"], "top_n": 0}, 422, "invalid_value"),
    ({"query": "q", "documents": ["전세 보증금 " * 200]}, 413, "input_too_long"),
])
def test_v1_rerank_errors(served, body, status, code):
    client, _ = served
    response = client.post("/v1/rerank", json=body)
    assert response.status_code == status and response.json()["error"]["code"] == code
    assert httpx.post(str(client.base_url) + "/v1/rerank", json={"query": "q", "documents": ["d"]}).status_code == 401


@pytest.mark.parametrize("body, where", [
    (b'{"query": "q", "documents": ["a\\udfffb"]}', "documents[0] is not valid Unicode"),
    (b'{"query": "q", "documents": ["fine", "a\xed\xa0\x80b"]}', "documents[1] is not valid Unicode"),  # raw U+D800
    (b'{"query": "a\\ud800", "documents": ["d"]}', "query: not valid Unicode"),
    (b'{"query": " ", "documents": ["d"]}', "query: an empty text"),
    (b'{"query": "q", "documents": ["d", " \\t\\u200b"]}', "documents[1] is an empty text"),
])
def test_v1_rerank_unreadable_or_blank_text_is_422_naming_it(served, body, where):
    client, _ = served
    response = client.post("/v1/rerank", content=body, headers={"Content-Type": "application/json"})
    assert response.status_code == 422, response.text
    error = response.json()["error"]
    assert error["code"] == "invalid_value" and error["message"].startswith(where), error
    assert error["param"] == where.split()[0].split("[")[0].rstrip(":")
    # the same keep-alive connection still serves
    assert client.post("/v1/rerank", json={"query": "q", "documents": ["d"], "truncate": True}).status_code == 200


def test_search_with_rerank_equals_rerank_of_index_search(served, reranker, sample):
    client, index = served
    query = sample.queries[sample.query_ids[5]]
    body = client.post("/search", json={"query": query, "k": 4, "mode": "bm25", "rerank": True}).json()
    expected = rerank_hits(reranker, [query], index.search([query], 6, "bm25"), index.text, 4, 6, QUIET)[0]
    assert [(h["docid"], pytest.approx(h["score"], abs=1e-6)) for h in body["hits"]] == expected


def test_cli_search_rerank(tmp_path, tiny_model_dir, tiny_cross_encoder_dir, reranker, sample):
    from koembed.cli import app
    from koembed.index import build_index, load_index

    build_index(str(tiny_model_dir), sample.doc_ids, list(sample.corpus.values()), tmp_path / "idx", options=QUIET)
    query = sample.queries[sample.query_ids[7]]
    result = CliRunner().invoke(app, ["search", query, "--index", str(tmp_path / "idx"), "--mode", "bm25", "-k", "3",
                                      "--rerank", str(tiny_cross_encoder_dir), "--rerank-depth", "5", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    index = load_index(tmp_path / "idx")
    expected = rerank_hits(reranker, [query], index.search([query], 5, "bm25"), index.text, 3, 5, QUIET)[0]
    assert [(r["docid"], pytest.approx(r["score"], abs=1e-6)) for r in rows] == expected


def test_factory_reuses_the_fitted_first_stage(tiny_cross_encoder_dir, sample):
    factory = RetrieverFactory(sample.doc_ids, list(sample.corpus.values()), options=QUIET, rerank_depth=4)
    stage = factory.get(f"rerank:{tiny_cross_encoder_dir}@bm25")
    assert stage.first is factory.get("bm25") and stage.depth == 4


def _write_pairs_with_negatives(path, sample, negatives=2):
    """(query, positive, negatives) from the bundled sample: the negatives are non-relevant passages."""
    ids = sample.doc_ids
    with path.open("w", encoding="utf-8") as handle:
        for n, qid in enumerate(sample.query_ids):
            relevant = sample.relevant_ids(qid)
            others = [d for d in ids if d not in relevant]
            for doc in sorted(relevant):
                negs = [sample.corpus[others[(n * 7 + i) % len(others)]] for i in range(negatives)]
                handle.write(json.dumps({"query": sample.queries[qid], "positive": sample.corpus[doc],
                                         "negatives": negs}, ensure_ascii=False) + "\n")
    return path


def _ce_config(tmp_path, base, pairs, **extra):
    import yaml

    cfg = {"model": {"base": str(base), "type": "cross_encoder", "max_seq_length": 128},
           "data": {"train": [{"type": "pairs", "path": str(pairs)}], "eval": {"path": "sample"},
                    "allow_overlap": True},
           "train": {"batch_size": 16, "learning_rate": 1e-3, "max_steps": 4, "save_steps": 2, "logging_steps": 2,
                     "seed": 1},
           "output_dir": str(tmp_path / "run"), **extra}
    path = tmp_path / "ce.yaml"
    path.write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    return path


@pytest.mark.slow
def test_train_cross_encoder_then_rerank_with_it(tmp_path, tiny_model_dir, reference, sample):
    from koembed.training import load_config, train

    pairs = _write_pairs_with_negatives(tmp_path / "pairs.jsonl", sample)
    cfg = load_config(_ce_config(tmp_path, tiny_model_dir, pairs))
    assert cfg.loss.name == "bce"  # the cross-encoder default
    summary = train(cfg, show_progress=False)
    final = summary["final_model"]
    trained = CrossEncoder(final, device="cpu")
    pairs_to_score = [(sample.queries[q], sample.corpus[d]) for q in sample.query_ids[:3] for d in sample.doc_ids[:3]]
    assert np.abs(trained.predict(pairs_to_score)).max() > 0  # a real model, loadable by sentence-transformers
    assert summary["global_step"] == 4 and summary["training_rows"] == 3 * summary["examples"]
    # the reported metrics are the reranked run's, recomputed here from the saved model
    _, again = run_bench(sample, ["bm25", f"rerank:{final}@bm25"], options=QUIET, rerank_depth=50)
    assert summary["metrics"]["ndcg@10"] == pytest.approx(again.ir["ndcg@10"], abs=1e-9)
    card = (tmp_path / "run" / "final" / "README.md").read_text(encoding="utf-8")
    assert "CrossEncoder" in card and "reranker" in card


def test_cross_encoder_config_checks(tmp_path, tiny_model_dir, sample):
    from koembed.errors import ConfigError, DataError
    from koembed.training import load_config, train

    pairs = tmp_path / "plain.jsonl"
    pairs.write_text(json.dumps({"query": "q", "positive": "p"}) + "\n", encoding="utf-8")
    path = _ce_config(tmp_path, tiny_model_dir, pairs)
    with pytest.raises(ConfigError, match="cross_encoder trains with loss.name bce or mnrl"):
        load_config(path, ["loss.name=cached_mnrl"])
    with pytest.raises(ConfigError, match="model.type: cross_encoder"):
        load_config(path, ["model.type=transformer", "loss.name=bce"])
    with pytest.raises(DataError, match="koembed mine"):
        train(load_config(path, ["data.eval=null"]), show_progress=False)
