"""The BEIR reader (corpus.jsonl, queries.jsonl, qrels/<split>.tsv): titles, scores, splits, and errors naming
file, row and field.

Every fixture is written inside ``tmp_path`` by the helpers of :mod:`tests.data_files`; expected values are written
out by hand (or computed from the fixture itself, never from the reader under test).
"""

from __future__ import annotations

import json

import pytest

from koembed.data import read_beir
from koembed.errors import DataError
from tests.data_files import (
    QRELS_HEADER,
    all_output,
    assert_data_error,
    cli,
    good_corpus,
    good_queries,
    write_beir,
    write_qrels,
)


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


@pytest.mark.parametrize("score", ["nan", "inf", "-inf"])
def test_qrels_score_must_be_a_finite_number(tmp_path, score):
    directory = write_beir(tmp_path / "b", corpus=good_corpus(), queries=good_queries(),
                           qrels=[("q1", "d1", 1), ("q2", "d2", score)])
    with pytest.raises(DataError) as info:
        read_beir(directory)
    assert_data_error(info.value, "test.tsv", 3, "score")
