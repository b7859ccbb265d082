"""Passages to index: ``id`` + ``text`` rows from JSON lines or parquet, or the corpus of any retrieval set.

An index needs only passages, not queries or judgments, so besides every retrieval-set layout koembed reads
(:func:`koembed.data.load_retrieval_set`), a plain ``.jsonl`` or ``.parquet`` file with two columns is enough:
``id`` (text, or a number turned into text) and ``text``. Problems (missing column, empty text, duplicate id)
are :class:`~koembed.errors.DataError` naming the file, the 1-based row and the field.
"""

from __future__ import annotations

from pathlib import Path


from koembed.data._checks import add_unique, read_records, text_field
from koembed.errors import DataError

DOC_SUFFIXES = (".jsonl", ".parquet", ".csv")


def read_documents(path: str | Path) -> dict[str, str]:
    """``{id: text}`` from a ``.jsonl``, ``.parquet`` or ``.csv`` file with ``id`` and ``text`` columns, in file order."""
    path = Path(path)
    rows = read_records(path, ["id", "text"], "passages")
    docs: dict[str, str] = {}
    for row, record in rows:
        doc_id = text_field(path, row, "id", record.get("id"))
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
    from koembed.data.load import load_retrieval_set

    return load_retrieval_set(source).corpus
