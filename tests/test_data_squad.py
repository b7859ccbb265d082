"""The SQuAD / KorQuAD reader: paragraphs as passages, questions as queries, the title-hash train/test split.

Every fixture is written inside ``tmp_path`` by the helpers of :mod:`tests.data_files`; expected values are written
out by hand (or computed from the fixture itself, never from the reader under test).
"""

from __future__ import annotations

import hashlib
import json
import random
from pathlib import Path

import pytest

from koembed.data import read_squad, split_titles
from koembed.errors import DataError
from tests.data_files import (
    assert_data_error,
    numbered_articles,
    squad_article,
    write_squad,
)

TITLES = [f"문서 {i}" for i in range(30)] + ["Seoul", "부산", "Zürich"]


def test_split_titles_follows_sha256_order():
    expected_order = sorted(TITLES, key=lambda t: hashlib.sha256(t.encode("utf-8")).hexdigest())
    train, test = split_titles(TITLES, n_train=10)
    assert train == set(expected_order[:10])
    assert test == set(expected_order[10:])


def test_split_titles_is_independent_of_input_order_and_duplicates():
    reference = split_titles(TITLES, n_train=12)
    rng = random.Random(1234)
    for _ in range(5):
        shuffled = TITLES + rng.sample(TITLES, 5)  # duplicates do not change anything
        rng.shuffle(shuffled)
        assert split_titles(shuffled, n_train=12) == reference


@pytest.mark.parametrize("n_train", [0, 1, 12, 33, 50])
def test_split_titles_sizes_and_disjoint(n_train):
    train, test = split_titles(TITLES, n_train=n_train)
    assert len(train) == min(n_train, len(TITLES))
    assert len(test) == len(TITLES) - len(train)
    assert not train & test
    assert train | test == set(TITLES)


def test_read_squad_all(tmp_path):
    path = write_squad(tmp_path / "tiny.json", numbered_articles(2))
    rs = read_squad(path)
    assert rs.name == "tiny"
    assert rs.corpus == {"A00#0": "article 0 paragraph 0", "A00#1": "article 0 paragraph 1",
                         "A01#0": "article 1 paragraph 0", "A01#1": "article 1 paragraph 1"}
    assert rs.queries == {"a0-0": "question 0 zero", "a0-1": "question 0 one", "a0-2": "question 0 two",
                          "a1-0": "question 1 zero", "a1-1": "question 1 one", "a1-2": "question 1 two"}
    assert rs.relevant == {"a0-0": [["A00#0"]], "a0-1": [["A00#0"]], "a0-2": [["A00#1"]],
                           "a1-0": [["A01#0"]], "a1-1": [["A01#0"]], "a1-2": [["A01#1"]]}
    assert rs.titles == {"A00#0": "A00", "A00#1": "A00", "A01#0": "A01", "A01#1": "A01"}


def test_read_squad_train_test_split(tmp_path):
    articles = numbered_articles(8)
    path = write_squad(tmp_path / "set.json", articles)
    train_titles, test_titles = split_titles([a["title"] for a in articles], n_train=5)
    everything = read_squad(path, split="all", n_train=5)
    train = read_squad(path, split="train", n_train=5)
    test = read_squad(path, split="test", n_train=5)

    assert train.name == "set-train" and test.name == "set-test"
    assert not set(train.queries) & set(test.queries)
    assert set(train.queries) | set(test.queries) == set(everything.queries)
    assert len(train.queries) == 3 * 5 and len(test.queries) == 3 * 3
    for rs, titles in ((train, train_titles), (test, test_titles)):
        assert set(rs.titles.values()) == titles
        assert set(rs.titles) == set(rs.corpus)
        assert all(doc.split("#")[0] in titles for doc in rs.corpus)
        assert len(rs.corpus) == 2 * len(titles)
        # every relevant doc is in that split's corpus; questions come from those articles
        assert all(doc in rs.corpus for groups in rs.relevant.values() for g in groups for doc in g)
        expected_qids = {qa["id"] for a in articles if a["title"] in titles
                         for p in a["paragraphs"] for qa in p["qas"]}
        assert set(rs.queries) == expected_qids


def test_read_squad_repeated_paragraph_keeps_first_id(tmp_path):
    shared = "두 문서에 똑같이 들어 있는 문단입니다."
    path = write_squad(tmp_path / "rep.json", [
        squad_article("가", [("고유 문단", [("x1", "질문 x1")]), (shared, [("x2", "질문 x2")])]),
        squad_article("나", [("다른 문단", [("y1", "질문 y1")]), (shared, [("y2", "질문 y2")]),
                             (shared, [("y3", "질문 y3")])]),
    ])
    rs = read_squad(path)
    assert rs.corpus == {"가#0": "고유 문단", "가#1": shared, "나#0": "다른 문단"}
    assert rs.relevant["x2"] == [["가#1"]]
    assert rs.relevant["y2"] == [["가#1"]]
    assert rs.relevant["y3"] == [["가#1"]]
    assert rs.relevant["y1"] == [["나#0"]]


def test_read_squad_invalid_json(tmp_path):
    path = tmp_path / "bad.json"
    path.write_text('{"data": [\n  {"title": "x",\n', encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_squad(path)
    assert_data_error(info.value, "bad.json")
    assert "JSON" in str(info.value)


@pytest.mark.parametrize("content", [{"version": "1"}, {"data": {"title": "x"}}, [1, 2]])
def test_read_squad_missing_data_list(tmp_path, content):
    path = tmp_path / "nodata.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_squad(path)
    assert_data_error(info.value, "nodata.json", None, "data")


def test_read_squad_missing_file(tmp_path):
    with pytest.raises(DataError) as info:
        read_squad(tmp_path / "absent.json")
    assert_data_error(info.value, "absent.json")


def test_read_squad_duplicate_question_id(tmp_path):
    path = write_squad(tmp_path / "dup.json", [squad_article("가", [("p0", [("q", "one")])]),
                                               squad_article("나", [("p1", [("q", "two")])])])
    with pytest.raises(DataError) as info:
        read_squad(path)
    assert_data_error(info.value, "dup.json", 2, "data[].paragraphs[0].qas[0].id")


def test_read_squad_empty_context_names_article(tmp_path):
    path = write_squad(tmp_path / "e.json", [squad_article("가", [("p0", [("q0", "x")])]),
                                             squad_article("나", [("p1", [("q1", "y")]), ("  ", [])])])
    with pytest.raises(DataError) as info:
        read_squad(path)
    assert_data_error(info.value, "e.json", 2, "data[].paragraphs[1].context")


def test_read_squad_unknown_split(tmp_path):
    path = write_squad(tmp_path / "s.json", numbered_articles(1))
    with pytest.raises(DataError) as info:
        read_squad(path, split="dev")  # type: ignore[arg-type]
    assert_data_error(info.value, "s.json", field="split")


@pytest.mark.shared_data
def test_korquad_dev_sizes(korquad_path):
    everything = read_squad(korquad_path, split="all")
    train = read_squad(korquad_path, split="train")
    test = read_squad(korquad_path, split="test")

    # independently from the raw JSON
    raw = json.loads(Path(korquad_path).read_text(encoding="utf-8"))["data"]
    n_questions = sum(len(p["qas"]) for a in raw for p in a["paragraphs"])
    n_contexts = len({p["context"] for a in raw for p in a["paragraphs"]})
    assert (n_questions, n_contexts, len(raw)) == (5774, 961, 140)

    assert len(everything.queries) == 5774
    assert len(everything.corpus) == 961
    assert len(train.queries) + len(test.queries) == 5774
    assert not set(train.queries) & set(test.queries)
    assert len(set(test.titles[doc] for doc in test.corpus)) == 40
    assert len(set(train.titles[doc] for doc in train.corpus)) == 100


def test_squad_duplicate_titles_keep_both_paragraphs(tmp_path):
    path = write_squad(tmp_path / "t.json", [squad_article("T", [("first text", [("a", "qa")])]),
                                             squad_article("T", [("second text", [("b", "qb")])])])
    rs = read_squad(path)
    assert sorted(rs.corpus.values()) == ["first text", "second text"]
    assert rs.corpus[rs.relevant["b"][0][0]] == "second text"


def test_squad_non_object_article_is_a_data_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"data": ["oops"]}), encoding="utf-8")
    with pytest.raises(DataError):
        read_squad(path)
