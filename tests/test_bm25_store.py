"""Stored BM25 segments: the same scores as bm25s fitted in memory on the live passages, through builds, adds,
deletes and merges; what an add writes; damaged segments; config errors."""

from __future__ import annotations

import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest

import koembed.index.bm25_store as bm25_store
from koembed.errors import IndexStoreError, KoembedError, SpecError
from koembed.index import add_documents, build_index, delete_documents, load_index
from koembed.lexical import FIELDS, BM25Retriever, LexicalConfig
from koembed.lexical.bm25 import _FieldIndex
from koembed.lexical.fields import field_tokens
from koembed.lexical.segments import StoredFields, write_segment
from tests.helpers import QUIET

WORDS = [f"w{i}/N" for i in range(40)] + ["보증금/N", "전세/N", "반환/N", "돌려받/V"]


def _docs(n: int, seed: int) -> tuple[list[list[str]], list[str]]:
    rng = random.Random(seed)
    tokens = [rng.choices(WORDS, k=rng.randint(0, 12)) for _ in range(n)]
    return tokens, [" ".join(t.split("/")[0] for t in toks) for toks in tokens]


@pytest.mark.parametrize("k1,b", [(1.2, 0.75), (0.9, 0.4), (2.0, 1.0)])
def test_segments_score_bit_for_bit_as_bm25s_on_the_live_passages(tmp_path, k1, b):
    tokens, texts = _docs(120, seed=3)
    pids = list(range(0, 240, 2))
    cuts = [0, 50, 51, 120]  # three segments, one of a single passage
    for i, (a, z) in enumerate(zip(cuts, cuts[1:])):
        write_segment(tmp_path, f"s{i + 1:06d}", pids[a:z], tokens[a:z], texts[a:z], FIELDS)
    live = [r for r in range(120) if r % 7 != 3]  # some passages deleted
    stored = StoredFields(tmp_path, ["s000001", "s000002", "s000003"], FIELDS, [pids[r] for r in live], k1, b)
    rng = random.Random(5)
    for field in FIELDS:
        memory = _FieldIndex([field_tokens(field, tokens[r], texts[r]) for r in live], k1, b)
        for _ in range(30):
            q_tokens = rng.choices(WORDS + ["없는/N"], k=rng.randint(1, 5))  # repeats and unknown terms too
            terms = field_tokens(field, q_tokens, " ".join(t.split("/")[0] for t in q_tokens))
            got, want = stored.fields[field].scores(terms), memory.scores(terms)
            assert got.dtype == want.dtype == np.float32
            assert np.array_equal(got, want), (field, terms)


def test_segments_missing_a_live_passage_are_refused(tmp_path):
    tokens, texts = _docs(5, seed=1)
    write_segment(tmp_path, "s000001", [0, 1, 2, 3, 4], tokens, texts, ("unigram",))
    with pytest.raises(IndexStoreError, match="4 of the 5 live passages"):
        StoredFields(tmp_path, ["s000001"], ("unigram",), [0, 1, 2, 3, 9], 1.2, 0.75)


def _fresh_bm25(index) -> BM25Retriever:
    bm25 = BM25Retriever(LexicalConfig.from_dict(index.manifest.bm25), show_progress=False)
    bm25.fit(index.doc_ids, [index.text(d) for d in index.doc_ids])
    return bm25


def _inode(folder: Path, name: str) -> int:
    return (folder / name).stat().st_ino


def test_add_writes_one_segment_and_links_the_rest_and_ranks_as_a_refit(tmp_path, tiny_model_dir, model, sample):
    docs, texts = list(sample.corpus), list(sample.corpus.values())
    path = tmp_path / "idx"
    build_index(str(tiny_model_dir), docs[:-6], texts[:-6], path, options=QUIET, encoder=model)
    v1 = json.loads((path / "manifest.json").read_text())
    old = {n: _inode(path / "v000001", n) for n in v1["files"] if n.startswith("lex.")}
    add_documents(path, docs[-6:], texts[-6:], encoder=model)
    v2 = json.loads((path / "manifest.json").read_text())
    assert [s["passages"] for s in v2["lexical"]["segments"]] == [len(docs) - 6, 6]
    new_files = {n for n in v2["files"] if n.startswith("lex.s000002.")}
    assert len(new_files) == 1 + 5 * len(LexicalConfig.from_dict(v2["bm25"]).fields)
    for name, inode in old.items():  # unchanged segment: the same file, its checksum carried over
        assert _inode(path / "v000002", name) == inode and v2["files"][name] == v1["files"][name]
    queries = list(sample.queries.values())[:20] + [texts[-1]]
    index = load_index(path, encoder=model)
    assert index.search(queries, 10, mode="bm25") == _fresh_bm25(index).search(queries, 10)

    delete_documents(path, docs[:3] + docs[-2:])  # a delete rewrites no segment
    v3 = json.loads((path / "manifest.json").read_text())
    assert v3["lexical"]["segments"] == v2["lexical"]["segments"]
    index = load_index(path, encoder=model)
    assert index.search(queries, 10, mode="bm25") == _fresh_bm25(index).search(queries, 10)


def test_small_segments_merge_and_half_deleted_ones_are_rewritten(tmp_path, tiny_model_dir, model, sample,
                                                                 monkeypatch):
    monkeypatch.setattr(bm25_store, "SMALL", 3)
    monkeypatch.setattr(bm25_store, "MAX_SMALL", 2)
    docs, texts = list(sample.corpus), list(sample.corpus.values())
    path = tmp_path / "idx"
    build_index(str(tiny_model_dir), docs[:40], texts[:40], path, options=QUIET, encoder=model)
    queries = list(sample.queries.values())[:20]
    sizes = []
    for start in range(40, 48, 2):  # four adds of 2 passages: the third small one triggers a merge
        add_documents(path, docs[start:start + 2], texts[start:start + 2], encoder=model)
        manifest = json.loads((path / "manifest.json").read_text())
        sizes.append([s["passages"] for s in manifest["lexical"]["segments"]])
    assert sizes == [[40, 2], [40, 2, 2], [40, 6], [40, 6, 2]]
    index = load_index(path, encoder=model)
    assert index.search(queries, 10, mode="bm25") == _fresh_bm25(index).search(queries, 10)
    delete_documents(path, docs[:25])  # more than half of the first segment: rewritten with its 15 live passages
    manifest = json.loads((path / "manifest.json").read_text())
    assert [s["passages"] for s in manifest["lexical"]["segments"]] == [15, 6, 2]
    assert manifest["lexical"]["segments"][0]["name"] != "s000001"
    index = load_index(path, encoder=model)
    assert index.search(queries, 10, mode="bm25") == _fresh_bm25(index).search(queries, 10)


def test_an_index_without_segments_is_fitted_in_memory_and_gets_them_at_its_next_change(tmp_path, tiny_model_dir,
                                                                                        model, sample):
    docs, texts = list(sample.corpus), list(sample.corpus.values())
    path = tmp_path / "idx"
    build_index(str(tiny_model_dir), docs[:-1], texts[:-1], path, options=QUIET, encoder=model)
    manifest = json.loads((path / "manifest.json").read_text())  # make it as an index built before 0.4
    del manifest["lexical"], manifest["sizes"]
    for name in [n for n in manifest["files"] if n.startswith("lex.") or n == "passages.rows.npy"]:
        del manifest["files"][name]
        (path / manifest["version_dir"] / name).unlink()
    (path / "manifest.json").write_text(json.dumps(manifest))
    queries = list(sample.queries.values())[:20]
    old = load_index(path, encoder=model)
    assert old.search(queries, 10, mode="bm25") == _fresh_bm25(old).search(queries, 10)
    add_documents(path, docs[-1:], texts[-1:], encoder=model)
    assert json.loads((path / "manifest.json").read_text())["lexical"]["segments"] == [
        {"name": "s000001", "passages": len(docs)}]
    index = load_index(path, encoder=model)
    assert index.search(queries, 10, mode="bm25") == _fresh_bm25(index).search(queries, 10)


def test_damaged_or_unlisted_segments_are_load_errors(tmp_path, tiny_model_dir, model, sample):
    path = tmp_path / "idx"
    build_index(str(tiny_model_dir), list(sample.corpus)[:10], list(sample.corpus.values())[:10], path,
                options=QUIET, encoder=model)
    altered = Path(shutil.copytree(path, tmp_path / "altered"))
    target = altered / "v000001" / "lex.s000001.unigram.tf.npy"
    target.write_bytes(target.read_bytes()[:-1] + b"\x07")
    with pytest.raises(IndexStoreError, match="lex.s000001.unigram.tf.npy does not match its sha256"):
        load_index(altered, encoder=model, verify=True)  # a load for search checks the size, which is unchanged
    for record in ({"segments": [{"name": "../x", "passages": 1}], "next": 2}, {"segments": "s000001"}):
        bad = Path(shutil.copytree(path, tmp_path / f"bad{len(str(record))}"))
        manifest = json.loads((bad / "manifest.json").read_text())
        manifest["lexical"] = record
        (bad / "manifest.json").write_text(json.dumps(manifest))
        with pytest.raises(IndexStoreError, match="'lexical' must be"):
            load_index(bad, encoder=model)


@pytest.mark.parametrize("data,words", [
    ({"b": 0.75}, "lacks 'k1'"),
    ({"k1": 1.2, "b": 0.75, "weights": {"unigram": -1}}, "positive weights"),
    ({"k1": 1.2, "b": 0.75, "weights": ["unigram"]}, "'weights' must map"),
    ({"k1": -1, "b": 0.75}, "k1 must be"),
    ({"k1": 1.2, "b": 2}, "b within \\[0, 1\\]"),
    ({"k1": 1.2, "b": 0.75, "normalization": "log"}, "unknown normalization"),
    ("bm25", "expected a JSON object"),
])
def test_a_bad_recorded_lexical_config_is_a_koembed_error_naming_the_key(data, words):
    with pytest.raises(IndexStoreError, match=words) as caught:
        LexicalConfig.from_dict(data, "manifest.json: bm25")
    assert "manifest.json: bm25" in str(caught.value)


def test_search_before_fit_is_a_koembed_error():
    with pytest.raises(KoembedError, match="call fit\\(\\) before search\\(\\)"):
        BM25Retriever(show_progress=False).search(["전세"], 3)
    with pytest.raises(SpecError, match="positive weights"):
        LexicalConfig({"unigram": float("nan")})
