"""Stored BM25 segments: the same scores as bm25s fitted in memory on the live passages, through builds, adds,
deletes and merges; what an add writes; damaged segments; config errors."""

from __future__ import annotations

import itertools
import json
import random
import shutil
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

import koembed.index.bm25_store as bm25_store
import koembed.lexical.segments as segments
from koembed.cli import app
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
    for i, (a, z) in enumerate(itertools.pairwise(cuts)):
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


def _stored_retriever(stored: StoredFields, pids: list[int], config: LexicalConfig, pruned: bool) -> BM25Retriever:
    bm25 = BM25Retriever(config, show_progress=False)
    bm25.use_fields([f"d{p:05d}" for p in pids], stored.fields,
                    candidates=stored.top_candidates if pruned else None)
    return bm25


@pytest.mark.parametrize("k", [1, 3, 10, 60])
def test_pruned_top_k_is_the_top_k_of_scoring_every_passage(tmp_path, monkeypatch, k):
    monkeypatch.setattr(segments, "_DENSE_SHARE", 1e-9)  # never fall back: the pruned path on every query
    monkeypatch.setattr(segments, "_PRUNE_FROM", 0)
    tokens, texts = _docs(300, seed=11)
    pids = list(range(300))
    for i, (a, z) in enumerate([(0, 140), (140, 141), (141, 300)]):
        write_segment(tmp_path, f"s{i + 1:06d}", pids[a:z], tokens[a:z], texts[a:z], FIELDS)
    live = [p for p in pids if p % 5 != 2]  # deletions in every segment: postings of dead passages skipped
    stored = StoredFields(tmp_path, ["s000001", "s000002", "s000003"], FIELDS, live, 1.2, 0.75)
    config = LexicalConfig({"unigram": 1.0, "bigram": 0.2, "pair": 0.3, "char": 0.5})
    pruned, every = (_stored_retriever(stored, live, config, p) for p in (True, False))
    rng = random.Random(k)
    queries = [" ".join(w.split("/")[0] for w in rng.choices(WORDS, k=rng.randint(1, 8))) for _ in range(60)]
    queries += ["w1 w1 w1 w2", "없는말"]  # repeated terms count again; nothing matches
    calls = []
    monkeypatch.setattr(stored, "top_candidates", lambda *a: calls.append(1) or StoredFields.top_candidates(
        stored, *a))
    pruned._candidates = stored.top_candidates
    got = pruned.search(queries, k)
    assert len(calls) == len(queries)  # the pruned path ran, and gave exactly the same hits and scores
    assert got == every.search(queries, k)
    assert pruned.prunes and not every.prunes
    assert pruned.search(queries, k, prune=False) == got and len(calls) == len(queries)  # public switch: not pruned
    assert any(len(h) == min(k, len(live)) for h in got) and got[-1] == []


def test_pruning_reads_less_than_every_posting(tmp_path, monkeypatch):
    """Not a timing: on a corpus where one rare term decides the top 3, the common terms' postings are not read
    whole (binary searches complete the few passages that hold the rare one)."""
    monkeypatch.setattr(segments, "_PRUNE_FROM", 0)
    common = [["흔한/N", "말/N"] * 3 for _ in range(2000)]
    rare = [["흔한/N", "드문/N"] for _ in range(3)]
    tokens = rare + common
    texts = [" ".join(t.split("/")[0] for t in toks) for toks in tokens]
    write_segment(tmp_path, "s000001", list(range(len(tokens))), tokens, texts, ("unigram",))
    stored = StoredFields(tmp_path, ["s000001"], ("unigram",), list(range(len(tokens))), 1.2, 0.75)
    read = []
    field = stored.fields["unigram"]
    original = field.postings
    field.postings = lambda term: read.append(term.term) or original(term)  # type: ignore[method-assign]
    rows, scores = stored.top_candidates({"unigram": ["흔한/N", "드문/N", "말/N"]}, {"unigram": 1.0}, 3)
    assert read == ["드문/N"]
    top = rows[np.argsort(-scores, kind="stable")[:3]]
    assert sorted(top.tolist()) == [0, 1, 2]


def test_merged_segments_equal_one_segment_written_at_once(tmp_path):
    tokens, texts = _docs(90, seed=4)
    pids = [3 * p + 1 for p in range(90)]
    whole, parts = tmp_path / "whole", tmp_path / "parts"
    write_segment(whole, "s000001", pids, tokens, texts, FIELDS)
    for i, (a, z) in enumerate([(0, 30), (30, 31), (31, 90)]):
        write_segment(parts, f"s{i + 1:06d}", pids[a:z], tokens[a:z], texts[a:z], FIELDS)
    names = segments.merge_segments(parts, "s000009", ["s000001", "s000002", "s000003"], FIELDS)
    assert names == segments.segment_files("s000009", FIELDS)
    for name in segments.segment_files("s000001", FIELDS):
        want = np.load(whole / name)
        got = np.load(parts / name.replace("s000001", "s000009"))
        assert got.dtype == want.dtype and np.array_equal(got, want), name


def test_a_build_writes_one_segment_and_optimize_merges_adds(tmp_path, tiny_model_dir, model, sample, monkeypatch):
    monkeypatch.setattr(bm25_store, "SEGMENT_DOCS", 7)  # a build derives its fields in chunks of 7, then merges
    docs, texts = list(sample.corpus), list(sample.corpus.values())
    path = tmp_path / "idx"
    build_index(str(tiny_model_dir), docs[:30], texts[:30], path, options=QUIET, encoder=model)
    manifest = json.loads((path / "manifest.json").read_text())
    assert [s["passages"] for s in manifest["lexical"]["segments"]] == [30]
    merged = manifest["lexical"]["segments"][0]["name"]
    assert merged == "s000006"  # after the five chunks s000001-s000005, which are gone
    assert {n for n in manifest["files"] if n.startswith("lex.")} == set(segments.segment_files(merged, FIELDS))
    assert sorted(p.name for p in (path / "v000001").glob("lex.*")) == sorted(segments.segment_files(merged, FIELDS))
    add_documents(path, docs[30:36], texts[30:36], encoder=model)
    delete_documents(path, docs[:2] + docs[31:32])
    queries = list(sample.queries.values())[:20]
    before = load_index(path, encoder=model).search(queries, 10, mode="bm25")
    result = CliRunner().invoke(app, ["index", "optimize", "--index", str(path)])
    assert result.exit_code == 0, result.output
    assert "merged" in result.output
    manifest = json.loads((path / "manifest.json").read_text())
    assert [s["passages"] for s in manifest["lexical"]["segments"]] == [36]  # deleted passages kept, skipped
    assert manifest["version_dir"] == "v000004"
    index = load_index(path, encoder=model, verify=True)  # every file's sha256 checked
    assert index.search(queries, 10, mode="bm25") == before == _fresh_bm25(index).search(queries, 10)
    again = CliRunner().invoke(app, ["index", "optimize", "--index", str(path)])
    assert again.exit_code == 0 and "nothing to merge" in again.output
    assert json.loads((path / "manifest.json").read_text())["version_dir"] == "v000004"


@pytest.mark.slow
def test_pruned_search_equals_scoring_every_passage_on_korquad_heldout(tmp_path, korquad_path, monkeypatch):
    """Real Korean questions and paragraphs, bm25-phrase's four fields: the same top 10 and scores."""
    from koembed.data import load_retrieval_set
    from koembed.lexical import get_analyzer, lexical_config

    monkeypatch.setattr(segments, "_DENSE_SHARE", 1e-9)
    monkeypatch.setattr(segments, "_PRUNE_FROM", 0)
    rs = load_retrieval_set(korquad_path, split="test")
    texts = list(rs.corpus.values())
    tokens = get_analyzer()(texts)
    pids = list(range(len(texts)))
    half = len(texts) // 2
    for i, (a, z) in enumerate([(0, half), (half, len(texts))]):
        write_segment(tmp_path, f"s{i + 1:06d}", pids[a:z], tokens[a:z], texts[a:z], FIELDS)
    live = pids[1:]  # one deletion: a segment that is not clean
    stored = StoredFields(tmp_path, ["s000001", "s000002"], FIELDS, live, 1.2, 0.75)
    config = lexical_config("bm25-phrase", required=True)
    assert config is not None
    queries = list(rs.queries.values())
    pruned, every = (_stored_retriever(stored, live, config, p) for p in (True, False))
    assert pruned.search(queries, 10) == every.search(queries, 10)


def _mapped_kb(path: Path) -> int:
    """Resident kB of this process's mappings of ``path`` (/proc/self/smaps)."""
    total, inside = 0, False
    for line in Path("/proc/self/smaps").read_text().splitlines():
        if "-" in line.split(" ", 1)[0] and len(line.split()) >= 5:
            inside = line.endswith(str(path))
        elif inside and line.startswith("Rss:"):
            total += int(line.split()[1])
    return total


@pytest.mark.skipif(not Path("/proc/self/smaps").exists(), reason="Linux's /proc")
def test_search_unmaps_the_postings_past_the_budget_and_still_ranks_the_same(tmp_path, monkeypatch):
    monkeypatch.setattr(segments, "_PRUNE_FROM", 0)
    tokens, texts = _docs(4000, seed=2)
    write_segment(tmp_path, "s000001", list(range(4000)), tokens, texts, FIELDS)
    stored = StoredFields(tmp_path, ["s000001"], FIELDS, list(range(4000)), 1.2, 0.75)
    docs = tmp_path / "lex.s000001.pair.docs.npy"
    terms = tmp_path / "lex.s000001.pair.terms.npy"
    query = {"unigram": ["w1/N", "전세/N"], "pair": ["w1/N 전세/N"]}
    weights = {"unigram": 1.0, "pair": 0.3}
    want = stored.top_candidates(query, weights, 5)
    assert want is not None
    int(stored.segments[0].fields["pair"]["docs"].sum())  # every page of the postings mapped
    int(stored.segments[0].fields["pair"]["terms"].sum())
    full = _mapped_kb(docs)
    assert full >= docs.stat().st_size // 1024 - 4 and _mapped_kb(terms) > 0
    monkeypatch.setattr(segments, "MAPPED_BUDGET", 0)
    monkeypatch.setattr(segments, "_MAPPED_CHECK", 1)
    stored._bound_mapped_memory()  # what each search does first: past the budget, the postings are unmapped
    assert _mapped_kb(docs) == 0 < full
    assert _mapped_kb(terms) > 0  # the term dictionary stays
    got = stored.top_candidates(query, weights, 5)  # read again from the page cache
    assert got is not None and np.array_equal(got[0], want[0]) and np.array_equal(got[1], want[1])
