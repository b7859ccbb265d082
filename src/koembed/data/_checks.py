"""Row-level checks shared by the readers, so every format reports problems the same way."""

from __future__ import annotations

import hashlib
import json
import math
import numbers
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from koembed.errors import DataError


def require_file(path: Path, what: str) -> Path:
    if not path.is_file():
        raise DataError(path, f"missing {what} file")
    return path


def require_columns(path: Path, columns: list[str], required: list[str]) -> None:
    missing = [c for c in required if c not in columns]
    if missing:
        raise DataError(
            path, f"missing column(s) {', '.join(repr(m) for m in missing)}; found {', '.join(map(repr, columns))}",
            field=missing[0],
        )


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def _unicode(path: str | Path, row: int, name: str, value: str) -> str:
    """``value`` if it can be written as UTF-8: JSON's ``\\ud800`` escapes give lone surrogates, which cannot."""
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise DataError(path, f"not valid Unicode text (a lone surrogate at character {exc.start})", row=row,
                        field=name) from None
    return value


def id_field(path: str | Path, row: int, name: str, value: Any) -> str:
    """A non-empty id: text, or an integer turned into text (ids often are numbers, in parquet and JSON)."""
    if _missing(value):
        raise DataError(path, "value is missing", row=row, field=name)
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        value = str(int(value))
    if not isinstance(value, str):
        raise DataError(path, f"expected an id (text or an integer), got {_type_name(value)}", row=row, field=name)
    if not value.strip():
        raise DataError(path, "empty id", row=row, field=name)
    return _unicode(path, row, name, value)


def text_field(path: str | Path, row: int, name: str, value: Any) -> str:
    """Non-empty text: a string with at least one visible character. A number is a wrong type here, not text:
    it usually means a shifted or mislabelled column."""
    if _missing(value):
        raise DataError(path, "value is missing", row=row, field=name)
    if not isinstance(value, str):
        raise DataError(path, f"expected text, got {_type_name(value)}", row=row, field=name)
    if not visible_text(value):
        raise DataError(path, "empty text (no visible character)", row=row, field=name)
    return _unicode(path, row, name, value)


def visible_text(text: str) -> bool:
    """Whether ``text`` has a visible character: not empty, blank, or only NULs / control / zero-width characters
    (what every reader, and the server, refuses as an empty text)."""
    return any(ch.isprintable() and not ch.isspace() for ch in text)


def _type_name(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, numbers.Number):
        return f"a number ({value!r})"
    names: dict[type, str] = {dict: "an object", list: "a list"}
    return names.get(type(value), type(value).__name__)


def add_unique(path: str | Path, row: int, name: str, key: str, value: str, into: dict[str, str]) -> None:
    if key in into:
        raise DataError(path, f"duplicate id {key!r}", row=row, field=name)
    into[key] = value


def read_text(path: Path) -> str:
    """Whole file as text: UTF-8 (a BOM is allowed); anything else is a DataError, not a traceback."""
    try:
        return path.read_bytes().decode("utf-8-sig")
    except FileNotFoundError as exc:
        raise DataError(path, "no such file") from exc
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(path, f"not UTF-8 text (byte {exc.start}); save the file as UTF-8", row=line) from exc


def require_judged(path: Path, relevant: dict[str, list[list[str]]]) -> None:
    """A retrieval set with no query that has a relevant document cannot be evaluated."""
    if not relevant:
        raise DataError(path, "no query has a relevant document, so nothing can be evaluated")


def load_json(path: Path) -> Any:
    """A whole ``.json`` file; bad UTF-8, bad JSON, or nesting too deep for the parser is a DataError naming it."""
    text = read_text(path)
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise DataError(path, f"not valid JSON ({exc.msg} at line {exc.lineno}, column {exc.colno})") from exc
    except RecursionError:
        raise DataError(path, "JSON nested too deeply to read") from None


def finite_number(path: str | Path, row: int, name: str, text: str) -> float:
    """A number written as text; NaN and infinity are refused (a judgment or weight must compare)."""
    try:
        value = float(text)
    except ValueError:
        raise DataError(path, f"not a number: {text!r}", row=row, field=name) from None
    if not math.isfinite(value):
        raise DataError(path, f"not a finite number: {text!r}", row=row, field=name)
    return value


def iter_jsonl(path: Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """(line number, object) for each non-blank line; bad JSON, bad UTF-8 or a non-object names the line.

    Streams the file: a 1M-passage corpus is never held as one string plus a list of lines (which left
    ~0.8 GB of freed-but-fragmented heap behind). Lines end at b"\n" only (JSON strings may hold U+2028).
    """
    try:
        handle = path.open("rb")
    except FileNotFoundError as exc:
        raise DataError(path, "no such file") from exc
    offset = 0
    with handle:
        for line_no, raw in enumerate(handle, start=1):
            start = 3 if line_no == 1 and raw.startswith(b"\xef\xbb\xbf") else 0  # a UTF-8 BOM
            try:
                line = raw[start:].decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(path, f"not UTF-8 text (byte {offset + start + exc.start}); save the file as UTF-8",
                                row=line_no) from exc
            offset += len(raw)
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(path, f"not valid JSON ({exc.msg})", row=line_no) from exc
            except RecursionError:
                raise DataError(path, "JSON nested too deeply to read", row=line_no) from None
            if not isinstance(obj, dict):
                raise DataError(path, "expected a JSON object", row=line_no)
            yield line_no, obj


def read_records(path: Path, required: list[str], what: str) -> list[tuple[int, dict[str, Any]]]:
    """(1-based row, record) from a ``.jsonl``, ``.parquet`` or ``.csv`` table that has the ``required`` columns.

    ``what`` names the content in errors ("pairs", "passages"). CSV cells are read as text, never as NaN.
    """
    import pandas as pd

    if not path.is_file():
        raise DataError(path, "no such file")
    suffix = path.suffix.lower()
    if suffix == ".jsonl":
        rows = list(iter_jsonl(path))
        columns = sorted({key for _, obj in rows for key in obj})
    elif suffix in (".parquet", ".csv"):
        try:
            if suffix == ".parquet":
                frame = pd.read_parquet(path)
            else:  # every cell as text: a numeric-looking query stays text
                frame = pd.read_csv(path, keep_default_na=False, dtype=str)
        except Exception as exc:  # pyarrow and pandas raise several types for a corrupt file
            raise DataError(path, f"not a readable {suffix[1:]} file ({exc})") from exc
        columns = [str(c) for c in frame.columns]
        rows = list(enumerate(frame.to_dict("records"), start=1))
    else:
        raise DataError(path, f"expected a .jsonl, .parquet or .csv file of {what} (columns {', '.join(required)})")
    require_columns(path, columns, required)
    return rows


def sha256_order(keys: Iterable[str]) -> list[str]:
    """Distinct ``keys`` ordered by the SHA-256 of their UTF-8 bytes: a fixed pseudo-random order for splits that
    depends only on the keys themselves, not on file order, Python's version or a seed."""
    return sorted(set(keys), key=lambda k: hashlib.sha256(k.encode("utf-8")).hexdigest())
