"""Write the golden indexes of tests/golden/: tiny indexes of every index format version koembed reads.

Run from the repository root (it replaces the folders it writes)::

    PYTHONPATH=src python tests/golden/make_golden.py

Each index holds the dozen Korean sentences of :data:`SENTENCES` (written for these fixtures, no outside data),
embedded by the bundled ``static-ko`` model in a flat FAISS index with the default lexical fields
(``bm25-phrase``). tests/test_golden_indexes.py opens every one and compares its BM25 hits with an in-memory
:class:`koembed.lexical.bm25.BM25Retriever` on the same sentences. docs/INDEX_FORMAT.md describes the files.

- ``v2-mecab``: format 2, as this koembed writes it, with the default analyzer (MeCab-ko);
- ``v2-kiwi-userdict``: format 2, Kiwi with a user dictionary (``user_dict.txt`` copied into the index);
- ``v1-mecab``: format 1 as koembed wrote it from the analyzer change up to the real format version (the same
  files as ``v2-mecab``, ``format_version`` 1);
- ``v1-kiwi``: format 1 as koembed wrote it before analyzers were recorded: Kiwi, ``bm25`` without ``analyzer``,
  ``analyzer_version`` or ``user_dict`` but with ``kiwipiepy_version`` and the old tokenizer label.

The format-1 indexes are written by this koembed and their manifests rewritten as the older koembed wrote them
(:func:`as_format_1`): the other files of those versions were the same (docs/INDEX_FORMAT.md, "Format versions").
A golden index is never rewritten to follow a later format: a new format version adds a new golden index.
"""

from __future__ import annotations

import json
import shutil
import sys
from importlib.metadata import version
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent

SENTENCES = [
    ("g01", "서울의 봄은 벚꽃이 피는 사월에 가장 아름답다."),
    ("g02", "부산 해운대 해수욕장은 여름마다 피서객으로 붐빈다."),
    ("g03", "김치찌개는 잘 익은 김치와 돼지고기로 끓이는 찌개이다."),
    ("g04", "한글은 세종대왕이 백성을 위해 만든 글자이다."),
    ("g05", "제주도에는 한라산과 오름이 많아 등산객이 자주 찾는다."),
    ("g06", "지하철 2호선은 서울 시내를 순환하는 노선이다."),
    ("g07", "가을이 되면 설악산의 단풍을 보러 사람들이 모인다."),
    ("g08", "비빔밥에는 여러 가지 나물과 고추장이 들어간다."),
    ("g09", "경주에는 신라 시대의 유적과 불국사가 남아 있다."),
    ("g10", "코엠베드는 한국어 문서 검색을 위한 도구이다."),
    ("g11", "도서관에서 빌린 책은 이 주 안에 반납해야 한다."),
    ("g12", "겨울에는 강원도 스키장에 눈이 많이 내린다."),
]
# One word Kiwi would otherwise split (코엠베드: this project's name, read as one proper noun).
USER_DICT = "# golden fixture dictionary\n코엠베드 NNP\n"
# Queries tests/test_golden_indexes.py runs (each matches at least one sentence).
QUERIES = ["서울 지하철", "김치찌개 끓이는 법", "제주도 한라산 등산", "코엠베드 검색 도구", "가을 단풍 구경",
           "신라 유적"]
INDEXES = ("v2-mecab", "v2-kiwi-userdict", "v1-mecab", "v1-kiwi")


def build(folder: Path, analyzer: str, user_dict: str | None = None) -> None:
    from koembed.index import IndexParams, build_index
    from koembed.lexical import DEFAULT, UserDict
    from koembed.models import EncodeOptions

    if folder.exists():
        shutil.rmtree(folder)
    params = IndexParams(lexical=DEFAULT.with_analyzer(analyzer),
                         user_dict=UserDict.parse(user_dict) if user_dict is not None else None)
    ids, texts = [i for i, _ in SENTENCES], [t for _, t in SENTENCES]
    build_index("static-ko", ids, texts, folder, params=params, options=EncodeOptions(show_progress=False))
    (folder / ".lock").unlink(missing_ok=True)  # the build's lock file: not part of the format


def edit(folder: Path, change: Any) -> None:
    path = folder / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    change(manifest)
    path.write_text(json.dumps(manifest, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")


def as_format_1(manifest: dict[str, Any], before_analyzers: bool) -> None:
    """The manifest as koembed wrote it with ``format_version`` 1: from the analyzer change on, the same fields;
    before it (``before_analyzers``), a Kiwi-only ``bm25`` record (build.bm25_record of commit d1730e7^)."""
    manifest["format_version"] = 1
    if before_analyzers:
        bm25 = manifest["bm25"]
        assert bm25["analyzer"] == "kiwi" and "user_dict" not in bm25
        manifest["bm25"] = {"tokenizer": "kiwi content morphemes (koembed.lexical.KiwiTokenizer)",
                            **{k: bm25[k] for k in ("weights", "normalization", "k1", "b")},
                            "kiwipiepy_version": version("kiwipiepy")}


def main() -> None:
    build(HERE / "v2-mecab", "mecab")
    build(HERE / "v2-kiwi-userdict", "kiwi", USER_DICT)
    build(HERE / "v1-mecab", "mecab")
    edit(HERE / "v1-mecab", lambda m: as_format_1(m, before_analyzers=False))
    build(HERE / "v1-kiwi", "kiwi")
    edit(HERE / "v1-kiwi", lambda m: as_format_1(m, before_analyzers=True))
    for name in INDEXES:
        print(name, sum(p.stat().st_size for p in (HERE / name).rglob("*") if p.is_file()), "bytes", file=sys.stderr)


if __name__ == "__main__":
    main()
