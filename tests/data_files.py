"""Writers of retrieval-set fixtures (AutoRAG, BEIR, SQuAD) in ``tmp_path``, the check that a DataError names file,
row and field, and the CLI runner of the tests/test_data_*.py files."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pandas as pd
from typer.testing import CliRunner

from koembed.errors import DataError

QRELS_HEADER = "query-id\tcorpus-id\tscore"


def write_autorag(directory: Path, qa: pd.DataFrame | dict[str, list] | None,
                  corpus: pd.DataFrame | dict[str, list] | None) -> Path:
    """``qa.parquet`` and ``corpus.parquet`` in ``directory``; ``None`` leaves that file out."""
    directory.mkdir(parents=True, exist_ok=True)
    for name, table in (("qa.parquet", qa), ("corpus.parquet", corpus)):
        if table is not None:
            frame = table if isinstance(table, pd.DataFrame) else pd.DataFrame(table)
            frame.to_parquet(directory / name, index=False)
    return directory


def basic_corpus() -> dict[str, list]:
    return {"doc_id": ["d1", "d 2", "d3"], "contents": ["첫째 문서", "둘째 문서", "셋째 문서"]}


def basic_qa(**overrides: list) -> dict[str, list]:
    qa: dict[str, list] = {"qid": ["q1", "q2"], "query": ["첫 질문", "둘째 질문"],
                           "retrieval_gt": [[["d1"]], [["d3"]]]}
    qa.update(overrides)
    return qa


def write_jsonl_lines(path: Path, lines: list[Any]) -> Path:
    """One line per item: dicts are JSON-encoded, strings are written verbatim (for broken lines)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join((line if isinstance(line, str) else json.dumps(line, ensure_ascii=False)) + "\n"
                   for line in lines)
    path.write_text(text, encoding="utf-8")
    return path


def write_qrels(path: Path, rows: list[tuple[str, str, Any]], header: str = QRELS_HEADER) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    body = "".join(f"{q}\t{d}\t{s}\n" for q, d, s in rows)
    path.write_text(f"{header}\n{body}", encoding="utf-8")
    return path


def write_beir(directory: Path, corpus: list[Any], queries: list[Any],
               qrels: list[tuple[str, str, Any]] | None, split: str = "test") -> Path:
    write_jsonl_lines(directory / "corpus.jsonl", corpus)
    write_jsonl_lines(directory / "queries.jsonl", queries)
    if qrels is not None:
        write_qrels(directory / "qrels" / f"{split}.tsv", qrels)
    return directory


def small_beir(directory: Path) -> Path:
    """A valid Korean BEIR folder: 4 passages (one without title), 3 judged queries."""
    return write_beir(
        directory,
        corpus=[{"_id": "c1", "title": "정기예금", "text": "만기 전에 해지하면 중도해지이율이 적용됩니다."},
                {"_id": "c2", "title": "여권 발급", "text": "여권은 구청 민원실에서 신청할 수 있습니다."},
                {"_id": "c 3", "text": "택배 반품은 상품 수령 후 7일 이내에 신청합니다."},
                {"_id": "c4", "title": "비밀번호", "text": "비밀번호를 잊으면 이메일 인증으로 재설정합니다."}],
        queries=[{"_id": "q1", "text": "예금을 만기 전에 해지하면 이자는?"},
                 {"_id": "q2", "text": "여권은 어디서 신청하나요?"},
                 {"_id": "q3", "text": "택배 반품 신청 기한"}],
        qrels=[("q1", "c1", 1), ("q2", "c2", 1), ("q3", "c 3", 1)],
    )


def squad_article(title: str, paragraphs: list[tuple[str, list[tuple[str, str]]]]) -> dict[str, Any]:
    """``paragraphs``: (context, [(question id, question), ...]) per paragraph."""
    return {"title": title, "paragraphs": [
        {"context": context, "qas": [{"id": qid, "question": q, "answers": []} for qid, q in qas]}
        for context, qas in paragraphs]}


def write_squad(path: Path, articles: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps({"version": "test", "data": articles}, ensure_ascii=False), encoding="utf-8")
    return path


def numbered_articles(n: int) -> list[dict[str, Any]]:
    """``n`` articles ``A00..``, each with two paragraphs and three questions (unique texts)."""
    return [squad_article(f"A{i:02d}", [(f"article {i} paragraph 0", [(f"a{i}-0", f"question {i} zero"),
                                                                     (f"a{i}-1", f"question {i} one")]),
                                        (f"article {i} paragraph 1", [(f"a{i}-2", f"question {i} two")])])
            for i in range(n)]


def good_corpus() -> list[dict]:
    return [{"_id": "d1", "text": "a"}, {"_id": "d2", "text": "b"}]


def good_queries() -> list[dict]:
    return [{"_id": "q1", "text": "x"}, {"_id": "q2", "text": "y"}]


def assert_data_error(exc: DataError, file: str, row: int | None = None, field: str | None = None) -> None:
    """The error (attributes and message) names the file, the 1-based row and the field."""
    message = str(exc)
    assert Path(exc.path).name == file or exc.path.replace(os.sep, "/").endswith(file), exc.path
    assert file in message
    assert exc.row == row, message
    assert exc.field == field, message
    if row is not None:
        assert f"row {row}" in message
    else:
        assert ", row " not in message
    if field is not None:
        assert f"field '{field}'" in message


def cli(*args: str):
    from koembed.cli import app

    return CliRunner().invoke(app, list(args))


def all_output(result) -> str:
    """stdout and stderr (click >= 8.2 mixes both into ``output``), with rich's line wrapping undone."""
    text = result.output
    try:
        stderr = result.stderr
    except (ValueError, AttributeError):
        stderr = ""
    if stderr and stderr not in text:
        text += stderr
    return text.replace("\n", "")


DEEP = "[" * 100_000 + "]" * 100_000
