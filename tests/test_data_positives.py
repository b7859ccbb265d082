"""The query-positives JSON reader (the MS MARCO-ko layout).

Every fixture is written inside ``tmp_path`` by the helpers of :mod:`tests.data_files`; expected values are written
out by hand (or computed from the fixture itself, never from the reader under test).
"""

from __future__ import annotations

import hashlib
import json

import pytest

from koembed.data import load_retrieval_set
from koembed.errors import DataError
from tests.data_files import (
    assert_data_error,
)
from tests.helpers import SHARED_DATA, require_shared


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
