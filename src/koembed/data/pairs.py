"""Training examples: (query, positive[, negatives]) from every source koembed trains on.

Sources: pair/triplet files (jsonl, parquet or csv with ``query``, ``positive`` and an optional
``negatives`` list), SQuAD/KorQuAD (question -> its paragraph, by article split), query-positives JSON
(MS MARCO-ko: one pair per positive), and a retrieval set's judgments in general.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from koembed.data._checks import read_records, text_field
from koembed.data.retrieval_set import RetrievalSet
from koembed.errors import DataError
from koembed.files import write_jsonl


@dataclass(frozen=True)
class Pair:
    query: str
    positive: str
    negatives: tuple[str, ...] = field(default=())


def pairs_from_retrieval_set(rs: RetrievalSet) -> list[Pair]:
    """One pair per (query, relevant passage), in query order."""
    return [Pair(rs.queries[qid], rs.corpus[doc]) for qid in rs.query_ids for doc in sorted(rs.relevant_ids(qid))]


def _negatives(path: Path, row: int, value) -> tuple[str, ...]:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ()
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, str):  # csv: a JSON list in a cell
        try:
            value = json.loads(value)
        except json.JSONDecodeError as exc:
            raise DataError(path, "expected a JSON list of passages", row=row, field="negatives") from exc
    if not isinstance(value, list):
        raise DataError(path, f"expected a list of passages, got {type(value).__name__}", row=row, field="negatives")
    return tuple(text_field(path, row, "negatives", v) for v in value)


def read_pairs(path: str | Path) -> list[Pair]:
    """Read a pair/triplet file: ``.jsonl``, ``.parquet`` or ``.csv`` with columns query, positive[, negatives]."""
    path = Path(path)
    rows = read_records(path, ["query", "positive"], "pairs")
    return [Pair(text_field(path, row, "query", rec.get("query")),
                 text_field(path, row, "positive", rec.get("positive")),
                 _negatives(path, row, rec.get("negatives"))) for row, rec in rows]


def write_pairs(path: str | Path, pairs: Sequence[Pair]) -> None:
    """Write pairs as a ``.jsonl`` pairs source (query, positive, negatives), atomically."""
    write_jsonl(path, ({"query": p.query, "positive": p.positive, "negatives": list(p.negatives)} for p in pairs))
