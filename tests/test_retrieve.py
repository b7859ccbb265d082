"""Retrievers: chunked dense search equals brute force, fusion by hand, BM25 against the formula."""

from __future__ import annotations

import numpy as np
import pytest

from koembed.errors import SpecError
from koembed.lexical import BM25Retriever, KiwiTokenizer, get_analyzer
from koembed.ranking import top_k as top_k_by_score
from koembed.retrieval.dense import DenseRetriever
from koembed.retrieval.factory import RetrieverFactory
from koembed.retrieval.hybrid import HybridRetriever
from tests.helpers import QUIET, FixedModel, ListRetriever, lucene_bm25


def brute_force(q, c, doc_ids, k, cosine=True):
    if cosine:
        q = q / np.linalg.norm(q, axis=1, keepdims=True)
        c = c / np.linalg.norm(c, axis=1, keepdims=True)
    scores = q @ c.T
    out = []
    for row in scores:
        order = sorted(range(len(doc_ids)), key=lambda i: (-row[i], doc_ids[i]))[:k]
        out.append([doc_ids[i] for i in order])
    return out


@pytest.mark.parametrize("similarity", ["cosine", "dot"])
def test_dense_chunked_search_equals_brute_force(similarity):
    rng = np.random.default_rng(0)
    n_docs, n_queries, dim = 257, 37, 16
    docs = {f"doc {i:03d}": rng.normal(size=dim) for i in range(n_docs)}
    queries = {f"q{i}": rng.normal(size=dim) for i in range(n_queries)}
    model = FixedModel({**docs, **queries})
    # Tiny blocks force many merges of the running top-k.
    dense = DenseRetriever(model, "dense:fixed", similarity=similarity, query_block=5, corpus_block=13,
                           options=QUIET)
    doc_ids = list(docs)
    dense.fit(doc_ids, doc_ids)  # texts are the table keys
    got = dense.search(list(queries), 10)
    expected = brute_force(np.stack(list(queries.values())), np.stack(list(docs.values())), doc_ids, 10,
                           cosine=similarity == "cosine")
    assert [[d for d, _ in hits] for hits in got] == expected
    assert all(hits[i][1] >= hits[i + 1][1] for hits in got for i in range(9))


def test_dense_ties_are_broken_by_doc_id_across_blocks():
    same = np.array([1.0, 0.0])
    table = {"z": same, "b": same, "y": same, "a": same, "c": np.array([0.0, 1.0]), "q": same}
    dense = DenseRetriever(FixedModel(table), "dense:fixed", corpus_block=2, options=QUIET)
    dense.fit(["z", "b", "c", "y", "a"], ["z", "b", "c", "y", "a"])
    assert [d for d, _ in dense.search(["q"], 3)[0]] == ["a", "b", "y"]


def test_top_k_by_score_is_exact_with_ties():
    scores = np.array([0.5, 2.0, 0.5, 0.5, 1.0])
    ids = ["e", "d", "c", "b", "a"]
    rank = np.argsort(np.argsort(np.array(ids, dtype=object)))
    assert top_k_by_score(scores, rank, ids, 3) == [("d", 2.0), ("a", 1.0), ("b", 0.5)]


def test_rrf_fusion_by_hand():
    a = ListRetriever("a", {"q": [("d1", 9.0), ("d2", 5.0)]})
    b = ListRetriever("b", {"q": [("d2", 0.9), ("d3", 0.8)]})
    hits = HybridRetriever([a, b]).search(["q"], 3)[0]
    expected = {"d1": 1 / 61, "d2": 1 / 62 + 1 / 61, "d3": 1 / 62}
    assert [d for d, _ in hits] == ["d2", "d1", "d3"]
    for doc, score in hits:
        assert score == pytest.approx(expected[doc])


def test_cc_fusion_by_hand():
    a = ListRetriever("a", {"q": [("d1", 10.0), ("d2", 6.0), ("d3", 2.0)]})
    b = ListRetriever("b", {"q": [("d3", 0.9), ("d2", 0.5), ("d4", 0.1)]})
    hits = dict(HybridRetriever([a, b], fusion="cc", weights=[0.3, 0.7]).search(["q"], 4)[0])
    assert hits["d1"] == pytest.approx(0.3 * 1.0)
    assert hits["d2"] == pytest.approx(0.3 * 0.5 + 0.7 * 0.5)
    assert hits["d3"] == pytest.approx(0.3 * 0.0 + 0.7 * 1.0)
    assert hits["d4"] == pytest.approx(0.0)


def test_z_and_dbsf_fusion_by_hand():
    a_scores, b_scores = [10.0, 6.0, 2.0], [0.9, 0.5, 0.1, 0.1]
    a = ListRetriever("a", {"q": list(zip(["d1", "d2", "d3"], a_scores))})
    b = ListRetriever("b", {"q": list(zip(["d3", "d2", "d4", "d5"], b_scores))})

    def z(values):
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        return [(v - mean) / std for v in values]

    za, zb = z(a_scores), z(b_scores)
    hits = dict(HybridRetriever([a, b], fusion="z", weights=[1.0, 0.5]).search(["q"], 5)[0])
    # a passage a run did not return counts that run's lowest z-score
    assert hits["d1"] == pytest.approx(za[0] + 0.5 * min(zb))
    assert hits["d2"] == pytest.approx(za[1] + 0.5 * zb[1])
    assert hits["d4"] == pytest.approx(min(za) + 0.5 * zb[2])

    def dbsf(values):
        mean = sum(values) / len(values)
        std = (sum((v - mean) ** 2 for v in values) / len(values)) ** 0.5
        return [min(1.0, max(0.0, (v - mean + 3 * std) / (6 * std))) for v in values]

    da, db = dbsf(a_scores), dbsf(b_scores)
    hits = dict(HybridRetriever([a, b], fusion="dbsf", weights=[0.3, 0.7]).search(["q"], 5)[0])
    assert hits["d1"] == pytest.approx(0.3 * da[0])  # missing from b: 0, Qdrant's rule
    assert hits["d3"] == pytest.approx(0.3 * da[2] + 0.7 * db[0])
    assert hits["d5"] == pytest.approx(0.7 * db[3])


def test_rrf_k_and_weights_and_zero_weight_drops_a_run():
    a = ListRetriever("a", {"q": [("d1", 9.0), ("d2", 5.0)]})
    b = ListRetriever("b", {"q": [("d2", 0.9), ("d3", 0.8)]})
    hits = dict(HybridRetriever([a, b], rrf_k=10, weights=[1.0, 2.0]).search(["q"], 3)[0])
    assert hits == pytest.approx({"d1": 1 / 11, "d2": 1 / 12 + 2 / 11, "d3": 2 / 12})
    only_a = HybridRetriever([a, b], fusion="z", weights=[1.0, 0.0]).search(["q"], 3)[0]
    assert [d for d, _ in only_a] == ["d1", "d2"]


def test_weighted_specs_parse_and_print_back():
    from koembed.retrieval.specs import hybrid_spec, parse_spec

    for text, fusion, weights, k in [("hybrid:bm25+bm25-char", "rrf", None, 60),
                                     ("hybrid-cc@0.3:bm25+bm25-char+dense:m", "cc", (0.3, 0.35, 0.35), 60),
                                     ("hybrid-z@1,0.2:bm25-phrase+dense:static-ko", "z", (1.0, 0.2), 60),
                                     ("hybrid-rrf@k=20:bm25+dense:a+b", "rrf", None, 20),
                                     ("hybrid-dbsf@2,1:bm25+bm25-char", "dbsf", (2.0, 1.0), 60)]:
        spec = parse_spec(text)
        assert (spec.fusion, spec.weights, spec.rrf_k) == (fusion, weights, k)
        again = parse_spec(hybrid_spec(spec.children, spec.fusion, spec.weights, spec.rrf_k))
        assert again == spec
    assert parse_spec("hybrid-rrf@k=20:bm25+dense:a+b").children == ("bm25", "dense:a+b")


@pytest.mark.parametrize("spec", ["bogus", "dense:", "hybrid:bm25", "hybrid-xx:bm25+bm25", "hybrid-z@k=3:bm25+bm25",
                                  "hybrid-cc@2:bm25+bm25", "hybrid-cc@w:bm25+bm25", "hybrid-z@1,2,3:bm25+bm25",
                                  "hybrid-dbsf@0,0:bm25+bm25", "hybrid-rrf@k=0:bm25+bm25", "hybrid-z@-1,2:bm25+bm25"])
def test_bad_specs_raise_spec_error(spec):
    with pytest.raises(SpecError):
        RetrieverFactory(["d"], ["텍스트"], options=QUIET).get(spec)


def test_factory_shares_fitted_children():
    factory = RetrieverFactory(["d1", "d2"], ["보증금 반환", "여권 발급"], options=QUIET)
    bm25 = factory.get("bm25")
    hybrid = factory.get("hybrid-cc@0.4:bm25+bm25")
    assert hybrid.children[0] is bm25 and hybrid.weights == pytest.approx([0.4, 0.6])


def test_kiwi_filter_keeps_content_and_drops_particles_and_endings():
    tokens = KiwiTokenizer()(["전세 보증금을 돌려받지 못했어요. AI 서비스는 2024년에 시작됐습니다."])[0]
    assert "보증금/N" in tokens and "전세/N" in tokens and "돌려받/V" in tokens
    assert "ai/SL" in tokens and "2024/SN" in tokens
    forms = {t.split("/")[0] for t in tokens}
    assert not forms & {"을", "는", "에", "어요", "습니다", "."}
    # Particles differ, content matches: the reason for morphological analysis.
    a, b = KiwiTokenizer()(["보증금을 돌려받다", "보증금은 돌려받는다"])
    assert a == b


def test_bm25_scores_match_lucene_formula(sample):
    doc_ids = sample.doc_ids
    texts = [sample.corpus[d] for d in doc_ids]
    bm25 = BM25Retriever(show_progress=False)
    bm25.fit(doc_ids, texts)
    tokenizer = get_analyzer()  # the default analyzer, which BM25Retriever() uses
    docs_tokens = tokenizer(texts)
    queries = [sample.queries[q] for q in sample.query_ids[:20]]
    for query, hits in zip(queries, bm25.search(queries, 5)):
        expected = lucene_bm25(tokenizer([query])[0], docs_tokens)
        best = [i for i in sorted(range(len(doc_ids)), key=lambda i: (-expected[i], doc_ids[i]))[:5] if expected[i] > 0]
        assert [d for d, _ in hits] == [doc_ids[i] for i in best]
        for doc, score in hits:
            assert score == pytest.approx(expected[doc_ids.index(doc)], rel=1e-5)


def test_bm25_returns_only_matching_passages():
    bm25 = BM25Retriever(show_progress=False)
    bm25.fit(["b", "a", "c"], ["보증금 반환", "여권 발급", "보증금 보험"])
    assert bm25.search(["zzzqqq"], 3)[0] == []
    hits = bm25.search(["보증금 반환 절차"], 3)[0]
    assert [d for d, _ in hits] == ["b", "c"] and all(s > 0 for _, s in hits)
