"""Query-positives JSON (the MS MARCO-ko layout): ``[{"id", "query", "positive": [passage, ...]}, ...]``.

As a retrieval set: the distinct positive passages of all queries are the corpus (doc id ``p<n>`` in
order of first appearance), and a query's positives form one group (any of them answers it).
The same layout is a training source of (query, positive) pairs.

``split`` ``train`` / ``test`` keeps one half of the queries, fixed by the SHA-256 of their ids (the order does
not depend on the file's order, Python's version or a seed), over the same corpus of all positives: a tuning set
and a held-out set with the same distractors, as BEIR's dev and test qrels share one corpus.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from koembed.data._checks import id_field, load_json, require_judged, sha256_order, text_field
from koembed.data.retrieval_set import RetrievalSet
from koembed.errors import DataError


def looks_like_query_positives(path: Path) -> bool:
    """A .json file whose first non-space character opens a list (SQuAD files open an object)."""
    if not (path.is_file() and path.suffix == ".json"):
        return False
    with path.open("rb") as handle:
        head = handle.read(64).lstrip(b"\xef\xbb\xbf \t\r\n")
    return head.startswith(b"[")


Split = Literal["all", "train", "test"]


def half_of(ids: list[str], split: Split) -> set[str]:
    """The ``train`` or ``test`` half of ``ids`` (ordered by SHA-256: the first half trains), or all of them."""
    if split == "all":
        return set(ids)
    ordered = sha256_order(ids)
    half = len(ordered) // 2
    return set(ordered[:half] if split == "train" else ordered[half:])


def read_query_positives(path: str | Path, split: Split = "all", name: str | None = None) -> RetrievalSet:
    path = Path(path)
    if split not in ("all", "train", "test"):
        raise DataError(path, f"unknown split {split!r} for a query-positives file: use all, train or test",
                        field="split")
    items = load_json(path)
    if not isinstance(items, list):
        raise DataError(path, "expected a JSON list of {id, query, positive} objects")
    corpus: dict[str, str] = {}
    by_text: dict[str, str] = {}
    queries: dict[str, str] = {}
    relevant: dict[str, list[list[str]]] = {}
    for row, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            raise DataError(path, f"expected a JSON object, got {type(item).__name__}", row=row)
        qid = id_field(path, row, "id", item.get("id"))
        if qid in queries:
            raise DataError(path, f"duplicate id {qid!r}", row=row, field="id")
        queries[qid] = text_field(path, row, "query", item.get("query"))
        positives = item.get("positive")
        if isinstance(positives, str):
            positives = [positives]
        if not isinstance(positives, list) or not positives:
            raise DataError(path, "expected a non-empty list of passages", row=row, field="positive")
        group = []
        for passage in positives:
            passage = text_field(path, row, "positive", passage)
            doc_id = by_text.setdefault(passage, f"p{len(by_text)}")
            corpus.setdefault(doc_id, passage)
            if doc_id not in group:
                group.append(doc_id)
        relevant[qid] = [group]
    require_judged(path, relevant)
    kept = half_of(list(queries), split)
    queries = {qid: text for qid, text in queries.items() if qid in kept}
    relevant = {qid: groups for qid, groups in relevant.items() if qid in kept}
    default_name = path.stem + ("" if split == "all" else f"-{split}")
    return RetrievalSet(name=name or default_name, queries=queries, corpus=corpus, relevant=relevant)
