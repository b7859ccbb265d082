"""An index's analysis (koembed.index.analysis): the analyzer and user dictionary chosen at build are recorded, used
by every later add, search and serve, shown by index info; another analyzer or dictionary is refused naming both,
a tampered copy is refused, an index written before analyzers were recorded reads as Kiwi, and a lexical search
imports no torch, transformers or sentence-transformers."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from koembed.cli import app
from koembed.index import IndexParams, QdrantTarget, build_index, load_index
from koembed.lexical import PRESETS, BM25Retriever, UserDict, get_analyzer
from tests.helpers import QUIET

WORD, A, B = "토스증권", "토스", "증권"  # a company name both analyzers split without a user dictionary
DOCS = {"d1": f"{WORD}는 문서를 불러와 검색 파이프라인을 만드는 오픈소스 도구입니다. 설치한 뒤 예제를 따라 하면 됩니다.",
        "d2": f"{A} {B}: 안데스 산맥의 {A} 개체 수를 지역별로 정리한 {B}를 설치 지역별로 공개합니다.",
        "d3": f"도서관 {B} 카드와 {A} 사진",
        "d4": "전세 보증금을 돌려받지 못하면 임차권등기명령을 신청할 수 있습니다."}
QUERY = f"{WORD} 설치"
runner = CliRunner()


def _docs_file(folder: Path, docs: dict[str, str]) -> Path:
    path = folder / "docs.jsonl"
    path.write_text("".join(json.dumps({"id": k, "text": v}, ensure_ascii=False) + "\n" for k, v in docs.items()),
                    encoding="utf-8")
    return path


def _cli(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def _top(index: Path, query: str, *extra: str) -> list[str]:
    result = _cli("search", query, "--index", index, "--json", "-k", "3", *extra)
    assert result.exit_code == 0, result.output
    return [json.loads(line)["docid"] for line in result.output.splitlines()]


@pytest.fixture(scope="module")
def dict_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("dict") / "words.txt"
    path.write_text(f"# our products\n{WORD} NNP\n", encoding="utf-8")
    return path


@pytest.fixture(scope="module")
def with_dict(tmp_path_factory, dict_file) -> Path:
    folder = tmp_path_factory.mktemp("with-dict")
    out = folder / "idx"
    result = _cli("index", "build", "--model", "static-ko", "--corpus", _docs_file(folder, DOCS), "--out", out,
                  "--user-dict", dict_file, "-q")
    assert result.exit_code == 0, result.output
    return out


def test_the_user_dictionary_is_copied_recorded_and_finds_the_compound_at_rank_1(with_dict, dict_file, tmp_path):
    manifest = json.loads((with_dict / "manifest.json").read_text(encoding="utf-8"))
    ud = UserDict.read(dict_file)
    assert manifest["bm25"]["analyzer"] == "mecab"
    assert manifest["bm25"]["user_dict"] == {"file": "user_dict.txt", "sha256": ud.sha256, "entries": 1}
    assert (with_dict / "user_dict.txt").read_text(encoding="utf-8") == dict_file.read_text(encoding="utf-8")
    assert _top(with_dict, QUERY)[0] == "d1"
    out = tmp_path / "plain"
    assert _cli("index", "build", "--model", "static-ko", "--corpus", _docs_file(tmp_path, DOCS), "--out", out,
                "-q").exit_code == 0
    assert _top(out, QUERY)[0] == "d2"  # without the dictionary the split name matches the distractor best
    info = _cli("index", "info", "--index", with_dict)
    assert info.exit_code == 0 and "analyzer:" in info.output and "user dictionary user_dict.txt, 1 entries" in \
        info.output and "bm25 (bm25-phrase, mecab analyzer)" in info.output


def test_add_analyses_with_the_index_copy_and_search_uses_it(with_dict, tmp_path, dict_file):
    import shutil

    index = tmp_path / "idx"
    shutil.copytree(with_dict, index)
    new = _docs_file(tmp_path, {"d5": f"{WORD} 계좌 개설은 앱에서 합니다."})
    assert _cli("index", "add", "--index", index, "--docs", new, "--user-dict", dict_file, "-q").exit_code == 0
    stored = [json.loads(line) for line in (index / json.loads((index / "manifest.json").read_text())["version_dir"]
                                            ).glob("passages*.jsonl") for line in line.read_text().splitlines()]
    assert next(r["tokens"] for r in stored if r["id"] == "d5")[0] == f"{WORD}/N"  # analysed with the dictionary
    assert _top(index, f"{WORD} 계좌")[0] == "d5"


@pytest.mark.parametrize("command", ["search", "add"])
def test_another_dictionary_or_analyzer_is_refused_naming_both(with_dict, tmp_path, command):
    other = tmp_path / "other.txt"
    other.write_text("라마인덱스\n", encoding="utf-8")
    before = (with_dict / "manifest.json").read_bytes()
    docs = _docs_file(tmp_path, {"x1": "새 문서"})
    head = ["search", "보증금", "--index", with_dict] if command == "search" else \
        ["index", "add", "--index", with_dict, "--docs", docs, "-q"]
    result = _cli(*head, "--user-dict", other)
    assert result.exit_code == 2 and "not the one the index was built with" in result.output
    result = _cli(*head, "--analyzer", "kiwi")
    assert result.exit_code == 2 and "built with the mecab analyzer, not kiwi" in " ".join(result.output.split())
    assert (with_dict / "manifest.json").read_bytes() == before  # nothing written


def test_a_tampered_or_missing_copy_is_refused(with_dict, tmp_path):
    import shutil

    index = tmp_path / "idx"
    shutil.copytree(with_dict, index)
    (index / "user_dict.txt").write_text("토스\n", encoding="utf-8")
    result = _cli("search", "보증금", "--index", index)
    assert result.exit_code == 2 and "changed after the build" in " ".join(result.output.split())
    (index / "user_dict.txt").unlink()
    result = _cli("search", "보증금", "--index", index)
    assert result.exit_code == 2 and "user dictionary is missing" in " ".join(result.output.split())


def test_bad_analyzer_and_malformed_dictionary_exit_2_and_write_nothing(tmp_path):
    docs = _docs_file(tmp_path, DOCS)
    result = _cli("index", "build", "--model", "static-ko", "--corpus", docs, "--out", tmp_path / "a",
                  "--analyzer", "okt", "-q")
    assert result.exit_code == 2 and "mecab, kiwi" in result.output and not (tmp_path / "a").exists()
    bad = tmp_path / "bad.txt"
    bad.write_text("토스증권\n토스 증권 NNP\n", encoding="utf-8")
    result = _cli("index", "build", "--model", "static-ko", "--corpus", docs, "--out", tmp_path / "b",
                  "--user-dict", bad, "-q")
    assert result.exit_code == 2 and "bad.txt, row 2" in " ".join(result.output.split())
    assert not (tmp_path / "b").exists()
    result = _cli("bench", "-r", "bm25-phrase@okt", "-q")
    assert result.exit_code == 2 and "mecab, kiwi" in result.output


def test_kiwi_index_searches_with_kiwi_and_equals_the_in_memory_retriever(tmp_path):
    out = tmp_path / "idx"
    result = _cli("index", "build", "--model", "static-ko", "--corpus", _docs_file(tmp_path, DOCS), "--out", out,
                  "--analyzer", "kiwi", "-q")
    assert result.exit_code == 0, result.output
    index = load_index(out)
    assert index.analyzer.name == "kiwi"
    bm25 = BM25Retriever(PRESETS["bm25-phrase"].with_analyzer("kiwi"), show_progress=False)
    bm25.fit(list(DOCS), list(DOCS.values()))
    queries = [QUERY, "보증금 돌려받기", "도서관 사진"]
    assert index.search(queries, 3, mode="bm25") == bm25.search(queries, 3)
    result = _cli("search", "보증금", "--index", out, "--analyzer", "mecab")
    assert result.exit_code == 2 and "built with the kiwi analyzer, not mecab" in " ".join(result.output.split())


def test_an_index_written_before_analyzers_were_recorded_reads_as_kiwi(tmp_path):
    out = tmp_path / "idx"
    tokens = get_analyzer("kiwi")(list(DOCS.values()))
    build_index("static-ko", list(DOCS), list(DOCS.values()), out, options=QUIET, tokens=tokens,
                params=IndexParams(lexical=PRESETS["bm25-phrase"].with_analyzer("kiwi")))
    path = out / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    for key in ("analyzer", "analyzer_version"):
        del manifest["bm25"][key]
    manifest["bm25"]["tokenizer"] = "kiwi content morphemes (koembed.lexical.KiwiTokenizer)"
    manifest["bm25"]["kiwipiepy_version"] = "0.24.1"  # as koembed wrote it then
    manifest["format_version"] = 1  # (format 2 always records the analyzer: docs/INDEX_FORMAT.md)
    path.write_text(json.dumps(manifest), encoding="utf-8")
    index = load_index(out)
    assert index.analyzer.name == "kiwi"
    bm25 = BM25Retriever(PRESETS["bm25-phrase"].with_analyzer("kiwi"), show_progress=False)
    bm25.fit(list(DOCS), list(DOCS.values()))
    assert index.search([QUERY, "보증금"], 3, mode="bm25") == bm25.search([QUERY, "보증금"], 3)


def test_qdrant_index_records_and_uses_the_user_dictionary(tmp_path, dict_file):
    pytest.importorskip("qdrant_edge")
    out = tmp_path / "q"
    ud = UserDict.read(dict_file)
    build_index("static-ko", list(DOCS), list(DOCS.values()), out, target=QdrantTarget(), options=QUIET,
                params=IndexParams(user_dict=ud))
    with load_index(out) as index:
        assert index.manifest.bm25["user_dict"]["sha256"] == ud.sha256
        assert index.analyzer([WORD])[0] == [f"{WORD}/N"]
        assert index.search([QUERY], 1, mode="bm25")[0][0][0] == "d1"
    assert (out / "user_dict.txt").read_text(encoding="utf-8") == ud.text


def test_a_lexical_search_imports_no_torch(with_dict):
    """Millisecond start: `koembed search` on a lexical index loads neither torch nor a transformer library
    (python -X importtime lists every module imported)."""
    done = subprocess.run([sys.executable, "-X", "importtime", "-m", "koembed", "search", QUERY, "--index",
                           str(with_dict), "--json"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    imported = {line.rsplit("|", 1)[-1].strip() for line in done.stderr.splitlines() if line.startswith("import time:")}
    assert "koembed.index.search" in imported and "_mecab" in imported  # the listing is real
    assert not imported & {"torch", "transformers", "sentence_transformers", "kiwipiepy"}
    assert json.loads(done.stdout.splitlines()[0])["docid"] == "d1"
