"""Passages to index: ``id`` + ``text`` rows from JSON lines or parquet, or the corpus of any retrieval set.

An index needs only passages, not queries or judgments, so besides every retrieval-set layout koembed reads
(:func:`koembed.data.load_retrieval_set`), a plain ``.jsonl`` or ``.parquet`` file with two columns is enough:
``id`` (text, or a number turned into text) and ``text``. Problems (missing column, empty text, duplicate id)
are :class:`~koembed.errors.DataError` naming the file, the 1-based row and the field.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from koembed.data._checks import add_unique, id_field, read_records, text_field
from koembed.data.load import load_retrieval_set
from koembed.errors import DataError

DOC_SUFFIXES = (".jsonl", ".parquet", ".csv")


def read_documents(path: str | Path) -> dict[str, str]:
    """``{id: text}`` from a ``.jsonl``, ``.parquet`` or ``.csv`` file with ``id`` and ``text`` columns, in file
    order."""
    path = Path(path)
    rows = read_records(path, ["id", "text"], "passages")
    docs: dict[str, str] = {}
    for row, record in rows:
        doc_id = id_field(path, row, "id", record.get("id"))
        add_unique(path, row, "id", doc_id, text_field(path, row, "text", record.get("text")), docs)
    if not docs:
        raise DataError(path, "no passages")
    return docs


def load_documents(source: str | Path | None) -> dict[str, str]:
    """Passages from ``source``: a ``.jsonl``/``.parquet`` id/text file, or any retrieval set (its corpus).

    ``None`` or ``"sample"`` is the bundled Korean sample's corpus.
    """
    if source is not None and Path(source).suffix.lower() in DOC_SUFFIXES:
        return read_documents(source)
    return load_retrieval_set(source).corpus


def validate_documents(doc_ids: Sequence[str], texts: Sequence[str], source: str = "documents"
                       ) -> tuple[list[str], list[str]]:
    """Passages given in memory, checked as the file readers check rows: as many ids as texts, at least one,
    every id and text a non-empty string, ids unique. Problems are a :class:`DataError` naming ``source``, the
    1-based row and the field."""
    doc_ids, texts = list(doc_ids), list(texts)
    if len(doc_ids) != len(texts):
        raise DataError(source, f"{len(doc_ids)} ids but {len(texts)} texts")
    if not doc_ids:
        raise DataError(source, "no passages")
    seen: dict[str, str] = {}
    for row, (doc_id, text) in enumerate(zip(doc_ids, texts), start=1):
        add_unique(source, row, "id", id_field(source, row, "id", doc_id), text_field(source, row, "text", text),
                   seen)
    return list(seen), list(seen.values())
