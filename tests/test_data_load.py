"""load_retrieval_set: the bundled sample, the layout dispatcher, and faults every reader shares (encoding, deep
nesting); the pairs reader's CSV cells.

Every fixture is written inside ``tmp_path`` by the helpers of :mod:`tests.data_files`; expected values are written
out by hand (or computed from the fixture itself, never from the reader under test).
"""

from __future__ import annotations

import json
import re

import pytest

from koembed.data import load_retrieval_set, read_beir
from koembed.errors import DataError
from tests.data_files import (
    DEEP,
    all_output,
    assert_data_error,
    basic_corpus,
    basic_qa,
    cli,
    good_queries,
    numbered_articles,
    small_beir,
    write_autorag,
    write_beir,
    write_jsonl_lines,
    write_qrels,
    write_squad,
)


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
