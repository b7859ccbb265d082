"""One interface for both stores: both loaded indexes satisfy SearchIndex, both manifests share IndexManifest,
the public functions find the store by the name a manifest records, and an unknown one is refused by name."""

from __future__ import annotations

import json
import shutil

import pytest

from koembed.index import (
    STORE_REGISTRY,
    STORES,
    Index,
    IndexManifest,
    IndexStoreError,
    Manifest,
    QdrantIndex,
    QdrantManifest,
    QdrantTarget,
    SearchIndex,
    build_index,
    index_info,
    load_index,
)
from koembed.index.manifest import MANIFEST
from tests.helpers import QUIET


def test_both_stores_share_the_protocols(tmp_path, tiny_model_dir, model, corpus, index):
    ids, texts = corpus[0][:6], corpus[1][:6]
    qdrant = build_index(str(tiny_model_dir), ids, texts, tmp_path / "q", target=QdrantTarget(), options=QUIET,
                         encoder=model)
    assert isinstance(qdrant, QdrantManifest) and isinstance(qdrant, IndexManifest)
    assert issubclass(Manifest, IndexManifest) and isinstance(index.manifest, IndexManifest)
    loaded = load_index(tmp_path / "q", encoder=model)
    try:
        assert isinstance(loaded, QdrantIndex) and isinstance(loaded, SearchIndex)
        assert isinstance(index, Index) and isinstance(index, SearchIndex)
        assert len(loaded) == 6 and loaded.text(ids[0]) == texts[0]
    finally:
        loaded.close()
    assert STORES == ("faiss", "qdrant") and {s.name for s in STORE_REGISTRY.values()} == set(STORES)
    assert index_info(tmp_path / "q")["store"] == "qdrant" and index_info(index.path)["store"] == "faiss"


def test_a_manifest_naming_an_unknown_store_is_refused(tmp_path, index):
    copy = tmp_path / "idx"
    shutil.copytree(index.path, copy)
    data = json.loads((copy / MANIFEST).read_text(encoding="utf-8"))
    (copy / MANIFEST).write_text(json.dumps({**data, "store": "milvus"}), encoding="utf-8")
    for call in (lambda: load_index(copy), lambda: index_info(copy)):
        with pytest.raises(IndexStoreError, match="unknown store 'milvus'.*faiss, qdrant"):
            call()
