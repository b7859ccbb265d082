"""Sentence pairs with labels: similarity (KorSTS TSV, KLUE STS JSON) and entailment (KorNLI TSV, KLUE NLI JSON).

Readers return the pairs as they are; :func:`sts_pairs` and :func:`nli_pairs` turn them into training pairs
(similar sentences, premise -> entailed hypothesis). KorSTS and KorNLI are read with ``QUOTE_NONE``: their
sentences contain quote marks that are text, not CSV quoting.
"""

from __future__ import annotations

import csv
from pathlib import Path

from koembed.data._checks import load_json, read_text, require_columns, text_field
from koembed.data.pairs import Pair
from koembed.errors import DataError

NLI_LABELS = ("entailment", "neutral", "contradiction")


def _tsv_rows(path: Path, required: list[str]) -> list[tuple[int, dict[str, str]]]:
    """(line number, {column: value}) of a headed TSV read with QUOTE_NONE; blank lines skipped."""
    rows = list(csv.reader(read_text(path).split("\n"), delimiter="\t", quoting=csv.QUOTE_NONE))
    if not rows:
        raise DataError(path, "empty file")
    header = rows[0]
    require_columns(path, header, required)
    out = []
    for line_no, fields in enumerate(rows[1:], start=2):
        if not any(f.strip() for f in fields):
            continue
        if len(fields) < len(header):
            raise DataError(path, f"expected {len(header)} tab-separated fields, got {len(fields)}", row=line_no)
        out.append((line_no, dict(zip(header, fields))))
    return out


def _json_rows(path: Path) -> list[tuple[int, dict]]:
    items = load_json(path)
    if not isinstance(items, list):
        raise DataError(path, "expected a JSON list of objects")
    for row, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise DataError(path, f"expected a JSON object, got {type(item).__name__}", row=row)
    return list(enumerate(items, start=1))


def _score(path: Path, row: int, name: str, value: object) -> float:
    try:
        return float(value)  # type: ignore[arg-type]  # any cell: float() refusing it is the check
    except (TypeError, ValueError):
        raise DataError(path, f"not a number: {value!r}", row=row, field=name) from None


def read_sts(path: str | Path) -> tuple[list[str], list[str], list[float]]:
    """Sentence pairs and gold scores (0-5): a KorSTS TSV (``score``, ``sentence1``, ``sentence2``) or a KLUE STS
    JSON list (``sentence1``, ``sentence2``, ``labels.label``)."""
    path = Path(path)
    s1, s2, scores = [], [], []
    if path.suffix == ".json":
        for row, item in _json_rows(path):
            labels = item.get("labels")
            if not isinstance(labels, dict):
                raise DataError(path, "expected an object with 'label'", row=row, field="labels")
            scores.append(_score(path, row, "labels.label", labels.get("label")))
            s1.append(text_field(path, row, "sentence1", item.get("sentence1")))
            s2.append(text_field(path, row, "sentence2", item.get("sentence2")))
        return s1, s2, scores
    for line_no, fields in _tsv_rows(path, ["score", "sentence1", "sentence2"]):
        scores.append(_score(path, line_no, "score", fields["score"]))
        s1.append(text_field(path, line_no, "sentence1", fields["sentence1"]))
        s2.append(text_field(path, line_no, "sentence2", fields["sentence2"]))
    return s1, s2, scores


def read_nli(path: str | Path) -> list[tuple[str, str, str]]:
    """(premise, hypothesis, label) triples: a KorNLI TSV (``sentence1``, ``sentence2``, ``gold_label``) or a
    KLUE NLI JSON list (``premise``, ``hypothesis``, ``gold_label``). Labels must be entailment, neutral or
    contradiction."""
    path = Path(path)
    if path.suffix == ".json":
        rows = [(row, item.get("premise"), item.get("hypothesis"), item.get("gold_label"), ("premise", "hypothesis"))
                for row, item in _json_rows(path)]
    else:
        rows = [(row, f["sentence1"], f["sentence2"], f["gold_label"], ("sentence1", "sentence2"))
                for row, f in _tsv_rows(path, ["sentence1", "sentence2", "gold_label"])]
    out = []
    for row, premise, hypothesis, label, names in rows:
        if label not in NLI_LABELS:
            raise DataError(path, f"label {label!r} is not one of {', '.join(NLI_LABELS)}", row=row,
                            field="gold_label")
        out.append((text_field(path, row, names[0], premise), text_field(path, row, names[1], hypothesis), label))
    return out


def sts_pairs(path: str | Path, min_score: float) -> list[Pair]:
    """Training pairs from a similarity set: the sentence pairs scored at least ``min_score`` (0-5)."""
    return [Pair(a, b) for a, b, s in zip(*read_sts(path)) if s >= min_score]


def nli_pairs(path: str | Path) -> list[Pair]:
    """Training pairs from an entailment set: premise -> each hypothesis it entails."""
    return [Pair(p, h) for p, h, label in read_nli(path) if label == "entailment"]
