"""The analyzer protocol (koembed.lexical.analyzer): MeCab-ko and Kiwi give the same token kinds, MeCab-ko's tokens
follow its module's rule (checked against mecab.MeCab's own public parse, the rule written out again here), the
process pool gives what one process gives, and user dictionaries: parsed strictly, applied by both analyzers, and a
domain compound found at rank 1 only with one."""

from __future__ import annotations

import json
import re
import sys

import pytest

from koembed.errors import DataError, SpecError
from koembed.lexical import ANALYZERS, PRESETS, BM25Retriever, UserDict, get_analyzer, lexical_config
from koembed.lexical import mecab as mecab_module
from koembed.lexical.bm25 import lexical_spec, lexical_with_analyzer
from tests.helpers import ROOT

SENTENCES = [
    "전세보증금을 돌려받지 못했어요. 삼성전자가 갤럭시를 출시했다",
    "AI 서비스는 2024년에 시작됐습니다! 漢字도 있고 www.example.com 도 있다",
    "임대차 기간이 끝나기 6개월 전부터 2개월 전까지 갱신을 요구할 수 있다",
    "   ",
    "ㅋㅋㅋ 맛있었다",
]
# Kept classes from the module docstrings (not imported): the independent rule.
KEPT = {"NNG": "N", "NNP": "N", "NR": "N", "XR": "N", "VV": "V", "VA": "V", "SL": "SL", "SN": "SN", "SH": "SH",
        "MAG": "MAG"}


def _sample_texts() -> list[str]:
    with open(ROOT / "src" / "koembed" / "data" / "sample" / "corpus.jsonl", encoding="utf-8") as f:
        return [json.loads(line)["text"] for line in f]


def _mecab_rule(text: str) -> list[str]:
    """MeCab-ko's public parse, mapped by the rule: split Inflect/Compound/Preanalysis entries by their expression,
    keep the Sejong classes above, lower-case, ``form/CLASS``."""
    from mecab import MeCab

    out = []
    for m in MeCab().parse(text):
        f = m.feature
        if f.type in ("Inflect", "Compound", "Preanalysis") and f.expression:
            parts = [(p.split("/")[0], p.split("/")[1]) for p in f.expression.split("+")]
        else:
            parts = [(m.surface, f.pos)]
        out += [f"{form.lower()}/{KEPT[tag]}" for form, tag in parts if tag in KEPT]
    return out


def test_mecab_tokens_follow_the_rule_on_mecabs_own_parse():
    texts = SENTENCES + _sample_texts()
    assert get_analyzer("mecab")(texts) == [_mecab_rule(t) for t in texts]


def test_compounds_and_inflections_are_split_into_their_morphemes():
    mecab = get_analyzer("mecab")
    assert mecab(["보증금을"])[0] == ["보증/N", "금/N"]  # a Compound entry: its parts
    assert mecab(["출시했다"])[0] == ["출시/N"]  # 했 = 하/XSV + 았/EP (Inflect): neither is a kept class


@pytest.mark.parametrize("name", ANALYZERS)
def test_both_analyzers_give_the_same_token_kinds(name):
    kinds = re.compile(r"^.+/(N|V|SL|SN|SH|MAG|W)$")
    tokens = [t for ts in get_analyzer(name)(SENTENCES + _sample_texts()) for t in ts]
    assert tokens and all(kinds.match(t) for t in tokens)
    assert "ai/SL" in get_analyzer(name)(["AI 서비스"])[0]  # foreign words lower-cased by both


@pytest.mark.parametrize("name", ANALYZERS)
def test_positioned_spans_cover_the_surface_each_token_came_from(name):
    analyzer = get_analyzer(name)
    text = "전세 보증금을 돌려받지 못했어요. 삼성전자가 AI를 출시"
    spans = analyzer.positioned([text])[0]
    assert [t for t, _, _ in spans] == analyzer([text])[0]
    for token, start, end in spans:
        form = token.rsplit("/", 1)[0]
        assert 0 <= start < end <= len(text)
        if form in text.lower():  # not restored from a contraction: the span is the form itself
            assert form in text[start:end].lower() or text[start:end].lower() in form


def test_the_process_pool_gives_what_one_process_gives(monkeypatch):
    texts = _sample_texts() * 3
    one = [get_analyzer("mecab")([t])[0] for t in texts]
    monkeypatch.setattr(mecab_module, "POOL_MIN", 10)
    monkeypatch.setattr(mecab_module, "CHUNK", 7)
    monkeypatch.setattr(mecab_module.os, "sched_getaffinity", lambda pid: {0, 1})
    assert get_analyzer("mecab")(texts) == one


def test_unknown_analyzer_is_an_error_listing_the_choices():
    with pytest.raises(SpecError, match="mecab, kiwi"):
        get_analyzer("okt")
    with pytest.raises(SpecError, match="analyzers mecab, kiwi"):
        lexical_config("bm25-phrase@okt")


def test_mecab_missing_says_how_to_install_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "_mecab", None)  # import fails as if the wheel were absent
    with pytest.raises(SpecError, match="pip install python-mecab-ko"):
        mecab_module.MecabTokenizer()


def test_specs_name_the_analyzer():
    assert lexical_config("bm25-phrase").analyzer == "mecab"  # the default
    assert lexical_config("bm25-phrase@kiwi") == PRESETS["bm25-phrase"].with_analyzer("kiwi")
    fields = lexical_config("bm25-fields:unigram=1,char=0.5@z,kiwi")
    assert (fields.analyzer, fields.normalization, dict(fields.weights)) == ("kiwi", "z", {"unigram": 1, "char": 0.5})
    for config in (lexical_config("bm25@kiwi"), fields, lexical_config("bm25-char")):
        assert lexical_config(lexical_spec(config)) == config
    for bad in ("bm25@z", "bm25-phrase@kiwi,mecab", "bm25-fields:unigram=1@z,max"):
        with pytest.raises(SpecError):
            lexical_config(bad)
    assert lexical_with_analyzer("bm25", "kiwi").analyzer == "kiwi"
    with pytest.raises(SpecError, match="names the kiwi analyzer"):
        lexical_with_analyzer("bm25@kiwi", "mecab")


def test_user_dictionary_lines_are_parsed_strictly():
    ud = UserDict.parse("# products\n토스증권\n라마인덱스 NNG  # a comment\n\n")
    assert ud.entries == (("토스증권", "NNP"), ("라마인덱스", "NNG"))
    for text, line in (("a\nb NNP extra\n", 2), ("좋다 VV\n", 1), ("x,y\n", 1), ("토스\n토스\n", 2), ("!!!\n", 1)):
        with pytest.raises(DataError, match=f"row {line}"):
            UserDict.parse(text, "dict.txt")


def test_user_dictionary_file_errors_name_the_file(tmp_path):
    bad = tmp_path / "dict.txt"
    bad.write_bytes(b"\xff\xfe\n")
    with pytest.raises(DataError, match="dict.txt.*not UTF-8"):
        UserDict.read(bad)
    with pytest.raises(DataError, match="missing.txt"):
        UserDict.read(tmp_path / "missing.txt")


def _compound_corpus(word: str, a: str, b: str) -> dict[str, str]:
    return {"d1": f"{word}는 문서를 불러와 검색 파이프라인을 만드는 오픈소스 도구입니다. 설치한 뒤 예제를 따라 하면 됩니다.",
            "d2": f"{a} {b}: 안데스 산맥의 {a} 개체 수를 지역별로 정리한 {b}를 설치 지역별로 공개합니다.",
            "d3": f"도서관 {b} 카드와 {a} 사진"}


@pytest.mark.parametrize("name", ANALYZERS)
def test_a_domain_compound_is_found_at_rank_1_only_with_the_user_dictionary(name):
    word, a, b = "토스증권", "토스", "증권"
    assert get_analyzer(name)([word])[0] == [f"{a}/N", f"{b}/N"]  # split without the dictionary
    ud = UserDict.parse(f"{word}\n")
    assert get_analyzer(name, ud)([word + "에서"])[0] == [f"{word}/N"]
    docs = _compound_corpus(word, a, b)
    top = []
    for user_dict in (None, ud):
        bm25 = BM25Retriever(PRESETS["bm25-phrase"].with_analyzer(name), show_progress=False, user_dict=user_dict)
        bm25.fit(list(docs), list(docs.values()))
        top.append(bm25.search([f"{word} 설치"], 1)[0][0][0])
    assert top == ["d2", "d1"]
