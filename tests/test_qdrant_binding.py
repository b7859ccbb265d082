"""The Qdrant store's manifest is bound to its collection and read strictly (issues 21.7, 21.9, 22 section 2):
another index's storage, a collection rebuilt under the same name, a damaged storage folder, a forged or
malformed manifest are each a clean error (the CLI exits 2) and never delete, search or run anything."""

from __future__ import annotations

import json
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from koembed.cli import app
from koembed.index import IndexStoreError, QdrantTarget, add_documents, build_index, index_info, load_index
from tests.helpers import NEW_TEXT, QUIET

runner = CliRunner()


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir, model, corpus) -> Path:
    """The sample's Qdrant index, built once; each test edits a copy."""
    out = tmp_path_factory.mktemp("qdrant-bound") / "idx"
    build_index(str(tiny_model_dir), *corpus, out, target=QdrantTarget(), options=QUIET, encoder=model)
    return out


def edit_manifest(index_dir: Path, **changes) -> None:
    path = index_dir / "manifest.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    for key, value in changes.items():
        if "." in key:
            outer, inner = key.split(".", 1)
            data[outer][inner] = value
        else:
            data[key] = value
    path.write_text(json.dumps(data), encoding="utf-8")


def refused(index_dir: Path, *match: str) -> str:
    """``index info`` and ``search`` both exit 2 with a message holding every ``match``."""
    for args in (["index", "info", "-i", str(index_dir)], ["search", "-i", str(index_dir), "--mode", "bm25", "여권"]):
        result = runner.invoke(app, args)
        assert result.exit_code == 2, (args, result.output, repr(result.exception))
        said = " ".join(result.output.split())  # the CLI wraps long lines
        for m in match:
            assert m in said, (m, result.output)
    return result.output


def live_points(index_dir: Path, **changes) -> int:
    """What the collection holds, read with the pending change (if any) taken out of the manifest."""
    edit_manifest(index_dir, pending=None, **changes)
    return index_info(index_dir)["collection_now"]["points"]


def test_forged_pending_add_deletes_nothing(tmp_path, built, model):
    """Before: builds wrote the constant txn "build", so this pending add hid every passage from search and the
    next add deleted all 48."""
    index_dir = shutil.copytree(built, tmp_path / "idx")
    edit_manifest(index_dir, pending={"op": "add", "txn": "build"})
    refused(index_dir, "pending", "rebuild the index")
    with pytest.raises(IndexStoreError, match="pending"):
        add_documents(index_dir, ["pet-01"], [NEW_TEXT], encoder=model)
    manifest = json.loads((index_dir / "manifest.json").read_text(encoding="utf-8"))
    # a well-formed add naming the build's own id is refused too
    edit_manifest(index_dir, pending={"op": "add", "txn": manifest["build_id"], "passages": 48})
    refused(index_dir, "pending.txn")
    assert live_points(index_dir) == 48


def test_pending_add_of_another_change_removes_nothing(tmp_path, built, model):
    index_dir = shutil.copytree(built, tmp_path / "idx")
    add_documents(index_dir, ["pet-01", "pet-02"], [NEW_TEXT, NEW_TEXT + " 둘째"], encoder=model)
    with load_index(index_dir) as idx:
        txn = idx._client.retrieve("koembed", [idx_point("pet-01")], with_payload=["txn"])[0].payload["txn"]
        build_txn = idx._client.retrieve("koembed", [idx_point("fin-01")], with_payload=["txn"])[0].payload["txn"]
    assert build_txn == idx.manifest.build_id and len(txn) == 32 and txn != build_txn  # unique ids, not "build"
    edit_manifest(index_dir, pending={"op": "add", "txn": txn, "passages": 1}, **{"counts.passages": 48})
    with pytest.raises(IndexStoreError, match="would remove 2 points, more than the 1"):
        add_documents(index_dir, ["pet-03"], [NEW_TEXT], encoder=model)
    assert live_points(index_dir, **{"counts.passages": 50}) == 50


def idx_point(doc_id: str) -> str:
    from koembed.index.qdrant import point_id

    return point_id(doc_id)


@pytest.mark.parametrize("key, value, match", [
    ("pending", {"op": "add", "passages": 3}, "pending"),                       # without txn
    ("pending", [{"op": "add", "txn": "0" * 32, "passages": 3}], "pending"),     # as a list
    ("pending", {"op": "drop"}, "pending.op"),
    ("pending", {"op": "delete", "ids": "fin-01"}, "pending"),
    ("local_path", None, "local_path / url"),
    ("bm25.weights", {"unigram": -1.0}, "bm25"),
    ("bm25.k1", -1.2, "k1"),
    ("bm25.avgdl", {"unigram": 0, "bigram": 1.0, "pair": 1.0, "char": 1.0}, "bm25.avgdl"),
    ("counts", {"passages": -5, "deleted": 0}, "counts"),
    ("surprise", 1, "unknown keys 'surprise'"),
    ("build_id", "build", "build_id"),
])
def test_malformed_manifest_is_a_clean_error(tmp_path, built, key, value, match):
    index_dir = shutil.copytree(built, tmp_path / "idx")
    edit_manifest(index_dir, **{key: value})
    refused(index_dir, match)


def test_avgdl_zero_never_reaches_an_add(tmp_path, built, model):
    """Before: ``avgdl: 0`` loaded, and the next add died with ZeroDivisionError."""
    index_dir = shutil.copytree(built, tmp_path / "idx")
    edit_manifest(index_dir, **{"bm25.avgdl": {"unigram": 0.0, "bigram": 2.0, "pair": 2.0, "char": 2.0}})
    with pytest.raises(IndexStoreError, match="bm25.avgdl"):
        add_documents(index_dir, ["pet-01"], [NEW_TEXT], encoder=model)


def test_manifest_pointed_at_another_index_is_refused(tmp_path, built, tiny_model_dir, model, corpus):
    """``local_path: "../q0/qdrant"``: another index's storage, same collection name, same model."""
    other = tmp_path / "q0"
    build_index(str(tiny_model_dir), corpus[0][:10], corpus[1][:10], other, target=QdrantTarget(), options=QUIET,
                encoder=model)
    index_dir = shutil.copytree(built, tmp_path / "idx")
    edit_manifest(index_dir, local_path="../q0/qdrant")
    refused(index_dir, "belongs to another build", "not this index's collection")


def test_collection_rebuilt_under_the_same_name_from_another_model(tmp_path, built, corpus):
    from koembed.models import load_model
    from koembed.models.testing import make_tiny_xlmr

    storage = tmp_path / "storage"
    first = tmp_path / "a"
    model_dir = make_tiny_xlmr(tmp_path / "m", seed=3)
    build_index(str(model_dir), *corpus, first, target=QdrantTarget(path=str(storage)), options=QUIET,
                encoder=load_model(str(model_dir)))
    shutil.rmtree(storage / "koembed")  # deleted (on a server: delete_collection) ...
    other_dir = make_tiny_xlmr(tmp_path / "o", seed=4)
    build_index(str(other_dir), *corpus, tmp_path / "b", target=QdrantTarget(path=str(storage)), options=QUIET,
                encoder=load_model(str(other_dir)))  # ... and rebuilt under the same name from another model
    refused(first, "built from another model", "rebuild the index")


@pytest.mark.parametrize("damage", ["collection folder deleted", "segments and log deleted", "engine config garbage",
                                    "metadata garbage", "segment files truncated"])
def test_damaged_storage_is_a_clean_error(tmp_path, built, damage):
    """Before (local mode): a deleted collection gave ``passages: 200, points: 0`` and "no hits" with exit 0, a
    truncated storage.sqlite or garbage meta.json a traceback."""
    index_dir = shutil.copytree(built, tmp_path / "idx")
    collection = index_dir / "qdrant" / "koembed"
    if damage == "collection folder deleted":
        shutil.rmtree(collection)
        match = "does not exist"
    elif damage == "segments and log deleted":  # (segments alone: the engine replays its write-ahead log)
        shutil.rmtree(collection / "shard" / "segments")
        shutil.rmtree(collection / "shard" / "wal")
        match = "holds 0 of this index's passages, its manifest records 48"
    elif damage == "engine config garbage":
        (collection / "shard" / "edge_config.json").write_text("garbage", encoding="utf-8")
        match = "rebuild the index"
    elif damage == "metadata garbage":
        (collection / "metadata.json").write_text("[1, 2", encoding="utf-8")
        match = "rebuild the index"
    else:
        for f in (collection / "shard" / "segments").rglob("*"):
            if f.is_file() and f.stat().st_size > 16:
                with open(f, "r+b") as handle:
                    handle.truncate(f.stat().st_size // 2)
        match = "rebuild the index"
    refused(index_dir, match)


def test_a_pickled_local_mode_storage_never_runs(tmp_path, built):
    """qdrant-client's local mode unpickles every row of storage.sqlite: a row inserted there ran code on
    ``index info``. The store no longer opens that format, whatever the manifest says."""
    marker = tmp_path / "ran"
    storage = tmp_path / "evil"
    (storage / "collection" / "koembed").mkdir(parents=True)
    (storage / "meta.json").write_text(json.dumps({"collections": {"koembed": {}}, "aliases": {}}), encoding="utf-8")
    payload = b"cos\nsystem\n(S'touch " + str(marker).encode() + b"'\ntR."  # pickle protocol 0: os.system(...)
    with sqlite3.connect(storage / "collection" / "koembed" / "storage.sqlite") as db:
        db.execute("CREATE TABLE points (id TEXT, point BLOB)")
        db.execute("INSERT INTO points VALUES (?, ?)", ("x", payload))
    for version in (1, 2):  # an old (local mode) manifest, and a current one pointed at that folder
        index_dir = shutil.copytree(built, tmp_path / f"idx{version}")
        edit_manifest(index_dir, local_path=str(storage), format_version=version)
        refused(index_dir, "rebuild the index")
    assert not marker.exists()
