"""The golden indexes of tests/golden/ (one per index format version koembed reads) still open and search.

They were written once by tests/golden/make_golden.py and are never rewritten: an index written by an older
koembed must keep opening (docs/INDEX_FORMAT.md). Each is copied to another folder first (the manifest records the
absolute path its model was resolved at, on the machine that wrote it), and its BM25 hits are compared with an
in-memory :class:`BM25Retriever` fitted on the same sentences, analysed afresh.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from koembed.cli import app
from koembed.errors import IndexStoreError
from koembed.index import load_index
from koembed.index.manifest import FORMAT_VERSION, OLDER_FORMATS
from koembed.lexical import DEFAULT, UserDict
from koembed.lexical.bm25 import BM25Retriever
from tests.golden.make_golden import INDEXES, QUERIES, SENTENCES, USER_DICT

GOLDEN = Path(__file__).parent / "golden"
runner = CliRunner()
# What each golden index was built with: its format version, analyzer and user dictionary.
BUILT = {"v2-mecab": (2, "mecab", None), "v2-kiwi-userdict": (2, "kiwi", USER_DICT), "v1-mecab": (1, "mecab", None),
         "v1-kiwi": (1, "kiwi", None)}
REBUILD = "rebuild with `koembed index build ...`"


def copied(name: str, tmp_path: Path) -> Path:
    """The golden index ``name`` in a folder of its own (another path than the one it was written at)."""
    target = tmp_path / "elsewhere" / name
    shutil.copytree(GOLDEN / name, target)
    return target


def edit_manifest(index_dir: Path, **changes: object) -> None:
    path = index_dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8"))
    manifest.update(changes)
    path.write_text(json.dumps(manifest, ensure_ascii=False), encoding="utf-8")


def test_every_readable_version_has_golden_indexes():
    versions = {BUILT[name][0] for name in INDEXES}
    assert set(BUILT) == set(INDEXES)
    assert versions == {FORMAT_VERSION, *OLDER_FORMATS}  # a new format version needs its golden index
    for name, (version, _, _) in BUILT.items():
        manifest = json.loads((GOLDEN / name / "manifest.json").read_text(encoding="utf-8"))
        assert manifest["format_version"] == version, name


@pytest.fixture(scope="module")
def expected():
    """Per (analyzer, user dictionary): the in-memory BM25 hits of every query on the golden sentences."""
    ids, texts = [i for i, _ in SENTENCES], [t for _, t in SENTENCES]
    results = {}
    for analyzer, user_dict in {(a, d) for _, a, d in BUILT.values()}:
        retriever = BM25Retriever(DEFAULT.with_analyzer(analyzer), show_progress=False,
                                  user_dict=UserDict.parse(user_dict) if user_dict is not None else None)
        retriever.fit(ids, texts)
        results[analyzer, user_dict] = retriever.search(QUERIES, 5)
    return results


@pytest.mark.parametrize("name", INDEXES)
@pytest.mark.parametrize("verify", [False, True])
def test_golden_index_searches_as_in_memory_bm25(name, verify, expected, tmp_path):
    _, analyzer, user_dict = BUILT[name]
    index = load_index(copied(name, tmp_path), verify=verify)
    assert len(index) == len(SENTENCES)
    hits = index.search(QUERIES, k=5, mode="bm25")
    want = expected[analyzer, user_dict]
    assert all(want)  # every query matches something
    for got, ref in zip(hits, want):
        assert [d for d, _ in got] == [d for d, _ in ref]
        assert [s for _, s in got] == pytest.approx([s for _, s in ref], rel=1e-6)


@pytest.mark.parametrize("name", INDEXES)
def test_golden_index_info(name, tmp_path):
    version, analyzer, _ = BUILT[name]
    result = runner.invoke(app, ["index", "info", "-i", str(copied(name, tmp_path))])
    assert result.exit_code == 0, result.output
    said = " ".join(result.output.split())
    assert f"format {version}" in said and analyzer in said


def test_user_dictionary_of_golden_index_is_used(tmp_path):
    """The Kiwi index analyses the query with its own copy of the dictionary: 코엠베드 is one term."""
    index = load_index(copied("v2-kiwi-userdict", tmp_path))
    assert index.search(["코엠베드"], k=3, mode="bm25")[0][0][0] == "g10"


def test_dense_search_of_golden_index_elsewhere(tmp_path):
    """The model's recorded ``resolved`` path need not exist: static-ko is reloaded by its name (not ``local``),
    and checked by the recorded probe embedding."""
    import numpy as np

    from koembed.models.locate import bundled_static_path
    from koembed.models.static_numpy import NumpyStaticModel

    index_dir = copied("v2-mecab", tmp_path)
    encoder = NumpyStaticModel(bundled_static_path())
    index = load_index(index_dir, encoder=encoder)
    texts = [t for _, t in SENTENCES]
    vectors = encoder.encode(texts)
    query = encoder.encode(["김치찌개 끓이는 법"])[0]
    best = SENTENCES[int(np.argmax(np.asarray(vectors) @ np.asarray(query)))][0]
    assert index.search(["김치찌개 끓이는 법"], k=1, mode="dense")[0][0][0] == best


@pytest.mark.parametrize("version", [FORMAT_VERSION + 1, 99, 0, "2", None])
def test_newer_or_unknown_format_version_is_refused(version, tmp_path):
    index_dir = copied("v2-mecab", tmp_path)
    edit_manifest(index_dir, format_version=version)
    with pytest.raises(IndexStoreError, match="format version") as info:
        load_index(index_dir)
    assert REBUILD in str(info.value)
    if version == FORMAT_VERSION + 1:
        assert "newer koembed" in str(info.value)
    result = runner.invoke(app, ["index", "info", "-i", str(index_dir)])
    assert result.exit_code == 2 and REBUILD in " ".join(result.output.split())


def test_format_2_records_its_analyzer(tmp_path):
    """Only a format-1 manifest may leave bm25.analyzer out (then Kiwi); format 2 always records it."""
    index_dir = copied("v2-mecab", tmp_path)
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    bm25 = {k: v for k, v in manifest["bm25"].items() if k != "analyzer"}
    edit_manifest(index_dir, bm25=bm25)
    with pytest.raises(IndexStoreError, match="bm25.analyzer"):
        load_index(index_dir)
    edit_manifest(index_dir, format_version=1)
    assert len(load_index(index_dir)) == len(SENTENCES)  # format 1 without it: Kiwi, as then


def test_update_keeps_the_format_version(tmp_path):
    """An update writes only files and fields of the index's version, so it keeps that version."""
    from koembed.index import delete_documents

    index_dir = copied("v1-kiwi", tmp_path)
    delete_documents(index_dir, ["g01"])
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["format_version"] == 1 and "analyzer" not in manifest["bm25"]
    assert len(load_index(index_dir, verify=True)) == len(SENTENCES) - 1
