"""BEIR/MTEB layout (MIRACL-ko uses it): ``corpus.jsonl``, ``queries.jsonl``, ``qrels/<split>.tsv``."""

from __future__ import annotations

import csv
from pathlib import Path

from koembed.data._checks import (
    add_unique,
    finite_number,
    id_field,
    iter_jsonl,
    read_text,
    require_file,
    require_judged,
    text_field,
)
from koembed.data.retrieval_set import RetrievalSet
from koembed.errors import DataError


def looks_like_beir(path: Path) -> bool:
    return path.is_dir() and (path / "corpus.jsonl").exists()


def read_beir(directory: str | Path, split: str = "test", name: str | None = None) -> RetrievalSet:
    """Read a BEIR folder. Title and text are joined with a space, as MTEB does; qrels with score <= 0
    are not relevant; queries without a relevant doc are not evaluated."""
    directory = Path(directory)
    corpus_path = require_file(directory / "corpus.jsonl", "corpus.jsonl")
    queries_path = require_file(directory / "queries.jsonl", "queries.jsonl")
    qrels_path = require_file(directory / "qrels" / f"{split}.tsv", f"qrels/{split}.tsv")

    corpus: dict[str, str] = {}
    titles: dict[str, str] = {}
    for line_no, obj in iter_jsonl(corpus_path):
        if "_id" not in obj:
            raise DataError(corpus_path, "missing field", row=line_no, field="_id")
        doc_id = id_field(corpus_path, line_no, "_id", obj["_id"])
        title = obj.get("title") or ""
        if not isinstance(title, str):
            raise DataError(corpus_path, "expected text", row=line_no, field="title")
        text = text_field(corpus_path, line_no, "text", obj.get("text"))
        add_unique(corpus_path, line_no, "_id", doc_id, f"{title} {text}".strip(), corpus)
        if title:
            titles[doc_id] = title

    all_queries: dict[str, str] = {}
    for line_no, obj in iter_jsonl(queries_path):
        qid = id_field(queries_path, line_no, "_id", obj.get("_id"))
        add_unique(queries_path, line_no, "_id", qid, text_field(queries_path, line_no, "text", obj.get("text")),
                   all_queries)

    relevant: dict[str, list[list[str]]] = {}
    reader = csv.reader(read_text(qrels_path).split("\n"), delimiter="\t", quoting=csv.QUOTE_NONE)
    header = next(reader, None)
    if header is None or [h.strip() for h in header[:3]] != ["query-id", "corpus-id", "score"]:
        raise DataError(qrels_path, "expected the header 'query-id<TAB>corpus-id<TAB>score'", row=1)
    for line_no, fields in enumerate(reader, start=2):
        if not fields or not any(f.strip() for f in fields):
            continue
        if len(fields) < 3:
            raise DataError(qrels_path, f"expected 3 tab-separated fields, got {len(fields)}", row=line_no)
        qid, doc_id, score_text = fields[0], fields[1], fields[2]
        score = finite_number(qrels_path, line_no, "score", score_text)
        if qid not in all_queries:
            raise DataError(qrels_path, f"unknown query id {qid!r} (not in queries.jsonl)", row=line_no,
                            field="query-id")
        if doc_id not in corpus:
            raise DataError(qrels_path, f"unknown doc id {doc_id!r} (not in corpus.jsonl)", row=line_no,
                            field="corpus-id")
        if score > 0:
            groups = relevant.setdefault(qid, [])
            if [doc_id] not in groups:
                groups.append([doc_id])
    require_judged(qrels_path, relevant)
    queries = {qid: text for qid, text in all_queries.items() if qid in relevant}
    return RetrievalSet(name=name or directory.name, queries=queries, corpus=corpus, relevant=relevant, titles=titles)
