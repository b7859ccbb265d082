"""AutoRAG's layout: ``qa.parquet`` (qid, query, retrieval_gt) and ``corpus.parquet`` (doc_id, contents)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.data._checks import add_unique, id_field, require_columns, require_file, require_judged, text_field
from koembed.data.retrieval_set import RetrievalSet
from koembed.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


def looks_like_autorag(path: Path) -> bool:
    return path.is_dir() and (path / "qa.parquet").exists()


def cast_retrieval_gt(value: Any) -> list[list[str]]:
    """Normalise ``retrieval_gt`` as AutoRAG does: a string is one group of one id, a flat list is
    one group (any of its ids counts), a list of lists is already groups. Parquet gives numpy arrays;
    integer ids are read as text, matching integer ``doc_id`` values."""
    import numpy as np

    def as_list(v: Any) -> Any:
        return v.tolist() if isinstance(v, np.ndarray) else v

    def as_id(v: Any) -> str | None:
        if isinstance(v, str):
            return v
        if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
            return str(v)
        return None

    def all_ids(values: Any) -> list[str] | None:
        ids = [as_id(v) for v in values]
        return None if None in ids else [i for i in ids if i is not None]

    value = as_list(value)
    if (one := as_id(value)) is not None:
        return [[one]]
    if isinstance(value, (list, tuple)):
        items = [as_list(v) for v in value]
        if (flat := all_ids(items)) is not None:
            return [flat] if items else []
        groups = [all_ids(v) if isinstance(v, (list, tuple)) else None for v in items]
        if all(g is not None for g in groups):
            return [g for g in groups if g is not None]
    raise TypeError(f"expected a doc id, a list of doc ids or a list of lists of doc ids, got {value!r}")


def _read_parquet(path: Path) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise DataError(path, f"not a readable parquet file ({exc})") from exc


def read_autorag(directory: str | Path, name: str | None = None) -> RetrievalSet:
    """Read an AutoRAG dataset folder. Doc ids may contain spaces; ``generation_gt`` is not needed."""
    directory = Path(directory)
    qa_path = require_file(directory / "qa.parquet", "qa.parquet")
    corpus_path = require_file(directory / "corpus.parquet", "corpus.parquet")

    corpus_df = _read_parquet(corpus_path)
    require_columns(corpus_path, list(corpus_df.columns), ["doc_id", "contents"])
    corpus: dict[str, str] = {}
    for row, (doc_id, contents) in enumerate(zip(corpus_df["doc_id"], corpus_df["contents"]), start=1):
        doc_id = id_field(corpus_path, row, "doc_id", doc_id)
        add_unique(corpus_path, row, "doc_id", doc_id, text_field(corpus_path, row, "contents", contents), corpus)

    qa_df = _read_parquet(qa_path)
    require_columns(qa_path, list(qa_df.columns), ["qid", "query", "retrieval_gt"])
    queries: dict[str, str] = {}
    relevant: dict[str, list[list[str]]] = {}
    for row, (qid, query, gt) in enumerate(zip(qa_df["qid"], qa_df["query"], qa_df["retrieval_gt"]), start=1):
        qid = id_field(qa_path, row, "qid", qid)
        add_unique(qa_path, row, "qid", qid, text_field(qa_path, row, "query", query), queries)
        try:
            groups = cast_retrieval_gt(gt)
        except TypeError as exc:
            raise DataError(qa_path, str(exc), row=row, field="retrieval_gt") from exc
        for group in groups:
            for doc_id in group:
                if doc_id not in corpus:
                    raise DataError(qa_path, f"unknown doc id {doc_id!r} (not in corpus.parquet)", row=row,
                                    field="retrieval_gt")
        groups = [g for g in groups if g]
        if groups:
            relevant[qid] = groups
    require_judged(qa_path, relevant)
    queries = {qid: text for qid, text in queries.items() if qid in relevant}
    return RetrievalSet(name=name or directory.name, queries=queries, corpus=corpus, relevant=relevant)
