"""Persistent index: each search mode equals koembed's in-memory retriever, updates, integrity, crash safety, CLI."""

from __future__ import annotations

import ast
import hashlib
import json
import os
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import koembed.index as index_module
from koembed.cli import app
from koembed.data.docs import load_documents, read_documents
from koembed.errors import DataError
from koembed.index import (
    DocumentIdError,
    IndexParams,
    IndexStoreError,
    ModelMismatchError,
    add_documents,
    build_index,
    delete_documents,
    index_info,
    load_index,
)
from koembed.retrieval.dense import DenseRetriever
from koembed.retrieval.hybrid import HybridRetriever
from koembed.version import __version__
from tests.helpers import NEW_TEXT, QUIET, assert_same_ranking


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir, model, corpus):
    """One index per kind on the bundled sample, built once; tests that change an index copy it first."""
    cache: dict[str, Path] = {}

    def get(kind: str) -> Path:
        if kind not in cache:
            out = tmp_path_factory.mktemp("built") / kind
            build_index(str(tiny_model_dir), *corpus, out, params=IndexParams(kind), options=QUIET, encoder=model)
            cache[kind] = out
        return cache[kind]

    return get


def _copy(src: Path, tmp_path: Path) -> Path:
    dst = tmp_path / src.name
    shutil.copytree(src, dst)
    return dst


def _synthetic(n: int, seed: int, words: list[str]) -> list[str]:
    rng = random.Random(seed)
    return [" ".join(rng.choices(words, k=rng.randint(6, 14))) for _ in range(n)]


# --------------------------------------------------------------------------- search equals the in-memory retrievers


def test_flat_dense_equals_exact_dense_retriever(built, model, queries, exact):
    index = load_index(built("flat"), encoder=model)
    assert_same_ranking(index.search(queries, 10), exact.search(queries, 10))
    assert_same_ranking(index.search(queries[:5], 100), exact.search(queries[:5], 100))  # k > corpus: whole corpus, same order


def test_bm25_mode_equals_bm25_retriever(built, model, queries, bm25):
    index = load_index(built("flat"), encoder=model)
    assert_same_ranking(index.search(queries, 10, mode="bm25"), bm25.search(queries, 10), tol=1e-6)
    part = index.bm25_retriever  # the BM25 half the mode runs, public for benchmarks (bench/bm25_pruning.py)
    assert part is index.bm25_retriever and part.prunes  # stored segments, normalization none: MaxScore
    assert part.search(queries, 10, prune=False) == index.search(queries, 10, mode="bm25")


def test_hybrid_equals_hybrid_retriever_over_same_two(built, model, queries, exact, bm25):
    index = load_index(built("flat"), encoder=model)
    want = HybridRetriever([exact, bm25], fusion="rrf").search(queries, 10)
    assert_same_ranking(index.search(queries, 10, mode="hybrid"), want, tol=1e-9)


def test_passage_texts_and_lazy_model(built, sample, exact, queries):
    index = load_index(built("flat"))  # no model: loaded from the manifest at the first dense search
    assert len(index) == 48 and index.doc_ids == list(sample.corpus)
    assert index.text("fin-01") == sample.corpus["fin-01"] == index.passages["fin-01"]
    assert_same_ranking(index.search(queries[:3], 5), exact.search(queries[:3], 5))


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_equal_scores_are_ordered_by_doc_id(tmp_path, tiny_model_dir, model, sample, kind):
    # 24 copies of one passage tie exactly, more than k + the over-fetch slack: the k smallest ids must come first.
    copies = [f"dup-{i:02d}" for i in random.Random(0).sample(range(24), 24)]
    others = list(sample.corpus)[1:20]
    ids = copies + others
    texts = [sample.corpus["fin-01"]] * len(copies) + [sample.corpus[d] for d in others]
    build_index(str(tiny_model_dir), ids, texts, tmp_path / kind, params=IndexParams(kind), options=QUIET,
                encoder=model)
    hits = load_index(tmp_path / kind, encoder=model).search([sample.corpus["fin-01"]], 5)[0]
    assert [d for d, _ in hits] == [f"dup-{i:02d}" for i in range(5)]
    assert hits[0][1] == pytest.approx(1.0, abs=1e-5) and len({s for _, s in hits}) == 1


# --------------------------------------------------------------------------- adds as new parts


def _manifest(path: Path) -> dict:
    return json.loads((path / "manifest.json").read_text(encoding="utf-8"))


def _same_searches(got, want, queries) -> None:
    for mode in ("dense", "bm25", "hybrid"):
        assert_same_ranking(got.search(queries, 10, mode=mode), want.search(queries, 10, mode=mode), tol=1e-6)
    assert got.doc_ids == want.doc_ids and dict(got.passages) == dict(want.passages)


@pytest.mark.parametrize("kind", ["flat", "hnsw"])
def test_adds_are_new_parts_that_search_as_one_build(tmp_path, tiny_model_dir, model, corpus, queries, kind):
    ids, texts = corpus
    path = tmp_path / "parts"
    build_index(str(tiny_model_dir), ids[:20], texts[:20], path, params=IndexParams(kind), options=QUIET,
                encoder=model)
    stored = [(path / "v000001" / name).stat().st_ino for name in ("passages.jsonl", "dense.faiss")]
    for start, end in ((20, 30), (30, 31), (31, 48)):
        add_documents(path, ids[start:end], texts[start:end], encoder=model)
    manifest = _manifest(path)
    folder = path / manifest["version_dir"]
    assert manifest["parts"] == 4 and manifest["counts"]["passages"] == 48
    assert {"passages.000004.jsonl", "dense.000004.faiss"} <= set(manifest["files"])
    # the first part's files are the build's, linked into every later version, never rewritten
    assert [(folder / name).stat().st_ino for name in ("passages.jsonl", "dense.faiss")] == stored
    assert sum(1 for _ in (folder / "passages.000004.jsonl").open(encoding="utf-8")) == 17
    whole = tmp_path / "whole"
    build_index(str(tiny_model_dir), ids, texts, whole, params=IndexParams(kind), options=QUIET, encoder=model)
    got, want = load_index(path, encoder=model), load_index(whole, encoder=model)
    _same_searches(got, want, queries)
    assert [got.text(d) for d in ids] == texts
    _same_searches(load_index(path, encoder=model, verify=True), want, queries)  # every part read and checked
    # a delete keeps the parts (rows leave the row table, vectors become tombstones) ...
    for index_dir in (path, whole):
        delete_documents(index_dir, ids[18:22])
    folder = path / _manifest(path)["version_dir"]
    assert _manifest(path)["parts"] == 4 and _manifest(path)["counts"]["tombstones"] == 4
    assert [(folder / name).stat().st_ino for name in ("passages.jsonl", "dense.faiss")] == stored
    _same_searches(load_index(path, encoder=model), load_index(whole, encoder=model), queries)
    _same_searches(load_index(path, encoder=model, verify=True), load_index(whole, encoder=model), queries)
    # ... until tombstones would pass half the vectors: then the version is rewritten as one part without them
    for index_dir in (path, whole):
        delete_documents(index_dir, ids[:18] + ids[22:30])
    manifest = _manifest(path)
    assert "parts" not in manifest and manifest["counts"] == {"passages": 18, "deleted": 30, "tombstones": 0}
    assert not list((path / manifest["version_dir"]).glob("*.0000*"))
    _same_searches(load_index(path, encoder=model), load_index(whole, encoder=model), queries)


def test_ties_across_parts_are_ordered_by_doc_id(tmp_path, tiny_model_dir, model, sample):
    # the later add holds the smaller ids: the merged doc-id order must put them first among equal scores
    text, others = sample.corpus["fin-01"], list(sample.corpus)[1:20]
    first = [f"dup-{i:02d}" for i in range(1, 24, 2)] + others
    build_index(str(tiny_model_dir), first, [text] * 12 + [sample.corpus[d] for d in others], tmp_path / "i",
                options=QUIET, encoder=model)
    later = [f"dup-{i:02d}" for i in range(0, 24, 2)]
    add_documents(tmp_path / "i", later, [text] * 12, encoder=model)
    index = load_index(tmp_path / "i", encoder=model)
    for mode in ("dense", "bm25"):
        assert [d for d, _ in index.search([text], 5, mode=mode)[0]] == [f"dup-{i:02d}" for i in range(5)], mode
    assert index.text("dup-00") == text and index.text("dup-23") == text
    with pytest.raises(KeyError):
        index.text("dup-24")


def test_parts_are_rewritten_as_one_past_the_limit(tmp_path, built, model, corpus, queries, monkeypatch):
    import koembed.index.versions as versions

    monkeypatch.setattr(versions, "MAX_PARTS", 3)
    path = _copy(built("flat"), tmp_path)
    extra = [f"{q} 관련 안내" for q in queries[-6:]]  # distinct sentences: no near-ties for batch noise to flip
    parts = []
    for i in range(3):
        add_documents(path, [f"x{2 * i}", f"x{2 * i + 1}"], extra[2 * i: 2 * i + 2], encoder=model)
        parts.append(_manifest(path).get("parts", 1))
    assert parts == [2, 3, 1]
    whole = tmp_path / "whole"
    build_index(str(Path(_manifest(path)["model"]["resolved"])), [*corpus[0], *(f"x{i}" for i in range(6))],
                [*corpus[1], *extra], whole, options=QUIET, encoder=model)
    _same_searches(load_index(path, encoder=model), load_index(whole, encoder=model), queries)


def test_rows_after_a_long_run_of_deleted_rows_read_whole(tmp_path, tiny_model_dir, model, corpus):
    # 120 deleted rows of ~1.3 KB between two live ones: more than one read (koembed.index.rows.ROW_READ) apart
    words = corpus[1][0].split()
    texts = [" ".join(words * 12)[:1300] + f" 끝{i}" for i in range(300)]
    ids = [f"p{i:03d}" for i in range(300)]
    path = tmp_path / "long"
    build_index(str(tiny_model_dir), ids, texts, path, options=QUIET, encoder=model)
    delete_documents(path, ids[10:130])
    assert _manifest(path)["counts"] == {"passages": 180, "deleted": 120, "tombstones": 120}
    index = load_index(path, encoder=model)
    assert index.text("p009") == texts[9] and index.text("p130") == texts[130]
    assert index.doc_ids == ids[:10] + ids[130:]
    with pytest.raises(KeyError):
        index.text("p010")
    assert {d for d, _ in index.search([texts[130]], 5, mode="bm25")[0]} <= set(ids[:10] + ids[130:])


def test_a_damaged_later_part_is_an_error_naming_it(tmp_path, built, model):
    path = _copy(built("flat"), tmp_path)
    add_documents(path, ["new-1"], [NEW_TEXT], encoder=model)
    target = path / _manifest(path)["version_dir"] / "passages.000002.jsonl"
    target.write_bytes(target.read_bytes()[:-3])
    with pytest.raises(IndexStoreError, match="passages.000002.jsonl does not match its size"):
        load_index(path, encoder=model)
    with pytest.raises(IndexStoreError, match="passages.000002.jsonl does not match its size"):
        add_documents(path, ["new-2"], [NEW_TEXT], encoder=model)


def test_delete_everything_then_add(tmp_path, built, model):
    path = _copy(built("hnsw"), tmp_path)
    delete_documents(path, load_index(path, encoder=model).doc_ids)
    index = load_index(path, encoder=model)
    assert len(index) == 0 and index.search(["질문"], 5, mode="hybrid") == [[]]
    assert index.manifest.counts == {"passages": 0, "deleted": 48, "tombstones": 0}
    add_documents(path, ["new-1"], [NEW_TEXT], encoder=model)
    assert load_index(path, encoder=model).search([NEW_TEXT], 5, mode="hybrid")[0][0][0] == "new-1"


def test_hnsw_and_ivf_recall_against_exact(tmp_path, tiny_model_dir, model, sample):
    words = " ".join(sample.corpus.values()).split()
    texts, probes = _synthetic(300, 1, words), _synthetic(40, 2, words)
    ids = [f"syn-{i:03d}" for i in range(len(texts))]
    exact = DenseRetriever(model, "dense", options=QUIET)
    exact.fit(ids, texts)
    truth = [{d for d, _ in hits} for hits in exact.search(probes, 10)]
    for kind in ("hnsw", "ivf"):
        manifest = build_index(str(tiny_model_dir), ids, texts, tmp_path / kind, params=IndexParams(kind),
                               options=QUIET, encoder=model)
        found = load_index(tmp_path / kind, encoder=model).search(probes, 10)
        recall = np.mean([len(t & {d for d, _ in f}) / 10 for t, f in zip(truth, found)])
        assert recall >= 0.95, (kind, recall)
    assert manifest.params["nlist"] == 7 and "too few" in manifest.params["note"]  # 300 // 39 lists, said so
    info = index_info(tmp_path / "hnsw")
    assert info["params"] == {"M": 32, "ef_construction": 200, "ef_search": 128}


# --------------------------------------------------------------------------- updates


@pytest.mark.parametrize("kind", ["flat", "hnsw", "ivf"])
def test_add_then_delete_in_all_modes(tmp_path, built, model, kind):
    path = _copy(built(kind), tmp_path)
    manifest = add_documents(path, ["new-1"], [NEW_TEXT], encoder=model)
    assert manifest.counts == {"passages": 49, "deleted": 0, "tombstones": 0} and manifest.version_dir == "v000002"
    index = load_index(path, encoder=model)
    for mode in ("dense", "bm25", "hybrid"):
        assert index.search([NEW_TEXT], 3, mode=mode)[0][0][0] == "new-1", mode
    assert index.text("new-1") == NEW_TEXT

    manifest = delete_documents(path, ["new-1", "fin-01"])
    assert manifest.counts["passages"] == 47 and manifest.counts["deleted"] == 2
    assert manifest.counts["tombstones"] == (0 if kind == "ivf" else 2)  # skipped by search until a rewrite
    index = load_index(path, encoder=model)
    assert "new-1" not in index.passages and len(index) == 47
    for mode in ("dense", "bm25", "hybrid"):
        hits = index.search([NEW_TEXT, "정기예금 중도해지 이율"], 100, mode=mode)
        assert not {"new-1", "fin-01"} & {d for q in hits for d, _ in q}, mode
    assert len(index.search([NEW_TEXT], 100)[0]) == 47  # tombstones do not shorten the result list


def test_hnsw_compacts_when_tombstones_outnumber_vectors(tmp_path, built, model, sample, queries):
    path = _copy(built("hnsw"), tmp_path)
    gone = list(sample.corpus)[:30]
    manifest = delete_documents(path, gone)
    assert manifest.counts == {"passages": 18, "deleted": 30, "tombstones": 0}
    rest = {d: t for d, t in sample.corpus.items() if d not in gone}
    exact = DenseRetriever(model, "dense", options=QUIET)
    exact.fit(list(rest), list(rest.values()))
    assert_same_ranking(load_index(path, encoder=model).search(queries[:10], 5), exact.search(queries[:10], 5))


def test_add_existing_or_delete_unknown_id_is_an_error(tmp_path, built, model):
    path = _copy(built("flat"), tmp_path)
    with pytest.raises(DocumentIdError, match="'fin-01'.*delete them first"):
        add_documents(path, ["fin-01"], ["다른 내용"], encoder=model)
    with pytest.raises(DocumentIdError, match="'no-such-doc'"):
        delete_documents(path, ["fin-02", "no-such-doc"])
    with pytest.raises(DataError, match="row 2, field 'id': duplicate id"):
        add_documents(path, ["a", "a"], ["하나", "둘"], encoder=model)
    assert load_index(path, encoder=model).manifest.version_dir == "v000001"  # nothing changed
    assert len(load_index(path, encoder=model)) == 48


# --------------------------------------------------------------------------- manifest and integrity


def test_manifest_counts_and_checksums(built, tiny_model_dir):
    path = built("flat")
    manifest = json.loads((path / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["counts"] == {"passages": 48, "deleted": 0, "tombstones": 0}
    assert manifest["dimension"] == 32 and manifest["normalized_by"] == "model" and manifest["kind"] == "flat"
    assert manifest["model"]["name"] == str(tiny_model_dir) and manifest["model"]["local"] is True
    assert manifest["format_version"] == 2 and manifest["koembed_version"] and manifest["created"]
    folder = path / manifest["version_dir"]
    assert sorted(p.name for p in folder.iterdir()) == sorted(manifest["files"])
    for name, digest in manifest["files"].items():
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() == digest
    rows = [json.loads(line) for line in (folder / "passages.jsonl").read_text(encoding="utf-8").splitlines()]
    assert [r["pid"] for r in rows] == list(range(48)) and all(r["tokens"] for r in rows)


@pytest.mark.parametrize("name, damage", [("passages.jsonl", "edit"), ("dense.faiss", "truncate")])
def test_tampered_file_is_an_error(tmp_path, built, model, name, damage):
    path = _copy(built("flat"), tmp_path)
    target = path / "v000001" / name
    data = target.read_bytes()
    target.write_bytes(data.replace("예금".encode(), "적금".encode(), 1) if damage == "edit" else data[:-100])
    with pytest.raises(IndexStoreError, match=f"{name} does not match its sha256"):
        load_index(path, encoder=model, verify=True)
    with pytest.raises(IndexStoreError, match=f"{name} does not match its sha256"):
        index_info(path)
    if damage == "truncate":  # a load for search, and an add, check sizes, not the sha256 of large files
        with pytest.raises(IndexStoreError, match=f"{name} does not match its size"):
            load_index(path, encoder=model)
        with pytest.raises(IndexStoreError, match=f"{name} does not match its size"):
            add_documents(path, ["new-1"], [NEW_TEXT], encoder=model)
    else:  # an add links the stored files into the next version with their recorded sha256: still caught
        add_documents(path, ["new-1"], [NEW_TEXT], encoder=model)
        assert json.loads((path / "manifest.json").read_text(encoding="utf-8"))["parts"] == 2
        with pytest.raises(IndexStoreError, match=f"{name} does not match its sha256"):
            index_info(path)
    with pytest.raises(IndexStoreError, match=f"{name} does not match its"):  # a rewrite checks every sha256
        delete_documents(path, list(load_documents("sample"))[:30])


class StubModel:
    """Embeds every text as the same vector: stands in for a model the index was not built with."""

    max_seq_length = 128

    def __init__(self, dim: int, seed: int = 0):
        self.vector = np.random.default_rng(seed).normal(size=dim).astype(np.float32)

    def encode(self, texts, **_):
        return np.tile(self.vector, (len(texts), 1))


def test_wrong_model_is_an_error(built, model):
    path = built("flat")
    with pytest.raises(ModelMismatchError, match="32 dimensions.*16-dimensional"):
        load_index(path, encoder=StubModel(16))
    with pytest.raises(ModelMismatchError, match="embeds the probe text differently"):
        load_index(path, encoder=StubModel(32))
    with pytest.raises(ModelMismatchError):
        add_documents(path, ["new-1"], [NEW_TEXT], encoder=StubModel(16))
    assert load_index(path, encoder=model).manifest.version_dir == "v000001"


def test_crash_during_update_leaves_previous_version_loadable(tmp_path, built, model, monkeypatch):
    path = _copy(built("flat"), tmp_path)
    real_replace = os.replace

    def crash_on_manifest(src, dst):
        if Path(dst).name == "manifest.json":
            raise OSError("simulated crash before the manifest swap")
        real_replace(src, dst)

    monkeypatch.setattr(os, "replace", crash_on_manifest)
    with pytest.raises(OSError, match="simulated crash"):
        add_documents(path, ["new-1"], [NEW_TEXT], encoder=model)
    monkeypatch.setattr(os, "replace", lambda src, dst: (_ for _ in ()).throw(OSError("simulated crash")))
    with pytest.raises(OSError):
        delete_documents(path, ["fin-01"])
    monkeypatch.undo()

    index = load_index(path, encoder=model)
    assert index.manifest.version_dir == "v000001" and len(index) == 48 and "new-1" not in index.passages
    assert index.search([NEW_TEXT], 1, mode="bm25")[0][0][0] != "new-1"
    # A kill -9 after the new folder was renamed in leaves a stale v000002: the next update replaces it.
    (path / "v000002").mkdir()
    (path / "v000002" / "dense.faiss").write_bytes(b"half-written")
    add_documents(path, ["new-1"], [NEW_TEXT], encoder=model)
    assert sorted(p.name for p in path.iterdir() if not p.name.startswith(".")) == ["manifest.json", "v000002"]
    assert load_index(path, encoder=model).search([NEW_TEXT], 1)[0][0][0] == "new-1"


def test_no_pickle_anywhere(built):
    import numpy as np

    for path in built("hnsw").rglob("*"):
        assert path.suffix not in (".pkl", ".pickle", ".npz"), path
        if path.is_file():
            assert not path.read_bytes()[:2].startswith(b"\x80"), path  # pickle protocol 2+ header
        if path.suffix == ".npy":  # BM25 segments and the row table: plain numeric arrays, loaded without pickle
            assert path.name.startswith("lex.s") or path.name == "passages.rows.npy", path
            assert np.load(path, allow_pickle=False).dtype.kind in "iuf", path
    for module in Path(index_module.__file__).parent.glob("*.py"):
        tree = ast.parse(module.read_text(encoding="utf-8"))
        imported = {alias.name for node in ast.walk(tree) if isinstance(node, (ast.Import, ast.ImportFrom))
                    for alias in node.names} | {node.module for node in ast.walk(tree)
                                                if isinstance(node, ast.ImportFrom)}
        assert not {"pickle", "joblib", "dill", "cloudpickle"} & imported, module


# --------------------------------------------------------------------------- documents and CLI


def test_read_documents_validates_rows(tmp_path, sample):
    good = tmp_path / "docs.jsonl"
    good.write_text('{"id": 7, "text": "숫자 아이디"}\n{"id": "b", "text": "둘째"}\n', encoding="utf-8")
    assert read_documents(good) == {"7": "숫자 아이디", "b": "둘째"}
    assert load_documents(None) == sample.corpus
    cases = {
        "missing.jsonl": ('{"id": "a", "body": "x"}\n', "missing column(s) 'text'"),
        "empty.jsonl": ('{"id": "a", "text": "x"}\n{"id": "b", "text": "  "}\n', "row 2, field 'text': empty text"),
        "dup.jsonl": ('{"id": "a", "text": "x"}\n{"id": "a", "text": "y"}\n', "row 2, field 'id': duplicate id"),
    }
    for name, (content, message) in cases.items():
        (tmp_path / name).write_text(content, encoding="utf-8")
        with pytest.raises(DataError, match=name + ".*" + message.replace("(", r"\(").replace(")", r"\)")):
            read_documents(tmp_path / name)
    import pandas as pd

    pd.DataFrame({"id": ["a", "b"], "text": ["x", None]}).to_parquet(tmp_path / "docs.parquet")
    with pytest.raises(DataError, match=r"docs.parquet, row 2, field 'text': value is missing"):
        read_documents(tmp_path / "docs.parquet")


def _cli(*args: str):
    return CliRunner().invoke(app, list(args))


def _said(result) -> str:
    """The CLI's output with rich's line wrapping undone."""
    return " ".join(result.output.split())


def test_cli_build_search_add_delete_info(tmp_path, tiny_model_dir, sample):
    docs = tmp_path / "docs.jsonl"
    chosen = list(sample.corpus)[:12]
    docs.write_text("".join(json.dumps({"id": d, "text": sample.corpus[d]}, ensure_ascii=False) + "\n"
                            for d in chosen), encoding="utf-8")
    out = tmp_path / "idx"
    result = _cli("index", "build", "--model", str(tiny_model_dir), "--corpus", str(docs), "--out", str(out),
                  "--kind", "hnsw", "--quiet")
    assert result.exit_code == 0, result.output
    assert "12 passages" in result.output

    result = _cli("search", "--index", str(out), "--mode", "bm25", "-k", "3", "--json", "정기예금 중도해지 이율")
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [r["rank"] for r in lines] == [1, 2, 3] and lines[0]["docid"] == "fin-01"
    assert lines[0]["text"] == sample.corpus["fin-01"] and lines[0]["score"] >= lines[1]["score"]

    result = _cli("search", "--index", str(out), "정기예금 중도해지 이율")  # the recorded mode (bm25), rich table
    assert result.exit_code == 0 and "rank" in result.output and "fin-" in result.output

    new = tmp_path / "new.jsonl"
    new.write_text(json.dumps({"id": "new-1", "text": NEW_TEXT}, ensure_ascii=False) + "\n", encoding="utf-8")
    assert _cli("index", "add", "--index", str(out), "--docs", str(new), "--quiet").exit_code == 0
    result = _cli("search", "--index", str(out), "--mode", "hybrid", "-k", "1", "--json", NEW_TEXT)
    assert json.loads(result.stdout)["docid"] == "new-1"

    result = _cli("index", "delete", "--index", str(out), "--id", "new-1", "--id", "fin-02")
    assert result.exit_code == 0, result.output
    result = _cli("index", "info", "--index", str(out), "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["counts"] == {"passages": 11, "deleted": 2, "tombstones": 2} and info["kind"] == "hnsw"
    assert "probe" not in info["model"]

    result = _cli("index", "info", "--index", str(out))  # the summary a person reads
    assert result.exit_code == 0, result.output
    rows = dict(line.split(":", 1) for line in result.output.splitlines())
    rows = {label: value.strip() for label, value in rows.items()}
    assert rows["passages"] == "11 (2 deleted)" and rows["dense"].endswith(", hnsw")
    assert rows["model"].startswith(str(tiny_model_dir))
    assert rows["lexical"].startswith("BM25 fields " + ", ".join(f"{f}={w:g}" for f, w in info["bm25"]["weights"].items()))
    version = out / info["version_dir"]
    on_disk = sum(f.stat().st_size for f in version.iterdir())
    assert rows["on disk"].endswith(f"total {on_disk / 1024:.1f} KB"), rows["on disk"]
    assert f"koembed {__version__}" in rows["versions"] and f"faiss {info['faiss_version']}" in rows["versions"]


def test_cli_bad_input_exits_2_and_writes_nothing(tmp_path, tiny_model_dir, built):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "하나"}\n{"id": "a", "text": "둘"}\n', encoding="utf-8")
    out = tmp_path / "idx"
    result = _cli("index", "build", "--model", str(tiny_model_dir), "--corpus", str(bad), "--out", str(out), "-q")
    assert result.exit_code == 2 and "bad.jsonl, row 2, field 'id'" in _said(result) and not out.exists()
    result = _cli("index", "build", "--model", str(tiny_model_dir), "--corpus", "sample", "--out", str(out),
                  "--kind", "lsh")
    assert result.exit_code == 2 and "unknown index kind 'lsh'" in _said(result) and not out.exists()

    path = _copy(built("flat"), tmp_path)
    before = (path / "manifest.json").read_bytes()
    result = _cli("index", "delete", "--index", str(path), "--id", "nope")
    assert result.exit_code == 2 and "'nope'" in _said(result)
    result = _cli("index", "add", "--index", str(path), "--docs", str(bad))
    assert result.exit_code == 2 and "bad.jsonl, row 2, field 'id'" in _said(result)
    result = _cli("search", "--index", str(tmp_path / "missing"), "질문")
    assert result.exit_code == 2 and "not a koembed index" in _said(result)
    result = _cli("search", "--index", str(path), "--mode", "sparse", "질문")
    assert result.exit_code == 2 and "sparse search needs an index built with a bge-m3-layout model" in _said(result)
    assert (path / "manifest.json").read_bytes() == before and sorted(os.listdir(path)) == sorted(
        os.listdir(built("flat")))


def test_tuned_fusion_is_recorded_and_used_by_hybrid_search(tmp_path, tiny_model_dir, model, queries, exact, bm25):
    from koembed.retrieval.specs import parse_fusion

    out = tmp_path / "fused"
    result = CliRunner().invoke(app, ["index", "build", "--model", str(tiny_model_dir), "--corpus", "sample",
                                      "--out", str(out), "--fusion", "z@1,0.25", "--precision", "fp32", "-q"])
    assert result.exit_code == 0, result.output
    assert json.loads((out / "manifest.json").read_text())["fusion"] == {"fusion": "z", "weights": [1.0, 0.25],
                                                                         "rrf_k": 60}
    want = HybridRetriever([bm25, exact], fusion="z", weights=[1.0, 0.25]).search(queries, 10)
    assert_same_ranking(load_index(out, encoder=model).search(queries, 10, mode="hybrid"), want)  # FAISS scores are float32
    assert parse_fusion("rrf@k=20") == {"fusion": "rrf", "weights": None, "rrf_k": 20}
    bad = CliRunner().invoke(app, ["index", "build", "--model", str(tiny_model_dir), "--corpus", "sample",
                                   "--out", str(tmp_path / "bad"), "--fusion", "z@1,2,3", "-q"])
    assert bad.exit_code == 2 and "3 weights for 2" in bad.output and not (tmp_path / "bad").exists()
