"""BGE-M3's sparse and multi-vector outputs: parity with FlagEmbedding (fixture it wrote), retrievers, specs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from koembed.errors import ModelLoadError, SpecError
from koembed.models import EncodeOptions
from koembed.models.m3 import colbert_score, combined_score, has_m3_heads, lexical_score, load_m3
from koembed.retrieval.factory import RetrieverFactory
from koembed.retrieval.m3 import M3Retriever
from koembed.retrieval.specs import parse_spec
from tests.helpers import QUIET, m3_fingerprint, make_parity_m3

FIXTURE = Path(__file__).parent / "fixtures" / "m3_parity.json"
TOL = 1e-5


@pytest.fixture(scope="module")
def reference() -> dict:
    return json.loads(FIXTURE.read_text(encoding="utf-8"))


@pytest.fixture(scope="module")
def m3(tmp_path_factory, reference):
    folder = make_parity_m3(tmp_path_factory.mktemp("parity") / "model", reference["unigram_vocab"])
    assert m3_fingerprint(folder) == reference["fingerprint"], (
        "the tiny bge-m3 model no longer builds as it did for the fixture: regenerate it with "
        "tests/fixtures/m3_parity.sh")
    return load_m3(str(folder), device="cpu")


def _check_outputs(out, expected):
    np.testing.assert_allclose(out.dense, np.array(expected["dense"]), atol=TOL)
    for ours, theirs in zip(out.sparse, expected["sparse"], strict=True):
        assert sorted(ours) == sorted(int(t) for t in theirs)  # the same token ids: special tokens dropped
        np.testing.assert_allclose([ours[int(t)] for t in theirs], list(theirs.values()), atol=TOL)
    for ours, theirs in zip(out.colbert, expected["colbert"], strict=True):
        assert ours.shape == np.array(theirs).shape  # every token but CLS, no padding
        np.testing.assert_allclose(ours, np.array(theirs), atol=TOL)
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=TOL)


def test_outputs_equal_flagembedding(m3, reference):
    _check_outputs(m3.encode(reference["queries"], QUIET, "query"), reference["query_outputs"])
    _check_outputs(m3.encode(reference["passages"], EncodeOptions(batch_size=3, show_progress=False), "passage"),
                   reference["passage_outputs"])


def test_scores_equal_flagembedding(m3, reference):
    q = m3.encode(reference["queries"], QUIET, "query")
    p = m3.encode(reference["passages"], QUIET, "passage")
    scores = reference["compute_score"]
    weights = reference["weights"]
    at = 0
    for i in range(len(reference["queries"])):
        for j in range(len(reference["passages"])):
            sparse, colbert = lexical_score(q.sparse[i], p.sparse[j]), colbert_score(q.colbert[i], p.colbert[j])
            dense = float(q.dense[i] @ p.dense[j])
            assert sparse == pytest.approx(reference["lexical_matching_score"][i][j], abs=TOL)
            assert colbert == pytest.approx(reference["colbert_score"][i][j], abs=TOL)
            assert dense == pytest.approx(scores["dense"][at], abs=TOL)
            assert sparse == pytest.approx(scores["sparse"][at], abs=TOL)
            assert colbert == pytest.approx(scores["colbert"][at], abs=TOL)
            assert combined_score(dense, sparse, colbert, weights) == pytest.approx(
                scores["colbert+sparse+dense"][at], abs=TOL)
            at += 1


@pytest.mark.parametrize("mode, key", [("sparse", "sparse"), ("colbert", "colbert"), ("m3", "colbert+sparse+dense")])
def test_retriever_scores_every_passage_as_flagembedding(m3, reference, mode, key):
    retriever = M3Retriever(m3, f"m3-{mode}", mode, options=QUIET)
    retriever.fit([f"p{i}" for i in range(len(reference["passages"]))], reference["passages"])
    matrix = retriever.score_vectors(reference["queries"])
    expected = np.array(reference["compute_score"][key]).reshape(matrix.shape)
    np.testing.assert_allclose(matrix, expected, atol=TOL)
    pairs = [(1, 0), (2, 3), (0, 2)]
    np.testing.assert_allclose(retriever.score(reference["queries"], pairs), [expected[q, r] for q, r in pairs],
                               atol=TOL)
    hits = retriever.search(reference["queries"], 3)
    for row, query_hits in zip(expected, hits):
        order = sorted(range(len(row)), key=lambda j: (-row[j], f"p{j}"))
        assert [doc for doc, _ in query_hits] == [f"p{j}" for j in order if mode != "sparse" or row[j] > 0][:3]


def test_factory_shares_one_encoding_and_sparse_hits_share_a_token(tiny_m3_dir, sample):
    factory = RetrieverFactory(sample.doc_ids, list(sample.corpus.values()), options=QUIET)
    sparse = factory.get(f"m3-sparse:{tiny_m3_dir}")
    weighted = factory.get(f"m3@1,0,0:{tiny_m3_dir}")
    assert len(factory._m3) == 1
    queries = [sample.queries[q] for q in sample.query_ids[:10]]
    q = sparse.encoder.encode(queries, QUIET, "query")
    corpus = factory._m3[str(tiny_m3_dir)][1]
    row_of = {d: i for i, d in enumerate(sample.doc_ids)}
    for query_weights, hits in zip(q.sparse, sparse.search(queries, 48)):
        sharing = {d for d in sample.doc_ids if set(query_weights) & set(corpus.sparse[row_of[d]])}
        assert {doc for doc, _ in hits} == sharing
    # weights 1,0,0: the dense score alone, the same ranking the dense retriever gives
    dense = factory.get(f"dense:{tiny_m3_dir}")
    assert [[d for d, _ in h] for h in weighted.search(queries, 5)] == [[d for d, _ in h]
                                                                         for h in dense.search(queries, 5)]


def test_specs_and_errors(tiny_model_dir):
    assert parse_spec("m3:BAAI/bge-m3").kind == "m3"
    assert parse_spec("m3@0.5,0.25,0.25:x").weights == (0.5, 0.25, 0.25)
    assert parse_spec("hybrid:bm25+m3-sparse:x").children == ("bm25", "m3-sparse:x")
    for bad in ("m3:", "m3@1,2:x", "m3-sparse@1,1,1:x", "m3@-1,1,1:x", "m3@a,b,c:x"):
        with pytest.raises(SpecError):
            parse_spec(bad)
    assert not has_m3_heads(str(tiny_model_dir))
    with pytest.raises(ModelLoadError, match="sparse_linear.pt"):
        load_m3(str(tiny_model_dir))
    with pytest.raises(ModelLoadError, match="torch backend"):
        load_m3(str(tiny_model_dir), backend="onnx")


def test_index_stores_lexical_weights_and_searches_them(tmp_path, tiny_m3_dir, tiny_model_dir, sample):
    import json as jsonlib

    from koembed.index import add_documents, build_index, delete_documents, load_index

    ids, texts = sample.doc_ids, list(sample.corpus.values())
    build_index(str(tiny_m3_dir), ids[:-3], texts[:-3], tmp_path / "idx", options=QUIET)
    add_documents(tmp_path / "idx", ids[-3:], texts[-3:], options=QUIET)
    delete_documents(tmp_path / "idx", [ids[0]])
    index = load_index(tmp_path / "idx")
    rows = [jsonlib.loads(line) for line in
            (tmp_path / "idx" / index.manifest.version_dir / "passages.jsonl").read_text(encoding="utf-8").splitlines()]
    # every stored row holds its weights; the deleted one stays in the file, skipped (the delete is part-wise)
    assert all(row["sparse"] for row in rows) and len(rows) == len(ids) and index.doc_ids == ids[1:]
    exact = M3Retriever(load_m3(str(tiny_m3_dir)), "m3-sparse", "sparse", options=QUIET)
    exact.fit(ids[1:], texts[1:])
    queries = [sample.queries[q] for q in sample.query_ids[:8]]
    for ours, theirs in zip(index.search(queries, 5, mode="sparse"), exact.search(queries, 5)):
        assert [d for d, _ in ours] == [d for d, _ in theirs]
        np.testing.assert_allclose([s for _, s in ours], [s for _, s in theirs], atol=1e-5)
    build_index(str(tiny_model_dir), ids, texts, tmp_path / "plain", options=QUIET)
    with pytest.raises(SpecError, match="no lexical weights"):
        load_index(tmp_path / "plain").search(queries, 5, mode="sparse")
