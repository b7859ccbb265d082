"""KorSTS reader: QUOTE_NONE, gold scores, errors naming row and field."""

from __future__ import annotations

import pytest

from koembed.data.sts import read_sts
from koembed.errors import DataError
from tests.helpers import SHARED_DATA, require_shared

HEADER = "genre\tfilename\tyear\tid\tscore\tsentence1\tsentence2\n"


def test_reads_quotes_literally(tmp_path):
    path = tmp_path / "sts.tsv"
    path.write_text(HEADER + 'g\tf\t2012\t1\t4.5\t"따옴표"가 있는 문장\t문장 "둘\n', encoding="utf-8")
    s1, s2, scores = read_sts(path)
    assert s1 == ['"따옴표"가 있는 문장'] and s2 == ['문장 "둘'] and scores == [4.5]


@pytest.mark.parametrize("line, field", [("g\tf\t2012\t1\tx\ta\tb\n", "score"), ("g\tf\t2012\t1\t1.0\t \tb\n", "sentence1")])
def test_errors_name_row_and_field(tmp_path, line, field):
    path = tmp_path / "sts.tsv"
    path.write_text(HEADER + "g\tf\t2012\t0\t2.0\t가\t나\n" + line, encoding="utf-8")
    with pytest.raises(DataError) as info:
        read_sts(path)
    assert info.value.row == 3 and info.value.field == field


@pytest.mark.shared_data
def test_korsts_test_size():
    s1, s2, scores = read_sts(require_shared(SHARED_DATA / "korsts" / "sts-test.tsv"))
    assert len(s1) == len(s2) == len(scores) == 1379
    assert min(scores) >= 0 and max(scores) <= 5
