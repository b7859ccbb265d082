"""The AutoRAG reader (qa.parquet + corpus.parquet): retrieval_gt shapes, casting, and errors naming file, row
and field.

Every fixture is written inside ``tmp_path`` by the helpers of :mod:`tests.data_files`; expected values are written
out by hand (or computed from the fixture itself, never from the reader under test).
"""

from __future__ import annotations

import random

import numpy as np
import pandas as pd
import pytest

from koembed.data import read_autorag
from koembed.data.autorag import cast_retrieval_gt
from koembed.errors import DataError
from tests.data_files import (
    assert_data_error,
    basic_corpus,
    basic_qa,
    write_autorag,
)

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


@pytest.mark.parametrize("queries, row", [([5, 6], 1), ([3.5, 1.0], 1), (["첫 질문", "\x00"], 2)])
def test_autorag_query_must_be_text(tmp_path, queries, row):
    qa = {"qid": ["q1", "q2"], "query": queries, "retrieval_gt": [[["d1"]], [["d3"]]]}
    with pytest.raises(DataError) as info:
        read_autorag(write_autorag(tmp_path / "s", qa, basic_corpus()))
    assert_data_error(info.value, "qa.parquet", row, "query")
