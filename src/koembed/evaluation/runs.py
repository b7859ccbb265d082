"""What a bench writes: TREC-style run files (JSON lines) and the results document.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from koembed.data import RetrievalSet
from koembed.evaluation.runner import RetrieverResult
from koembed.files import write_jsonl


def run_filename(spec: str) -> str:
    """A file name for a retriever spec: ``dense:BAAI/bge-m3`` -> ``dense_BAAI_bge-m3.jsonl``."""
    return re.sub(r"[^0-9A-Za-z._+-]+", "_", spec).strip("_") + ".jsonl"


def write_runs(results: Sequence[RetrieverResult], qids: Sequence[str], run_dir: str | Path) -> None:
    """One JSON-lines file per retriever: ``{"qid", "docid", "rank", "score"}``, rank from 1."""
    run_dir = Path(run_dir)
    for result in results:
        path = run_dir / run_filename(result.retriever)
        write_jsonl(path, ({"qid": qid, "docid": doc, "rank": rank, "score": score}
                           for qid in qids for rank, (doc, score) in enumerate(result.hits[qid], start=1)))
        result.run = str(path)


def results_document(rs: RetrievalSet, results: Sequence[RetrieverResult]) -> dict[str, object]:
    return {"dataset": rs.summary(), "results": [r.to_json() for r in results]}
