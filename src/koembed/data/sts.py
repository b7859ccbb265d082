"""KorSTS-style sentence-similarity TSV: header ``genre filename year id score sentence1 sentence2``."""

from __future__ import annotations

import csv
from pathlib import Path

from koembed.data._checks import read_text, require_columns, text_field
from koembed.errors import DataError


def read_sts(path: str | Path) -> tuple[list[str], list[str], list[float]]:
    """Sentence pairs and gold scores (0-5). Read with QUOTE_NONE: KorSTS sentences contain quote marks."""
    path = Path(path)
    rows = list(csv.reader(read_text(path).split("\n"), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise DataError(path, "empty file")
    header = rows[0]
    require_columns(path, header, ["score", "sentence1", "sentence2"])
    col = {name: header.index(name) for name in ("score", "sentence1", "sentence2")}
    s1, s2, scores = [], [], []
    for line_no, fields in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) < len(header):
            raise DataError(path, f"expected {len(header)} tab-separated fields, got {len(fields)}", row=line_no)
        try:
            scores.append(float(fields[col["score"]]))
        except ValueError:
            raise DataError(path, f"not a number: {fields[col['score']]!r}", row=line_no, field="score") from None
        s1.append(text_field(path, line_no, "sentence1", fields[col["sentence1"]]))
        s2.append(text_field(path, line_no, "sentence2", fields[col["sentence2"]]))
    return s1, s2, scores
