"""The red-team fault classes of docs/RELIABILITY.md that are not one module's subject: forged or damaged
manifests (index, embedding store, ONNX export), tracebacks instead of exit 2, output paths checked before
work, temporary files left by a killed run, file modes without touching the umask, and kill -9 at exact points
of ``index add`` and ``encode`` (a real SIGKILL in a subprocess, then the same command again).

Each test builds its damaged folder from a good one by hand and expects the error class, exit code 2, and the
file/field named; a kill -9 run must end, after the rerun, bit-identical to an uninterrupted one.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest

from koembed import files
from koembed.encoding.job import encode_corpus
from koembed.encoding.shards import read_embeddings
from koembed.errors import EmbeddingStoreError, IndexStoreError, ModelLoadError
from koembed.files import atomic_open, sha256_file, staged_folder
from koembed.index import add_documents, delete_documents, load_index
from koembed.models import ModelSpec, load_model
from tests.helpers import NEW_DOCS, QUIET, ROOT, assert_clean_exit, cli, edit_manifest


@pytest.fixture(scope="module")
def docs(sample) -> tuple[list[str], list[str]]:
    return list(sample.corpus), list(sample.corpus.values())


def reseal(index_dir: Path, name: str) -> None:
    """Record the current sha256 of ``name`` in the manifest, as a forger (or a buggy writer) would."""
    folder = index_dir / json.loads((index_dir / "manifest.json").read_text())["version_dir"]
    edit_manifest(index_dir, lambda m: m["files"].__setitem__(name, sha256_file(folder / name)))


def alter_first_passage(index_dir: Path) -> None:
    passages = index_dir / "v000001" / "passages.jsonl"
    rows = passages.read_text(encoding="utf-8").splitlines()
    first = json.loads(rows[0])
    first["text"] = "바뀐 본문"
    passages.write_text("\n".join([json.dumps(first, ensure_ascii=False), *rows[1:]]) + "\n", encoding="utf-8")


# --------------------------------------------------------------------------- 4: the manifest lists exactly the files


@pytest.mark.parametrize("files", [{}, "drop passages.jsonl", "extra ../outside"])
def test_manifest_must_list_exactly_the_version_files(index_dir, model, files):
    alter_first_passage(index_dir)  # an edited passages.jsonl must never be served

    def change(manifest):
        if files == {}:
            manifest["files"] = {}
        elif files == "drop passages.jsonl":
            del manifest["files"]["passages.jsonl"]
        else:
            manifest["files"]["../outside"] = "0" * 64

    edit_manifest(index_dir, change)
    with pytest.raises(IndexStoreError, match="manifest.json.*'files'|is not a plain name"):
        load_index(index_dir, encoder=model)
    with pytest.raises(IndexStoreError):
        add_documents(index_dir, ["new-1"], [NEW_DOCS["new-1"]], encoder=model)
    assert_clean_exit(cli("search", "--index", index_dir, "--mode", "bm25", "본문"), "manifest.json")


# --------------------------------------------------------------------------- 5: version_dir stays inside the index


@pytest.mark.parametrize("version_dir", ["../other/v000001", "ABSOLUTE", "/etc", "v1", "v000001/..", "LINK"])
def test_version_dir_must_be_a_version_folder_inside_the_index(index_dir, base_index, model, tmp_path,
                                                               version_dir):
    other = Path(shutil.copytree(base_index, tmp_path / "other"))  # a valid index elsewhere, checksums and all
    if version_dir == "ABSOLUTE":
        version_dir = str(other / "v000001")
    elif version_dir == "LINK":
        (index_dir / "v000009").symlink_to(other / "v000001")
        version_dir = "v000009"
    edit_manifest(index_dir, lambda m: m.__setitem__("version_dir", version_dir))
    # (pytest's tmp_path holds the test's name, so the match includes the quote after the field)
    with pytest.raises(IndexStoreError, match="manifest.json: version_dir: '"):
        load_index(index_dir, encoder=model)
    with pytest.raises(IndexStoreError, match="manifest.json: version_dir: '"):
        add_documents(index_dir, ["new-1"], [NEW_DOCS["new-1"]], encoder=model)
    assert_clean_exit(cli("index", "info", "--index", index_dir), "version_dir: '")
    new_docs = tmp_path / "new.jsonl"
    new_docs.write_text(json.dumps({"id": "new-1", "text": NEW_DOCS["new-1"]}, ensure_ascii=False) + "\n",
                        encoding="utf-8")
    assert_clean_exit(cli("index", "add", "--index", index_dir, "--docs", new_docs, "-q"), "version_dir: '")
    untouched = sorted(p.name for p in (base_index / "v000001").iterdir())
    assert {"dense.faiss", "passages.jsonl", "tombstones.json"} < set(untouched)
    assert sorted(p.name for p in (other / "v000001").iterdir()) == untouched


# --------------------------------------------------------------------------- 6: malformed rows with a matching checksum


@pytest.mark.parametrize("damage, words", [
    ("garbage", ["passages.jsonl, row 2"]),
    ("no tokens", ["passages.jsonl, row 3", "tokens"]),
    ("tokens not a list", ["passages.jsonl, row 1", "tokens"]),
    ("pid as text", ["passages.jsonl, row 1", "pid"]),
    ("deep nesting", ["passages.jsonl, row 1"]),
    ("tombstones", ["tombstones.json"]),
    ("faiss", ["dense.faiss"]),
])
def test_malformed_version_files_with_matching_checksums_are_clean_errors(index_dir, model, damage, words):
    folder = index_dir / "v000001"
    passages = folder / "passages.jsonl"
    rows = passages.read_text(encoding="utf-8").splitlines()
    name = "passages.jsonl"
    if damage == "garbage":
        rows[1] = "{not json"
    elif damage == "no tokens":
        row = json.loads(rows[2])
        del row["tokens"]
        rows[2] = json.dumps(row, ensure_ascii=False)
    elif damage == "tokens not a list":
        row = json.loads(rows[0])
        row["tokens"] = "단어"
        rows[0] = json.dumps(row, ensure_ascii=False)
    elif damage == "pid as text":
        row = json.loads(rows[0])
        row["pid"] = "0"
        rows[0] = json.dumps(row, ensure_ascii=False)
    elif damage == "deep nesting":
        rows[0] = "[" * 100_000 + "]" * 100_000
    if damage == "tombstones":
        name = "tombstones.json"
        (folder / name).write_text('{"not": "a list"}', encoding="utf-8")
    elif damage == "faiss":
        name = "dense.faiss"
        (folder / name).write_bytes(b"not a faiss index")
    else:
        passages.write_text("\n".join(rows) + "\n", encoding="utf-8")
    reseal(index_dir, name)
    with pytest.raises(IndexStoreError) as info:  # every row read and checked
        load_index(index_dir, encoder=model, verify=True)
    for word in words:
        assert word in str(info.value)
    # A load for search checks sizes (the rewritten files have changed size) and reads rows on demand.
    with pytest.raises(IndexStoreError, match=name):
        load_index(index_dir, encoder=model)
    assert_clean_exit(cli("search", "--index", index_dir, "--mode", "bm25", "본문"), name)


def rewrite_row_in_place(index_dir: Path, row: int, raw: bytes) -> None:
    """Replace row ``row`` (from 0) of passages.jsonl by ``raw`` padded to its length, resealing the sha256."""
    passages = index_dir / "v000001" / "passages.jsonl"
    lines = passages.read_bytes().splitlines(keepends=True)
    assert len(raw) < len(lines[row])
    lines[row] = raw + b" " * (len(lines[row]) - len(raw) - 1) + b"\n"
    passages.write_bytes(b"".join(lines))
    reseal(index_dir, "passages.jsonl")


@pytest.mark.parametrize("change", ["duplicate", "negative", "past the end"])
def test_a_row_table_whose_order_is_not_a_permutation_is_a_load_error(index_dir, model, change):
    table_path = index_dir / "v000001" / "passages.rows.npy"
    table = np.load(table_path)
    table[1, 2] = {"duplicate": table[0, 2], "negative": -1, "past the end": len(table)}[change]
    np.save(table_path, table)
    reseal(index_dir, "passages.rows.npy")
    with pytest.raises(IndexStoreError, match="passages.rows.npy: row offsets or order out of range"):
        load_index(index_dir, encoder=model)


@pytest.mark.parametrize("raw, words", [(b"{not json", "row 2: not a JSON object"),
                                        (b'{"pid": 1, "id": "x"}', "row 2: expected"),
                                        (b'{"pid": 7, "id": "x", "text": "t", "tokens": []}', "row 2: pid 7")])
def test_a_malformed_row_of_the_same_size_is_an_error_when_a_search_reads_it(index_dir, model, raw, words):
    rewrite_row_in_place(index_dir, 1, raw)
    index = load_index(index_dir, encoder=model)  # sizes match: the load reads no row
    with pytest.raises(IndexStoreError, match=words):
        _ = index.doc_ids
    with pytest.raises(IndexStoreError, match=words):
        load_index(index_dir, encoder=model, verify=True)


# --------------------------------------------------------------------------- 7: chunk and graph file names


@pytest.fixture
def shard(tiny_model_dir, model, docs, tmp_path) -> Path:
    report = encode_corpus(str(tiny_model_dir), *docs, tmp_path / "emb", chunk_size=16, options=QUIET, encoder=model)
    return report.shard_dir


@pytest.mark.parametrize("field, value", [("file", "../evil.npy"), ("ids", "/etc/passwd"),
                                          ("file", "chunk-000002.npy"), ("sha256", "x")])
def test_shard_manifest_chunk_names_must_be_their_own_plain_names(shard, tiny_model_dir, docs, field, value):
    (shard.parent / "evil.npy").write_bytes((shard / "chunk-000000.npy").read_bytes())
    edit_manifest(shard, lambda m: m["chunks"][0].__setitem__(field, value))
    with pytest.raises(EmbeddingStoreError, match="manifest.json"):
        read_embeddings([shard.parent], *docs)
    with pytest.raises(EmbeddingStoreError, match="manifest.json"):  # resuming reads the same manifest
        encode_corpus(str(tiny_model_dir), *docs, shard.parent, chunk_size=16, options=QUIET)


def test_onnx_export_lists_exactly_its_graph_files(tmp_path):
    folder = tmp_path / "export"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"graph")
    (tmp_path / "secret").write_bytes(b"elsewhere")
    graph_sum = sha256_file(folder / "model.onnx")
    meta = {"format": "koembed-onnx", "format_version": 1, "backend": "onnx", "file": "model.onnx",
            "files": {"model.onnx": graph_sum}, "inputs": ["input_ids"], "dimension": 4}
    cases = [({"files": {"model.onnx": graph_sum, "../secret": sha256_file(tmp_path / "secret")}}, "../secret"),
             ({"file": "../secret", "files": {"../secret": sha256_file(tmp_path / "secret")}}, "../secret"),
             ({"files": {}}, "model.onnx")]
    for change, word in cases:
        (folder / "koembed_onnx.json").write_text(json.dumps({**meta, **change}), encoding="utf-8")
        with pytest.raises(ModelLoadError, match="koembed_onnx.json") as info:
            load_model(str(folder))
        assert word in str(info.value)
    # External weights in the folder must be listed too, or they could be swapped unverified.
    (folder / "model.onnx.data").write_bytes(b"weights")
    (folder / "koembed_onnx.json").write_text(json.dumps(meta), encoding="utf-8")
    with pytest.raises(ModelLoadError, match="model.onnx.data"):
        load_model(str(folder))


# --------------------------------------------------------------------------- 11: config errors exit 2


@pytest.mark.parametrize("case", ["non-utf8", "folder", "bad yaml override", "index past the list",
                                  "name on a list", "deep yaml"])
def test_train_config_problems_exit_2_without_traceback(tmp_path, case):
    config = tmp_path / "c.yaml"
    config.write_text("model: {base: minilm}\ndata: {train: [{type: pairs, path: p.jsonl}]}\noutput_dir: out\n",
                      encoding="utf-8")
    overrides: list[str] = []
    word = "c.yaml"
    if case == "non-utf8":
        config.write_bytes("model: {base: 미니}\n".encode("euc-kr"))
        word = "UTF-8"
    elif case == "folder":
        config = tmp_path
        word = "folder"
    elif case == "bad yaml override":
        overrides, word = ["train.batch_size=["], "train.batch_size"
    elif case == "index past the list":
        overrides, word = ["data.train.5.path=x"], "data.train"
    elif case == "name on a list":
        overrides, word = ["data.train.x.path=y"], "data.train"
    else:
        config.write_text("model: " + "[" * 100_000 + "]" * 100_000 + "\n", encoding="utf-8")
        word = "nested"
    args = ["train", config, "--dry-run"] + [a for o in overrides for a in ("--set", o)]
    assert_clean_exit(cli(*args), word)


# --------------------------------------------------------------------------- 14: outputs checked before any work


@pytest.mark.parametrize("option, kind", [("--out", "folder"), ("--plot", "folder"), ("--run-out", "file"),
                                          ("--cache-dir", "file"), ("--out", "under a file"),
                                          ("--run-out", "run file is a folder")])
def test_bench_checks_every_output_before_work(tmp_path, monkeypatch, option, kind):
    import koembed.cli.evaluate as evaluate_cli

    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(evaluate_cli, "run_bench", lambda *a, **k: pytest.fail("the benchmark ran"))
    (tmp_path / "isdir").mkdir()
    (tmp_path / "afile").write_text("x", encoding="utf-8")
    bad = {"folder": "isdir", "file": "afile", "under a file": "afile/results.json",
           "run file is a folder": "runs2"}[kind]
    if kind == "run file is a folder":
        (tmp_path / "runs2" / "bm25.jsonl").mkdir(parents=True)
    outputs = {"--run-out": "runs1", "--out": "results.json", "--plot": "bench.png", option: bad}
    assert_clean_exit(cli("bench", "-r", "bm25", "-q", *[x for pair in outputs.items() for x in pair]), option)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["isdir", "afile"] + (["runs2"] if "runs2" in bad
                                                                                       else []))


# --------------------------------------------------------------------------- 15: temporary files of a killed encode


def test_resumed_encode_removes_temporary_files_of_a_killed_run(shard, tiny_model_dir, docs):
    stale = [shard / ".chunk-000001.npy.k1ll3d.tmp", shard / ".manifest.json.abc123.tmp"]
    for path in stale:
        path.write_bytes(b"half-written")
    # the fixture encoded with the fp32 model: resume as it ran (backend auto would pick another setting)
    report = encode_corpus(ModelSpec(str(tiny_model_dir), precision="fp32"), *docs, shard.parent, chunk_size=16,
                           options=QUIET)
    assert (report.encoded, report.skipped) == (0, 3)
    assert not [p.name for p in shard.iterdir() if p.name.endswith(".tmp")]


# --------------------------------------------------------------------------- 16: modes without os.umask


def test_file_modes_follow_the_umask_without_setting_it(tmp_path, monkeypatch):
    previous = os.umask(0o027)
    try:
        def forbidden(*_):
            raise AssertionError("os.umask changes the whole process's umask: not thread-safe")

        monkeypatch.setattr(os, "umask", forbidden)
        with atomic_open(tmp_path / "a.txt") as handle:
            handle.write("x")
        with staged_folder(tmp_path / "folder") as stage:
            (stage / "f").write_text("y", encoding="utf-8")
        # Files written while other threads write too keep the same modes.
        threads = [threading.Thread(target=files.write_json, args=(tmp_path / f"t{i}.json", {"i": i}))
                   for i in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        monkeypatch.undo()
        os.umask(previous)
    assert (tmp_path / "a.txt").stat().st_mode & 0o777 == 0o640
    assert (tmp_path / "folder").stat().st_mode & 0o777 == 0o750
    assert {(tmp_path / f"t{i}.json").stat().st_mode & 0o777 for i in range(8)} == {0o640}


# --------------------------------------------------------------------------- kill -9 at exact points (slow)


def run_killed(target: Path, nth: int, when: str, *args) -> subprocess.CompletedProcess:
    """``koembed ARGS`` in a subprocess that SIGKILLs itself at its ``nth`` os.replace into ``target``."""
    return subprocess.run([sys.executable, "-m", "tests.helpers", "kill-on-replace", str(target), str(nth), when,
                           *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300,
                          env={**os.environ, "HF_HUB_OFFLINE": "1"})


def index_snapshot(path: Path, model, queries: list[str]):
    index = load_index(path, encoder=model)
    return index.doc_ids, dict(index.passages), index.search(queries, 10), index.search(queries, 10, mode="bm25")


# os.replace into the index during `index add`: 1 passages.jsonl, 2 passages.rows.npy, 3 tombstones.json, then the
# F files of the new BM25 segment (koembed.index.bm25_store: 1 + 5 per field, 21 for bm25-phrase), F + 4 the version
# folder, F + 5 manifest.json (the switch). Killed before 1: a half-written file in a staged folder; after 4: one
# segment file written; before F + 3: the segment's last file half-written; before F + 5: v000002 in place but not
# current; after F + 5: switched, v000001 not yet removed.
SEGMENT_FILES = 1 + 5 * 4
INDEX_ADD_KILLS = [(1, "before", False), (4, "after", False), (SEGMENT_FILES + 3, "before", False),
                   (SEGMENT_FILES + 5, "before", False), (SEGMENT_FILES + 5, "after", True)]
# During `index delete` (part-wise: koembed.index.versions.drop) no segment and no passage file is written:
# 1 passages.rows.npy, 2 tombstones.json, 3 the folder, 4 the switch.
INDEX_DELETE_KILLS = [(1, "before", False), (2, "after", False), (4, "before", False), (4, "after", True)]


@pytest.mark.slow
def test_kill_9_during_index_add_at_three_points(base_index, tiny_model_dir, model, sample, tmp_path):
    new_docs = tmp_path / "new.jsonl"
    new_docs.write_text("".join(json.dumps({"id": k, "text": v}, ensure_ascii=False) + "\n"
                                for k, v in NEW_DOCS.items()), encoding="utf-8")
    queries = list(sample.queries.values())[:8] + list(NEW_DOCS.values())
    straight = Path(shutil.copytree(base_index, tmp_path / "straight"))
    add_documents(straight, list(NEW_DOCS), list(NEW_DOCS.values()), encoder=model)
    want = index_snapshot(straight, model, queries)
    before = index_snapshot(base_index, model, queries)
    for nth, when, switched in INDEX_ADD_KILLS:
        idx = Path(shutil.copytree(base_index, tmp_path / f"killed-{nth}-{when}"))
        killed = run_killed(idx, nth, when, "index", "add", "--index", idx, "--docs", new_docs, "-q")
        assert killed.returncode == -9, killed.stderr[-2000:]
        # The index is usable right away: the previous version, or the new one once switched.
        assert index_snapshot(idx, model, queries) == (want if switched else before), (nth, when)
        rerun = cli("index", "add", "--index", idx, "--docs", new_docs, "-q")  # the user runs it again
        assert rerun.exit_code == (2 if switched else 0), rerun.output
        assert index_snapshot(idx, model, queries) == want, (nth, when)
        assert sorted(p.name for p in idx.iterdir()) == [".lock", "manifest.json", "v000002"], (nth, when)


@pytest.mark.slow
def test_kill_9_during_index_delete_is_all_or_nothing_to_readers(base_index, model, sample, tmp_path):
    """Issue 21.10: readers see either none or all of an interrupted delete, never a part of it."""
    gone = list(sample.corpus)[:20]  # under half the segment: no segment is rewritten
    queries = list(sample.queries.values())[:12]
    straight = Path(shutil.copytree(base_index, tmp_path / "straight"))
    delete_documents(straight, gone)
    want = index_snapshot(straight, model, queries)
    before = index_snapshot(base_index, model, queries)
    ids = [arg for doc_id in gone for arg in ("--id", doc_id)]
    for nth, when, switched in INDEX_DELETE_KILLS:
        idx = Path(shutil.copytree(base_index, tmp_path / f"killed-{nth}-{when}"))
        killed = run_killed(idx, nth, when, "index", "delete", "--index", idx, *ids)
        assert killed.returncode == -9, killed.stderr[-2000:]
        assert index_snapshot(idx, model, queries) == (want if switched else before), (nth, when)
        rerun = cli("index", "delete", "--index", idx, *ids)  # the user runs it again
        assert rerun.exit_code == (2 if switched else 0), rerun.output
        assert index_snapshot(idx, model, queries) == want, (nth, when)
        assert sorted(p.name for p in idx.iterdir()) == [".lock", "manifest.json", "v000002"], (nth, when)


# During `index optimize` (koembed.index.versions.merge_lexical): 1-21 the merged segment's files, 22 the version
# folder, 23 the switch. Killed before 1: a half-written first file; after 11: half the segment written; before 22: the
# segment complete in a staged folder; before 23: v000003 in place but not current; after 23: switched.
INDEX_OPTIMIZE_KILLS = [(1, "before", False), (11, "after", False), (22, "before", False), (23, "before", False),
                        (23, "after", True)]


@pytest.mark.slow
def test_kill_9_during_index_optimize_keeps_the_index_searchable(base_index, model, sample, tmp_path):
    grown = Path(shutil.copytree(base_index, tmp_path / "grown"))
    add_documents(grown, list(NEW_DOCS), list(NEW_DOCS.values()), encoder=model)  # two BM25 segments
    queries = list(sample.queries.values())[:8] + list(NEW_DOCS.values())
    want = index_snapshot(grown, model, queries)  # merging changes no ranking
    for nth, when, switched in INDEX_OPTIMIZE_KILLS:
        idx = Path(shutil.copytree(grown, tmp_path / f"killed-{nth}-{when}"))
        killed = run_killed(idx, nth, when, "index", "optimize", "--index", idx)
        assert killed.returncode == -9, killed.stderr[-2000:]
        segments = json.loads((idx / "manifest.json").read_text())["lexical"]["segments"]
        assert len(segments) == (1 if switched else 2), (nth, when)
        assert index_snapshot(idx, model, queries) == want, (nth, when)
        rerun = cli("index", "optimize", "--index", idx)  # the user runs it again
        assert rerun.exit_code == 0 and ("nothing to merge" if switched else "merged") in rerun.output, rerun.output
        assert index_snapshot(idx, model, queries) == want, (nth, when)
        assert sorted(p.name for p in idx.iterdir()) == [".lock", "manifest.json", "v000003"], (nth, when)


@pytest.mark.slow
def test_kill_9_during_encode_at_two_points(tiny_model_dir, model, docs, tmp_path):
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("".join(json.dumps({"id": i, "text": t}, ensure_ascii=False) + "\n" for i, t in zip(*docs)),
                      encoding="utf-8")
    straight = encode_corpus(str(tiny_model_dir), *docs, tmp_path / "straight", chunk_size=16, options=QUIET,
                             encoder=model)
    want, _ = read_embeddings([straight.shard_dir], *docs)
    # os.replace into OUT: 1 the first manifest, then per chunk its .npy, its ids, the manifest listing it.
    for nth, when in [(5, "before"), (6, "after")]:
        out = tmp_path / f"killed-{nth}-{when}"
        command = ["encode", "--model", tiny_model_dir, "--corpus", corpus, "--out", out, "--chunk-size", 16,
                   "--precision", "fp32", "-q"]  # as the straight run
        killed = run_killed(out, nth, when, *command)
        assert killed.returncode == -9, killed.stderr[-2000:]
        shard_dir = out / "shard-0-of-1"
        manifest = json.loads((shard_dir / "manifest.json").read_text(encoding="utf-8"))
        assert [c["chunk"] for c in manifest["chunks"]] == [0] and not manifest["complete"]
        if when == "before":
            assert [p for p in shard_dir.iterdir() if p.name.endswith(".tmp")]  # the kill left a partial file
        rerun = cli(*command)
        assert rerun.exit_code == 0, rerun.output
        assert "chunks encoded 2, reused 1" in " ".join(rerun.output.split())
        assert not [p.name for p in shard_dir.iterdir() if p.name.endswith(".tmp")]
        got, _ = read_embeddings([out], *docs)
        np.testing.assert_array_equal(got, want)
