"""Retrieval-set readers (AutoRAG, BEIR, SQuAD/KorQuAD), the layout dispatcher and the CLI around them.

Every fixture is written inside ``tmp_path`` by the small helpers below; expected values are written
out by hand (or computed from the fixture itself, never from the reader under test).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from koembed.data import load_retrieval_set, read_autorag, read_beir, read_squad, split_titles
from koembed.data.autorag import cast_retrieval_gt
from koembed.errors import DataError
from tests.helpers import SHARED_DATA, require_shared

QRELS_HEADER = "query-id\tcorpus-id\tscore"


# --------------------------------------------------------------------------------------------------
# Fixture writers
# --------------------------------------------------------------------------------------------------

def write_autorag(directory: Path, qa: pd.DataFrame | dict[str, list] | None,
                  corpus: pd.DataFrame | dict[str, list] | None) -> Path:
    """``qa.parquet`` and ``corpus.parquet`` in ``directory``; ``None`` leaves that file out."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, table in (("qa.parquet", qa), ("corpus.parquet", corpus)):
        if table is not None:
            frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
            frame.to_parquet(directory / name, index=False)
    return directory


def basic_corpus() -> dict[str, list]:
    return {"doc_id": ["d1", "d 2", "d3"], "contents": ["첫째 문서", "둘째 문서", "셋째 문서"]}


def basic_qa(**overrides: list) -> dict[str, list]:
    qa: dict[str, list] = {"qid": ["q1", "q2"], "query": ["첫 질문", "둘째 질문"],
                           "retrieval_gt": [[["d1"]], [["d3"]]]}
    qa.update(overrides)
    return qa


def write_jsonl_lines(path: Path, lines: list[Any]) -> Path:
    """One line per item: dicts are JSON-encoded, strings are written verbatim (for broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n"
                   for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def write_qrels(path: Path, rows: list[tuple[str, str, Any]], header: str = QRELS_HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{q}\t{d}\t{s}\n" for q, d, s in rows)
    path.write_text(f"{header}\n{body}", encoding="utf-8")
    return path


def write_beir(directory: Path, corpus: list[Any], queries: list[Any],
               qrels: list[tuple[str, str, Any]] | None, split: str = "test") -> Path:
    write_jsonl_lines(directory / "corpus.jsonl", corpus)
    write_jsonl_lines(directory / "queries.jsonl", queries)
    if qrels is not None:
        write_qrels(directory / "qrels" / f"{split}.tsv", qrels)
    return directory


def small_beir(directory: Path) -> Path:
    """A valid Korean BEIR folder: 4 passages (one without title), 3 judged queries."""
    return write_beir(
        directory,
        corpus=[{"_id": "c1", "title": "정기예금", "text": "만기 전에 해지하면 중도해지이율이 적용됩니다."},
                {"_id": "c2", "title": "여권 발급", "text": "여권은 구청 민원실에서 신청할 수 있습니다."},
                {"_id": "c 3", "text": "택배 반품은 상품 수령 후 7일 이내에 신청합니다."},
                {"_id": "c4", "title": "비밀번호", "text": "비밀번호를 잊으면 이메일 인증으로 재설정합니다."}],
        queries=[{"_id": "q1", "text": "예금을 만기 전에 해지하면 이자는?"},
                 {"_id": "q2", "text": "여권은 어디서 신청하나요?"},
                 {"_id": "q3", "text": "택배 반품 신청 기한"}],
        qrels=[("q1", "c1", 1), ("q2", "c2", 1), ("q3", "c 3", 1)],
    )


def squad_article(title: str, paragraphs: list[tuple[str, list[tuple[str, str]]]]) -> dict[str, Any]:
    """``paragraphs``: (context, [(question id, question), ...]) per paragraph."""
    return {"title": title, "paragraphs": [
        {"context": context, "qas": [{"id": qid, "question": q, "answers": []} for qid, q in qas]}
        for context, qas in paragraphs]}


def write_squad(path: Path, articles: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"version": "test", "data": articles}, ensure_ascii=False), encoding="utf-8")
    return path


def numbered_articles(n: int) -> list[dict[str, Any]]:
    """``n`` articles ``A00..``, each with two paragraphs and three questions (unique texts)."""
    return [squad_article(f"A{i:02d}", [(f"article {i} paragraph 0", [(f"a{i}-0", f"question {i} zero"),
                                                                     (f"a{i}-1", f"question {i} one")]),
                                        (f"article {i} paragraph 1", [(f"a{i}-2", f"question {i} two")])])
            for i in range(n)]


def assert_data_error(exc: DataError, file: str, row: int | None = None, field: str | None = None) -> None:
    """The error (attributes and message) names the file, the 1-based row and the field."""
    message = str(exc)
    assert Path(exc.path).name == file or exc.path.replace(os.sep, "/").endswith(file), exc.path
    assert file in message
    assert exc.row == row, message
    assert exc.field == field, message
    if row is not None:
        assert f"row {row}" in message
    else:
        assert ", row " not in message
    if field is not None:
        assert f"field '{field}'" in message


# --------------------------------------------------------------------------------------------------
# AutoRAG reader
# --------------------------------------------------------------------------------------------------

RETRIEVAL_GT_SHAPES = {
    # shape: (retrieval_gt column for q1, q2, q3), expected relevant
    "list_of_lists": ([[["d1", "d 2"], ["d3"]], [["d 2"]], [["d1"]]],
                      {"q1": [["d1", "d 2"], ["d3"]], "q2": [["d 2"]], "q3": [["d1"]]}),
    "flat_list": ([["d1", "d 2", "d3"], ["d 2"], ["d1"]],
                  {"q1": [["d1", "d 2", "d3"]], "q2": [["d 2"]], "q3": [["d1"]]}),
    "string": (["d 2", "d3", "d1"], {"q1": [["d 2"]], "q2": [["d3"]], "q3": [["d1"]]}),
}


@pytest.mark.parametrize("shape", sorted(RETRIEVAL_GT_SHAPES))
@pytest.mark.parametrize("extra_columns", [False, True], ids=["bare", "generation_gt+metadata"])
def test_autorag_retrieval_gt_shapes(tmp_path, shape, extra_columns):
    gt_column, expected_relevant = RETRIEVAL_GT_SHAPES[shape]
    qa = {"qid": ["q1", "q2", "q3"], "query": ["질문 하나", "질문 둘", "질문 셋"], "retrieval_gt": gt_column}
    corpus = basic_corpus()
    if extra_columns:
        qa["generation_gt"] = [["답 하나"], ["답 둘", "다른 답"], ["답 셋"]]
        corpus["metadata"] = [{"source": "a", "page": 1}, {"source": "b", "page": 2}, {"source": "c", "page": 3}]
    directory = write_autorag(tmp_path / "my-set", qa, corpus)

    rs = read_autorag(directory)

    assert rs.name == "my-set"
    assert rs.corpus == {"d1": "첫째 문서", "d 2": "둘째 문서", "d3": "셋째 문서"}
    assert rs.queries == {"q1": "질문 하나", "q2": "질문 둘", "q3": "질문 셋"}
    assert rs.query_ids == ["q1", "q2", "q3"]
    assert rs.relevant == expected_relevant
    # plain Python lists of str, not numpy leftovers from parquet
    for groups in rs.relevant.values():
        assert type(groups) is list and all(type(g) is list for g in groups)
        assert all(type(doc) is str for g in groups for doc in g)


def test_autorag_parquet_really_gives_numpy_arrays(tmp_path):
    """The premise of the shape tests: parquet hands list columns back as numpy arrays."""
    directory = write_autorag(tmp_path / "s", basic_qa(retrieval_gt=[[["d1", "d 2"]], [["d3"]]]), basic_corpus())
    raw = pd.read_parquet(directory / "qa.parquet")["retrieval_gt"].iloc[0]
    assert isinstance(raw, np.ndarray) and isinstance(raw[0], np.ndarray)
    assert read_autorag(directory).relevant["q1"] == [["d1", "d 2"]]


def test_autorag_flat_list_is_one_group_any_id_counts(tmp_path):
    directory = write_autorag(tmp_path / "s", basic_qa(retrieval_gt=[["d1", "d3"], ["d 2"]]), basic_corpus())
    rs = read_autorag(directory)
    assert rs.relevant["q1"] == [["d1", "d3"]]
    assert len(rs.relevant["q1"]) == 1
    assert rs.relevant_ids("q1") == {"d1", "d3"}


def test_autorag_query_without_ground_truth_is_not_evaluated(tmp_path):
    qa = {"qid": ["q1", "q2", "q3"], "query": ["a", "b", "c"], "retrieval_gt": [[["d1"]], [], [[]]]}
    rs = read_autorag(write_autorag(tmp_path / "s", qa, basic_corpus()))
    assert rs.queries == {"q1": "a"}
    assert rs.relevant == {"q1": [["d1"]]}


def test_autorag_numeric_ids_become_text(tmp_path):
    qa = {"qid": [7, 8], "query": ["a", "b"], "retrieval_gt": [[["d1"]], [["d3"]]]}
    rs = read_autorag(write_autorag(tmp_path / "s", qa, basic_corpus()))
    assert rs.query_ids == ["7", "8"]


@pytest.mark.parametrize("value, expected", [
    ("d1", [["d1"]]),
    (["d1", "d2"], [["d1", "d2"]]),
    ([["d1"], ["d2", "d3"]], [["d1"], ["d2", "d3"]]),
    (np.array(["d1", "d2"]), [["d1", "d2"]]),
    (np.array([np.array(["d1"]), np.array(["d2", "d3"])], dtype=object), [["d1"], ["d2", "d3"]]),
    ([], []),
])
def test_cast_retrieval_gt(value, expected):
    assert cast_retrieval_gt(value) == expected


def test_cast_retrieval_gt_reads_integer_ids_as_text():
    assert cast_retrieval_gt(3) == [["3"]]
    assert cast_retrieval_gt(np.array([1, 2])) == [["1", "2"]]
    assert cast_retrieval_gt([[1], [2, 3]]) == [["1"], ["2", "3"]]


@pytest.mark.parametrize("value", [None, 1.5, True, ["d1", ["d2"]], [["d1"], "d2"]])
def test_cast_retrieval_gt_rejects_other_shapes(value):
    with pytest.raises(TypeError):
        cast_retrieval_gt(value)


# --------------------------------------------------------------------------------------------------
# AutoRAG errors
# --------------------------------------------------------------------------------------------------

def test_autorag_missing_retrieval_gt_column(tmp_path):
    qa = basic_qa()
    del qa["retrieval_gt"]
    directory = write_autorag(tmp_path / "s", qa, basic_corpus())
    with pytest.raises(DataError) as info:
        read_autorag(directory)
    assert_data_error(info.value, "qa.parquet", None, "retrieval_gt")
    assert "missing column" in str(info.value)


def test_autorag_missing_corpus_parquet(tmp_path):
    directory = write_autorag(tmp_path / "s", basic_qa(), None)
    with pytest.raises(DataError) as info:
        read_autorag(directory)
    assert_data_error(info.value, "corpus.parquet")
    assert "missing" in str(info.value)


def test_autorag_missing_qa_parquet(tmp_path):
    directory = write_autorag(tmp_path / "s", None, basic_corpus())
    with pytest.raises(DataError) as info:
        read_autorag(directory)
    assert_data_error(info.value, "qa.parquet")


def _corpus_with(**changes) -> dict[str, list]:
    corpus = basic_corpus()
    for column, (row, value) in changes.items():
        corpus[column][row] = value
    return corpus


# (qa, corpus, file, row, field, words the message must hold): one bad value each, named by file, row and field.
AUTORAG_FIELD_ERRORS = {
    # "d2" is not "d 2": ids are compared exactly, spaces included
    "unknown doc id": (basic_qa(retrieval_gt=[[["d1"]], [["d3", "d2"]]]), basic_corpus(), "qa.parquet", 2,
                       "retrieval_gt", ["'d2'"]),
    "empty query": (basic_qa(query=["fine", ""]), basic_corpus(), "qa.parquet", 2, "query", []),
    "blank query": (basic_qa(query=["fine", "   "]), basic_corpus(), "qa.parquet", 2, "query", []),
    "empty contents": (basic_qa(), _corpus_with(contents=(2, "")), "corpus.parquet", 3, "contents", []),
    "missing doc id": (basic_qa(), _corpus_with(doc_id=(1, None)), "corpus.parquet", 2, "doc_id", []),
    "duplicate doc id": (basic_qa(), {"doc_id": ["d1", "d 2", "d1"], "contents": ["a", "b", "c"]}, "corpus.parquet",
                         3, "doc_id", ["duplicate", "'d1'"]),
    "duplicate qid": (basic_qa(qid=["q1", "q1"]), basic_corpus(), "qa.parquet", 2, "qid", ["duplicate"]),
    "retrieval_gt wrong type": (basic_qa(retrieval_gt=[5, 6]), basic_corpus(), "qa.parquet", 1, "retrieval_gt", []),
}


@pytest.mark.parametrize("case", sorted(AUTORAG_FIELD_ERRORS))
def test_autorag_bad_value_names_file_row_and_field(tmp_path, case):
    qa, corpus, file, row, field, words = AUTORAG_FIELD_ERRORS[case]
    with pytest.raises(DataError) as info:
        read_autorag(write_autorag(tmp_path / "s", qa, corpus))
    assert_data_error(info.value, file, row, field)
    assert all(word in str(info.value) for word in words)


@pytest.mark.parametrize("broken", ["qa.parquet", "corpus.parquet"])
def test_autorag_corrupt_parquet(tmp_path, broken):
    directory = write_autorag(tmp_path / "s", basic_qa(), basic_corpus())
    (directory / broken).write_bytes(random.Random(0).randbytes(600))
    with pytest.raises(DataError) as info:
        read_autorag(directory)
    assert_data_error(info.value, broken)
    assert "parquet" in str(info.value)


# --------------------------------------------------------------------------------------------------
# BEIR reader
# --------------------------------------------------------------------------------------------------

def test_beir_reads_titles_scores_and_drops_unjudged_queries(tmp_path):
    directory = write_beir(
        tmp_path / "b",
        corpus=[{"_id": "d1", "title": "제목", "text": "본문 하나"},
                {"_id": "d 2", "title": "", "text": "본문 둘"},
                {"_id": "d3", "text": "본문 셋"},
                {"_id": "d4", "title": None, "text": "본문 넷"}],
        queries=[{"_id": "q1", "text": "질문 1"}, {"_id": "q2", "text": "질문 2"},
                 {"_id": "q3", "text": "질문 3"}, {"_id": "q4", "text": "질문 4"}],
        qrels=[("q4", "d3", 1), ("q1", "d1", 1), ("q1", "d 2", 2), ("q2", "d3", 0), ("q4", "d3", 1),
               ("q1", "d4", -1)],
    )
    rs = read_beir(directory)
    assert rs.name == "b"
    assert rs.corpus == {"d1": "제목 본문 하나", "d 2": "본문 둘", "d3": "본문 셋", "d4": "본문 넷"}
    assert rs.titles == {"d1": "제목"}
    # q2 only has a score-0 judgment, q3 none at all; order follows queries.jsonl
    assert rs.queries == {"q1": "질문 1", "q4": "질문 4"}
    assert rs.query_ids == ["q1", "q4"]
    assert rs.relevant == {"q1": [["d1"], ["d 2"]], "q4": [["d3"]]}


def test_beir_blank_lines_are_skipped(tmp_path):
    directory = write_beir(tmp_path / "b", corpus=["", {"_id": "d1", "text": "t"}, "   "],
                           queries=[{"_id": "q1", "text": "x"}, ""], qrels=[])
    (directory / "qrels" / "test.tsv").write_text(f"{QRELS_HEADER}\n\nq1\td1\t1\n\n", encoding="utf-8")
    rs = read_beir(directory)
    assert rs.corpus == {"d1": "t"} and rs.relevant == {"q1": [["d1"]]}


def test_beir_jsonl_bom_line_separators_and_bad_utf8(tmp_path):
    directory = write_beir(tmp_path / "b", corpus=[{"_id": "d1", "text": "첫 줄\u2028둘째 줄"},
                                                   {"_id": "d2", "text": "끝"}],
                           queries=[{"_id": "q1", "text": "x"}], qrels=[("q1", "d1", 1)])
    corpus = directory / "corpus.jsonl"
    lines = corpus.read_text(encoding="utf-8").rstrip("\n").split("\n")
    corpus.write_bytes(b"\xef\xbb\xbf" + "\r\n".join(lines).encode("utf-8"))  # BOM, Windows line ends
    assert read_beir(directory).corpus == {"d1": "첫 줄\u2028둘째 줄", "d2": "끝"}
    with corpus.open("ab") as handle:  # line 3 in cp949, as Windows Korean editors save it
        handle.write(b"\n" + '{"_id": "d3", "text": "한글"}'.encode("cp949"))
    with pytest.raises(DataError, match="not UTF-8") as info:
        read_beir(directory)
    assert info.value.row == 3 and "corpus.jsonl" in str(info.value)


def test_beir_split_picks_qrels_file(tmp_path):
    directory = write_beir(tmp_path / "b", corpus=[{"_id": "d1", "text": "a"}, {"_id": "d2", "text": "b"}],
                           queries=[{"_id": "q1", "text": "x"}, {"_id": "q2", "text": "y"}],
                           qrels=[("q1", "d1", 1)], split="test")
    write_qrels(directory / "qrels" / "dev.tsv", [("q2", "d2", 1), ("q1", "d2", 1)])
    assert read_beir(directory).relevant == {"q1": [["d1"]]}
    assert read_beir(directory, split="test").relevant == {"q1": [["d1"]]}
    dev = read_beir(directory, split="dev")
    assert dev.relevant == {"q2": [["d2"]], "q1": [["d2"]]}
    assert dev.query_ids == ["q1", "q2"]


def good_corpus() -> list[dict]:
    return [{"_id": "d1", "text": "a"}, {"_id": "d2", "text": "b"}]


def good_queries() -> list[dict]:
    return [{"_id": "q1", "text": "x"}, {"_id": "q2", "text": "y"}]


def test_beir_malformed_json_line(tmp_path):
    directory = write_beir(tmp_path / "b", corpus=[{"_id": "d1", "text": "a"}, "", '{"_id": "d2", "text": '],
                           queries=good_queries(), qrels=[("q1", "d1", 1)])
    with pytest.raises(DataError) as info:
        read_beir(directory)
    assert_data_error(info.value, "corpus.jsonl", 3)
    assert "JSON" in str(info.value)


def test_beir_line_that_is_not_an_object(tmp_path):
    directory = write_beir(tmp_path / "b", corpus=good_corpus(), queries=[{"_id": "q1", "text": "x"}, "[1, 2]"],
                           qrels=[("q1", "d1", 1)])
    with pytest.raises(DataError) as info:
        read_beir(directory)
    assert_data_error(info.value, "queries.jsonl", 2)


def test_beir_missing_id_in_corpus(tmp_path):
    directory = write_beir(tmp_path / "b", corpus=[{"_id": "d1", "text": "a"}, {"text": "no id"}],
                           queries=good_queries(), qrels=[("q1", "d1", 1)])
    with pytest.raises(DataError) as info:
        read_beir(directory)
    assert_data_error(info.value, "corpus.jsonl", 2, "_id")


def test_beir_missing_id_in_queries(tmp_path):
    directory = write_beir(tmp_path / "b", corpus=good_corpus(), queries=[{"text": "no id"}],
                           qrels=[("q1", "d1", 1)])
    with pytest.raises(DataError) as info:
        read_beir(directory)
    assert_data_error(info.value, "queries.jsonl", 1, "_id")


def test_beir_empty_text(tmp_path):
    directory = write_beir(tmp_path / "b", corpus=[{"_id": "d1", "title": "제목", "text": " "}],
                           queries=good_queries(), qrels=[])
    with pytest.raises(DataError) as info:
        read_beir(directory)
    assert_data_error(info.value, "corpus.jsonl", 1, "text")


@pytest.mark.parametrize("row, field, bad", [
    (3, "corpus-id", ("q2", "nope", 1)),
    (3, "query-id", ("q9", "d1", 1)),
    (3, "score", ("q2", "d2", "high")),
])
def test_beir_bad_qrels_row(tmp_path, row, field, bad):
    directory = write_beir(tmp_path / "b", corpus=good_corpus(), queries=good_queries(),
                           qrels=[("q1", "d1", 1), bad, ("q2", "d2", 1)])
    with pytest.raises(DataError) as info:
        read_beir(directory)
    assert_data_error(info.value, "test.tsv", row, field)
    assert repr(bad[0] if field == "query-id" else bad[1] if field == "corpus-id" else bad[2]) in str(info.value)


def test_beir_qrels_row_with_too_few_fields(tmp_path):
    directory = write_beir(tmp_path / "b", corpus=good_corpus(), queries=good_queries(), qrels=[("q1", "d1", 1)])
    (directory / "qrels" / "test.tsv").write_text(f"{QRELS_HEADER}\nq1\td1\t1\nq2 d2 1\n", encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_beir(directory)
    assert_data_error(info.value, "test.tsv", 3)


@pytest.mark.parametrize("header", ["qid\tdocid\tscore", "query-id corpus-id score", "q1\td1\t1", ""])
def test_beir_bad_qrels_header(tmp_path, header):
    directory = write_beir(tmp_path / "b", corpus=good_corpus(), queries=good_queries(), qrels=None)
    write_qrels(directory / "qrels" / "test.tsv", [("q1", "d1", 1)], header=header)
    with pytest.raises(DataError) as info:
        read_beir(directory)
    assert_data_error(info.value, "test.tsv", 1)
    assert "header" in str(info.value)


@pytest.mark.parametrize("file", ["corpus.jsonl", "queries.jsonl"])
def test_beir_duplicate_id(tmp_path, file):
    corpus, queries = good_corpus(), good_queries()
    (corpus if file == "corpus.jsonl" else queries).append({"_id": "d1" if file == "corpus.jsonl" else "q1",
                                                            "text": "again"})
    directory = write_beir(tmp_path / "b", corpus=corpus, queries=queries, qrels=[("q1", "d1", 1)])
    with pytest.raises(DataError) as info:
        read_beir(directory)
    assert_data_error(info.value, file, 3, "_id")
    assert "duplicate" in str(info.value)


@pytest.mark.parametrize("split", ["test", "dev"])
def test_beir_missing_qrels_file(tmp_path, split):
    directory = write_beir(tmp_path / "b", corpus=good_corpus(), queries=good_queries(), qrels=None)
    (directory / "qrels").mkdir()
    with pytest.raises(DataError) as info:
        read_beir(directory, split=split)
    assert_data_error(info.value, f"qrels/{split}.tsv")


def test_beir_missing_queries_file(tmp_path):
    directory = write_beir(tmp_path / "b", corpus=good_corpus(), queries=good_queries(), qrels=[("q1", "d1", 1)])
    (directory / "queries.jsonl").unlink()
    with pytest.raises(DataError) as info:
        read_beir(directory)
    assert_data_error(info.value, "queries.jsonl")


# --------------------------------------------------------------------------------------------------
# SQuAD / KorQuAD reader
# --------------------------------------------------------------------------------------------------

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


# --------------------------------------------------------------------------------------------------
# The bundled sample
# --------------------------------------------------------------------------------------------------

def test_sample_contents(sample):
    assert sample.name == "koembed-sample"
    assert len(sample.corpus) >= 40
    assert len(sample.queries) >= 80
    assert sum(1 for groups in sample.relevant.values() if len(groups) == 2) >= 10
    prefixes = {re.match(r"[a-z]+", doc).group(0) for doc in sample.corpus}
    assert prefixes == {"fin", "law", "gov", "com", "enc", "it"}
    assert all(text.strip() for text in sample.corpus.values())
    assert all(text.strip() for text in sample.queries.values())
    assert set(sample.relevant) == set(sample.queries)
    judged = {doc for qid in sample.relevant for doc in sample.relevant_ids(qid)}
    assert judged <= set(sample.corpus)
    assert judged == set(sample.corpus)  # README: every passage is relevant to at least one query
    assert {"enc 08", "it 08"} <= set(sample.corpus)  # ids with a space survive


# --------------------------------------------------------------------------------------------------
# load_retrieval_set dispatch
# --------------------------------------------------------------------------------------------------

def test_load_autorag_folder(tmp_path):
    directory = write_autorag(tmp_path / "auto", basic_qa(), basic_corpus())
    rs = load_retrieval_set(directory)
    assert (rs.name, rs.relevant) == ("auto", {"q1": [["d1"]], "q2": [["d3"]]})
    assert load_retrieval_set(str(directory)).relevant == rs.relevant


def test_load_beir_folder_and_split(tmp_path):
    directory = small_beir(tmp_path / "beir")
    write_qrels(directory / "qrels" / "dev.tsv", [("q2", "c4", 1)])
    assert load_retrieval_set(directory).relevant == {"q1": [["c1"]], "q2": [["c2"]], "q3": [["c 3"]]}
    assert load_retrieval_set(directory, split="dev").relevant == {"q2": [["c4"]]}


def test_load_squad_file_and_split(tmp_path):
    path = write_squad(tmp_path / "kq.json", numbered_articles(3))
    assert len(load_retrieval_set(path).queries) == 9
    # default n_train is 100 articles: with 3 articles everything is train, nothing is test
    assert len(load_retrieval_set(path, split="train").queries) == 9
    with pytest.raises(DataError, match="no query has a relevant document"):
        load_retrieval_set(path, split="test")


def test_load_default_is_sample():
    assert load_retrieval_set().name == "koembed-sample"
    assert load_retrieval_set("sample").name == "koembed-sample"


def test_load_nonexistent_path(tmp_path):
    with pytest.raises(DataError) as info:
        load_retrieval_set(tmp_path / "nothing-here")
    assert_data_error(info.value, "nothing-here")


@pytest.mark.parametrize("make", ["empty_dir", "queries_only_dir", "parquet_not_autorag", "txt_file"])
def test_load_unrecognised(tmp_path, make):
    target = tmp_path / "thing"
    if make == "empty_dir":
        target.mkdir()
    elif make == "queries_only_dir":
        write_jsonl_lines(target / "queries.jsonl", [{"_id": "q1", "text": "x"}])
    elif make == "parquet_not_autorag":
        write_autorag(target, None, basic_corpus())
    else:
        target = tmp_path / "thing.txt"
        target.write_text("{}", encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_retrieval_set(target)
    assert "unrecognised" in str(info.value)
    assert info.value.path == str(target)


# --------------------------------------------------------------------------------------------------
# CLI end to end
# --------------------------------------------------------------------------------------------------

def cli(*args: str):
    from koembed.cli import app

    return CliRunner().invoke(app, list(args))


def all_output(result) -> str:
    """stdout and stderr (click >= 8.2 mixes both into ``output``), with rich's line wrapping undone."""
    text = result.output
    try:
        stderr = result.stderr
    except (ValueError, AttributeError):
        stderr = ""
    if stderr and stderr not in text:
        text += stderr
    return text.replace("\n", "")


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


# --------------------------------------------------------------------------------------------------
# Regressions: bugs found while writing these tests, fixed
# --------------------------------------------------------------------------------------------------

def test_squad_duplicate_titles_keep_both_paragraphs(tmp_path):
    path = write_squad(tmp_path / "t.json", [squad_article("T", [("first text", [("a", "qa")])]),
                                             squad_article("T", [("second text", [("b", "qb")])])])
    rs = read_squad(path)
    assert sorted(rs.corpus.values()) == ["first text", "second text"]
    assert rs.corpus[rs.relevant["b"][0][0]] == "second text"


@pytest.mark.parametrize("layout", ["squad", "beir"])
def test_non_utf8_file_is_a_data_error(tmp_path, layout):
    if layout == "squad":
        path = tmp_path / "cp.json"
        path.write_bytes(json.dumps({"data": [{"title": "가", "paragraphs": []}]}, ensure_ascii=False)
                         .encode("cp949"))
    else:
        path = small_beir(tmp_path / "beir")
        (path / "corpus.jsonl").write_bytes((json.dumps({"_id": "c1", "text": "한국어"}, ensure_ascii=False)
                                             + "\n").encode("cp949"))
    with pytest.raises(DataError):
        load_retrieval_set(path)


def test_squad_non_object_article_is_a_data_error(tmp_path):
    path = tmp_path / "x.json"
    path.write_text(json.dumps({"data": ["oops"]}), encoding="utf-8")
    with pytest.raises(DataError):
        read_squad(path)


def test_cli_inspect_set_without_judged_queries_exits_2(tmp_path):
    directory = write_beir(tmp_path / "b", corpus=good_corpus(), queries=good_queries(), qrels=[("q1", "d1", 0)])
    result = cli("inspect", "--data", str(directory))
    assert result.exit_code == 2


def test_cli_unknown_squad_split_exits_2(tmp_path):
    path = write_squad(tmp_path / "s.json", numbered_articles(1))
    result = cli("inspect", "--data", str(path), "--split", "dev")
    assert result.exit_code == 2


# --------------------------------------------------------------------------------------------------
# Query-positives JSON (the MS MARCO-ko layout)
# --------------------------------------------------------------------------------------------------

def test_query_positives_layout(tmp_path):
    from koembed.data import read_query_positives

    path = tmp_path / "pairs.json"
    items = [{"id": 1, "query": "첫 질문", "positive": ["공통 문단", "두 번째 문단"]},
             {"id": 2, "query": "둘째 질문", "positive": ["공통 문단"]}]
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    rs = load_retrieval_set(path)
    assert rs.corpus == {"p0": "공통 문단", "p1": "두 번째 문단"}
    assert rs.queries == {"1": "첫 질문", "2": "둘째 질문"}
    assert rs.relevant == {"1": [["p0", "p1"]], "2": [["p0"]]}  # positives form one group: any answers
    assert read_query_positives(path).corpus == rs.corpus


@pytest.mark.parametrize("item, field", [({"id": 1, "query": "", "positive": ["p"]}, "query"),
                                         ({"id": 1, "query": "q", "positive": []}, "positive"),
                                         ({"id": 1, "query": "q", "positive": [""]}, "positive"),
                                         ({"query": "q", "positive": ["p"]}, "id")])
def test_query_positives_errors_name_row_and_field(tmp_path, item, field):
    path = tmp_path / "pairs.json"
    ok = {"id": 0, "query": "괜찮은 질문", "positive": ["문단"]}
    path.write_text(json.dumps([ok, item], ensure_ascii=False), encoding="utf-8")
    with pytest.raises(DataError) as info:
        load_retrieval_set(path)
    assert_data_error(info.value, "pairs.json", row=2, field=field)


def test_query_positives_split_halves_share_the_corpus(tmp_path):
    items = [{"id": f"q{i}", "query": f"질문 {i}", "positive": [f"문단 {i % 7}"]} for i in range(21)]
    path = tmp_path / "qp.json"
    path.write_text(json.dumps(items, ensure_ascii=False), encoding="utf-8")
    whole, train, test = (load_retrieval_set(path, split=s) for s in ("all", "train", "test"))
    assert set(train.queries) | set(test.queries) == set(whole.queries) and not set(train.queries) & set(test.queries)
    assert len(train.queries) == 10 and train.corpus == test.corpus == whole.corpus
    by_hash = sorted(whole.queries, key=lambda q: hashlib.sha256(q.encode("utf-8")).hexdigest())
    assert set(train.queries) == set(by_hash[:10])  # the first half by SHA-256 of the id trains
    path.write_text(json.dumps(list(reversed(items)), ensure_ascii=False), encoding="utf-8")
    assert set(load_retrieval_set(path, split="train").queries) == set(train.queries)  # not the file order
    with pytest.raises(DataError, match="unknown split"):
        load_retrieval_set(path, split="dev")


@pytest.mark.shared_data
def test_msmarco_ko_sizes():
    rs = load_retrieval_set(require_shared(SHARED_DATA / "msmarco-ko" / "msmarco_kor.json"))
    assert len(rs.queries) == 6980 and len(rs.corpus) == 7279


# --------------------------------------------------------------------------------------------------
# Red-team fault classes (docs/RELIABILITY.md): wrong types, invisible text, non-finite scores, deep nesting
# --------------------------------------------------------------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


@pytest.mark.parametrize("case", ["number text", "boolean text", "nul-only text", "control-only text",
                                  "lone surrogate text", "list id", "float id"])
def test_beir_text_must_be_text_while_ids_may_be_integers(tmp_path, case):
    value = {"number text": 12345, "boolean text": True, "nul-only text": "\x00", "control-only text": "\x00\x1f \t",
             "lone surrogate text": "a\ud800b", "list id": ["d2"], "float id": 2.5}[case]
    field = "_id" if "id" in case.split()[-1] else "text"
    second = {"_id": value, "text": "b"} if field == "_id" else {"_id": "d2", "text": value}
    corpus = [{"_id": 7, "text": "정수 아이디는 글로 읽는다"}, json.dumps(second)]  # ASCII escapes: \ud800 as sent
    directory = write_beir(tmp_path / "b", corpus=corpus, queries=good_queries(), qrels=[("q1", "7", 1)])
    with pytest.raises(DataError) as info:
        read_beir(directory)
    assert_data_error(info.value, "corpus.jsonl", 2, field)
    result = cli("inspect", "--data", str(directory))
    assert result.exit_code == 2 and "corpus.jsonl, row 2" in all_output(result)


def test_integer_ids_still_read_as_text(tmp_path):
    directory = write_beir(tmp_path / "b", corpus=[{"_id": 7, "text": "본문"}], queries=[{"_id": 1, "text": "질문"}],
                           qrels=[("1", "7", 1)])
    assert read_beir(directory).relevant == {"1": [["7"]]}


@pytest.mark.parametrize("queries, row", [([5, 6], 1), ([3.5, 1.0], 1), (["첫 질문", "\x00"], 2)])
def test_autorag_query_must_be_text(tmp_path, queries, row):
    qa = {"qid": ["q1", "q2"], "query": queries, "retrieval_gt": [[["d1"]], [["d3"]]]}
    with pytest.raises(DataError) as info:
        read_autorag(write_autorag(tmp_path / "s", qa, basic_corpus()))
    assert_data_error(info.value, "qa.parquet", row, "query")


@pytest.mark.parametrize("score", ["nan", "inf", "-inf"])
def test_qrels_score_must_be_a_finite_number(tmp_path, score):
    directory = write_beir(tmp_path / "b", corpus=good_corpus(), queries=good_queries(),
                           qrels=[("q1", "d1", 1), ("q2", "d2", score)])
    with pytest.raises(DataError) as info:
        read_beir(directory)
    assert_data_error(info.value, "test.tsv", 3, "score")


@pytest.mark.parametrize("layout", ["query-positives .json", "squad .json", "corpus line", "documents line"])
def test_deeply_nested_json_is_a_data_error_naming_the_file(tmp_path, layout):
    from koembed.data.docs import read_documents

    if layout == "query-positives .json":
        path, row, read = tmp_path / "qp.json", None, load_retrieval_set
        path.write_text(DEEP, encoding="utf-8")
    elif layout == "squad .json":
        path, row, read = tmp_path / "sq.json", None, load_retrieval_set
        path.write_text('{"data": ' + DEEP + "}", encoding="utf-8")
    elif layout == "corpus line":
        directory = write_beir(tmp_path / "b", corpus=[{"_id": "d1", "text": "a"}, DEEP], queries=good_queries(),
                               qrels=[("q1", "d1", 1)])
        path, row, read = directory / "corpus.jsonl", 2, lambda p: read_beir(p.parent)
    else:
        path, row, read = write_jsonl_lines(tmp_path / "docs.jsonl", [{"id": "a", "text": "b"}, DEEP]), 2, \
            read_documents
    with pytest.raises(DataError) as info:
        read(path)
    assert_data_error(info.value, path.name, row)
    assert "nested too deeply" in str(info.value)
    result = cli("inspect", "--data", str(path if layout.endswith(".json") else path.parent))
    if layout != "documents line":
        assert result.exit_code == 2 and path.name in all_output(result)


def test_pairs_csv_cells_stay_text(tmp_path):
    from koembed.data.pairs import read_pairs

    path = tmp_path / "p.csv"
    path.write_text("query,positive\n2024,12345\n", encoding="utf-8")
    assert [(p.query, p.positive) for p in read_pairs(path)] == [("2024", "12345")]
