"""Phrase-aware BM25: field terms by hand, each field's BM25 against Lucene's formula, the weighted combination by
hand, spec parsing, deterministic weight fitting, and the stored index reproducing the in-memory ranking."""

from __future__ import annotations

import numpy as np
import pytest

from koembed.errors import SpecError
from koembed.evaluation.tuning import fit_weights, lexical_problem
from koembed.index import build_index, load_index
from koembed.lexical import (
    ANALYZERS,
    FIELDS,
    PRESETS,
    BM25Retriever,
    LexicalConfig,
    get_analyzer,
    lexical_config,
)
from koembed.lexical.fields import field_length, field_tokens
from koembed.retrieval.factory import RetrieverFactory
from tests.helpers import QUIET, lucene_bm25

TEXTS = ["전세 보증금을 돌려받지 못하면 임차권등기명령을 신청한다.",
         "보증금 반환 소송은 지급명령보다 오래 걸린다.",
         "전세 계약을 갱신할 때 보증금 인상률은 5퍼센트로 제한된다.",
         "임차권등기명령 신청 후에는 이사를 가도 대항력이 유지된다.",
         "월세 세입자도 확정일자를 받아 두는 것이 좋다."]
QUERIES = ["전세 보증금 돌려받지 못할 때", "임차권등기명령 신청", "보증금 인상률 제한", "월세 확정일자"]


def test_field_terms_by_hand():
    tokens = ["전세/N", "보증금/N", "돌려받/V", "못/MAG"]
    assert field_tokens("unigram", tokens, "") == tokens
    assert field_tokens("bigram", tokens, "") == ["전세/N 보증금/N", "보증금/N 돌려받/V", "돌려받/V 못/MAG"]
    assert field_tokens("pair", tokens, "") == ["보증금/N 전세/N", "돌려받/V 전세/N", "못/MAG 전세/N",
                                                "돌려받/V 보증금/N", "못/MAG 보증금/N", "돌려받/V 못/MAG"]
    far = [f"t{i}" for i in range(7)]  # pairs reach 4 positions ahead, no further
    assert "t0 t4" in field_tokens("pair", far, "") and "t0 t5" not in field_tokens("pair", far, "")
    # words are runs of letters and digits; NFKC folds the full-width Ａ, lower-casing folds case; 1-letter words stay
    assert field_tokens("char", [], "전세 보증금을, ＡI! 및 2024년") == ["전세", "보증", "증금", "금을", "ai", "및",
                                                                    "20", "02", "24", "4년"]
    with pytest.raises(ValueError, match="unknown lexical field"):
        field_tokens("trigram", tokens, "")


def test_field_lengths_count_the_field_terms():
    """field_length is the number of terms field_tokens builds, for every field and token count around the pair
    window, and for texts with one-letter words, punctuation and full-width letters."""
    texts = ["", "a", "전세 보증금을, ＡI! 및 2024년", "가 나다 라마바사", *TEXTS]
    for n in range(12):
        tokens = [f"t{i % 5}/N" for i in range(n)]
        for text in texts:
            for field in FIELDS:
                assert field_length(field, tokens, text) == len(field_tokens(field, tokens, text))
    with pytest.raises(ValueError, match="trigram"):
        field_length("trigram", [], "")


@pytest.mark.parametrize("analyzer", ANALYZERS)
@pytest.mark.parametrize("field", FIELDS)
def test_each_field_bm25_equals_lucene_formula(field, analyzer):
    kiwi = get_analyzer(analyzer)
    docs_terms = [field_tokens(field, tok, text) for tok, text in zip(kiwi(TEXTS), TEXTS)]
    bm25 = BM25Retriever(LexicalConfig({field: 1.0}, analyzer=analyzer), show_progress=False)
    bm25.fit([f"d{i}" for i in range(len(TEXTS))], TEXTS)
    for query, scores in zip(QUERIES, bm25.field_scores(QUERIES)):
        expected = lucene_bm25(field_tokens(field, kiwi([query])[0], query), docs_terms)
        np.testing.assert_allclose(scores[0], expected, rtol=1e-5, atol=1e-6)
        hits = bm25.search([query], 5)[0]
        want = [f"d{i}" for i in sorted(range(len(TEXTS)), key=lambda i: (-expected[i], i)) if expected[i] > 0]
        assert [d for d, _ in hits] == want  # only matching passages, best first


@pytest.mark.parametrize("analyzer", ANALYZERS)
@pytest.mark.parametrize("normalization", ["none", "max", "z"])
def test_weighted_combination_by_hand(normalization, analyzer):
    kiwi = get_analyzer(analyzer)
    weights = {"unigram": 1.0, "bigram": 0.3, "char": 0.5}
    analysed = kiwi(TEXTS)
    bm25 = BM25Retriever(LexicalConfig(weights, normalization, analyzer=analyzer), show_progress=False)
    ids = [f"d{i}" for i in range(len(TEXTS))]
    bm25.fit(ids, TEXTS)
    for query, hits in zip(QUERIES, bm25.search(QUERIES, 5)):
        q_tokens = kiwi([query])[0]
        total, matched = np.zeros(len(TEXTS)), np.zeros(len(TEXTS), dtype=bool)
        for field, w in weights.items():
            raw = lucene_bm25(field_tokens(field, q_tokens, query),
                              [field_tokens(field, t, x) for t, x in zip(analysed, TEXTS)])
            matched |= raw > 0
            if normalization == "max":
                raw = raw / raw.max() if raw.max() > 0 else raw
            elif normalization == "z":
                raw = (raw - raw.mean()) / raw.std() if raw.std() > 0 else np.zeros_like(raw)
            total += w * raw
        order = sorted(np.flatnonzero(matched), key=lambda i: (-total[i], i))
        assert [d for d, _ in hits] == [ids[i] for i in order]
        np.testing.assert_allclose([s for _, s in hits], total[order], rtol=1e-5, atol=1e-6)


def test_one_unigram_field_is_plain_bm25(sample):
    factory = RetrieverFactory(sample.doc_ids, list(sample.corpus.values()), options=QUIET)
    queries = list(sample.queries.values())
    assert factory.get("bm25-fields:unigram=2").search(queries, 10) != []
    plain = [[d for d, _ in h] for h in factory.get("bm25").search(queries, 10)]
    assert [[d for d, _ in h] for h in factory.get("bm25-fields:unigram=2").search(queries, 10)] == plain


@pytest.mark.parametrize("spec", ["bm25-fields:", "bm25-fields:unigram", "bm25-fields:unigram=x",
                                  "bm25-fields:trigram=1", "bm25-fields:unigram=0", "bm25-fields:unigram=-1",
                                  "bm25-fields:unigram=1@softmax", "bm25-fields:unigram=nan"])
def test_bad_field_specs_are_refused(spec):
    with pytest.raises(SpecError):
        lexical_config(spec)


def test_presets_and_explicit_specs():
    assert PRESETS["bm25"] == LexicalConfig() and PRESETS["bm25-char"].fields == ("char",)
    assert lexical_config("bm25-fields:char=0.5,unigram=1@z") == LexicalConfig({"unigram": 1, "char": 0.5}, "z")
    assert lexical_config("dense:minilm") is None
    old = LexicalConfig.from_dict({"k1": 1.2, "b": 0.75, "tokenizer": "old manifest"})  # before analyzers: Kiwi
    assert old == LexicalConfig(analyzer="kiwi") and LexicalConfig().analyzer == "mecab"


def test_weight_fitting_is_deterministic_and_does_not_depend_on_query_order(sample):
    import dataclasses

    config = LexicalConfig({f: 1.0 for f in FIELDS})
    first = lexical_problem(sample, config)
    again = lexical_problem(sample, config)
    reordered = dataclasses.replace(sample, queries=dict(reversed(list(sample.queries.items()))))
    grid = (0.0, 0.3, 1.0)
    fits = [fit_weights([p], FIELDS, "z", grid) for p in (first, again, lexical_problem(reordered, config))]
    assert fits[0] == fits[1] and fits[0]["weights"] == fits[2]["weights"]
    assert fits[0]["objective"] >= 0  # weights (1, 0, 0, 0), i.e. unigram alone, are on the grid


def test_stored_index_reproduces_the_in_memory_ranking(tmp_path, tiny_model_dir, sample):
    from koembed.models import load_model

    model = load_model(str(tiny_model_dir))
    build_index(str(tiny_model_dir), sample.doc_ids, list(sample.corpus.values()), tmp_path / "idx", options=QUIET,
                encoder=model)
    index = load_index(tmp_path / "idx", encoder=model)
    bm25 = BM25Retriever(LexicalConfig.from_dict(index.manifest.bm25), show_progress=False)
    bm25.fit(sample.doc_ids, list(sample.corpus.values()))
    queries = list(sample.queries.values())
    assert index.search(queries, 10, mode="bm25") == bm25.search(queries, 10)


def test_cli_tune_lexical_prints_a_spec_that_runs(tmp_path):
    import json

    from typer.testing import CliRunner

    from koembed.cli import app

    out = tmp_path / "fit.json"
    result = CliRunner().invoke(app, ["tune-lexical", "-d", "sample", "--fields", "unigram,char", "--out", str(out)])
    assert result.exit_code == 0, result.output
    fit = json.loads(out.read_text(encoding="utf-8"))
    spec = result.output.split("spec: ")[1].split()[0]
    assert spec == fit["spec"] and lexical_config(spec).weights == fit["weights"]
    assert fit["weights"]["unigram"] == 1.0 and fit["objective"] >= 0
    bench = CliRunner().invoke(app, ["bench", "-r", spec, "--top-k", "1", "-q"])
    assert bench.exit_code == 0, bench.output
    bad = CliRunner().invoke(app, ["tune-lexical", "-d", "sample", "--fields", "unigram,trigram"])
    assert bad.exit_code == 2 and "trigram" in bad.output


def test_cli_index_build_records_the_lexical_fields(tmp_path, tiny_model_dir):
    import json

    from typer.testing import CliRunner

    from koembed.cli import app

    out = tmp_path / "idx"
    result = CliRunner().invoke(app, ["index", "build", "--model", str(tiny_model_dir), "--corpus", "sample",
                                      "--out", str(out), "--lexical", "bm25-char", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["bm25"]["weights"] == {"char": 1.0}
    bad = CliRunner().invoke(app, ["index", "build", "--model", str(tiny_model_dir), "--corpus", "sample",
                                   "--out", str(tmp_path / "bad"), "--lexical", "dense:minilm", "-q"])
    assert bad.exit_code == 2 and "not a lexical retriever" in bad.output and not (tmp_path / "bad").exists()
