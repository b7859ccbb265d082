"""Qdrant store (Qdrant's Rust engine embedded): each mode equals koembed's in-memory retrievers or the same computation in
numpy, updates, a SIGKILL during an add, the model check, the CLI, and BM25 as hashed sparse vectors."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from koembed.cli import app
from koembed.index import (
    DocumentIdError,
    IndexParams,
    IndexStoreError,
    ModelMismatchError,
    QdrantTarget,
    add_documents,
    build_index,
    delete_documents,
    index_info,
    load_index,
    store_of,
)
from koembed.index.encoder import embed
from koembed.index.qdrant_sparse import (
    Field,
    average_lengths,
    collisions,
    fields_of,
    passage_vector,
    passage_vectors,
    query_vector,
    term_id,
    term_ids,
)
from koembed.lexical import DEFAULT, PRESETS, BM25Retriever, LexicalConfig, get_analyzer
from koembed.lexical.fields import field_tokens
from koembed.ranking import fuse
from koembed.retrieval.dense import DenseRetriever
from koembed.retrieval.hybrid import HybridRetriever
from tests.helpers import NEW_TEXT, QUIET, ROOT, assert_same_ranking, bm25_reference


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_model_dir, model, corpus) -> Path:
    """A Qdrant index (local mode) of the bundled sample, built once; tests that change it copy it first."""
    out = tmp_path_factory.mktemp("qdrant") / "idx"
    build_index(str(tiny_model_dir), *corpus, out, target=QdrantTarget(), options=QUIET, encoder=model)
    return out


def test_bm25_dense_and_weighted_hybrid_equal_koembed(built, model, corpus, queries, exact, bm25):
    assert store_of(built) == "qdrant"
    with load_index(built, encoder=model) as idx:
        assert len(idx) == 48
        assert_same_ranking(idx.search(queries, 10, "bm25"), bm25.search(queries, 10))
        assert_same_ranking(idx.search(queries, 10, "dense"), exact.search(queries, 10))
        cc = HybridRetriever([exact, bm25], fusion="cc", weights=[0.3, 0.7])
        assert_same_ranking(idx.search(queries, 10, "hybrid", weights=[0.3, 0.7]), cc.search(queries, 10))
        hit = idx.search(["여권 재발급"], 1, "bm25")[0][0][0]
        assert idx.text(hit) == dict(zip(*corpus))[hit]
        with pytest.raises(KeyError):
            idx.text("no such id")
        assert idx.search(["은는이가"], 5, "bm25") == [[]]  # particles only: no content morpheme, no hits


def test_hybrid_is_rrf_of_the_two_qdrant_runs(built, model, queries, exact, bm25):
    """Qdrant's RRF (k=61, ranks from 0) is koembed's RRF (k=60, ranks from 1) of the runs Qdrant fused:
    recomputed here in numpy from the engine's own dense and sparse answers."""
    from qdrant_client import models

    with load_index(built, encoder=model) as idx:
        fused = idx.search(queries, 10, "hybrid")
        vectors = embed(model, queries, QUIET)
        tokens = get_analyzer()(queries)
        fields = idx.manifest.fields
        requests = []
        for q in range(len(queries)):
            ids, values = query_vector(tokens[q], queries[q], fields)
            requests.append(models.QueryRequest(query=vectors[q].tolist(), using="dense", limit=100,
                                                with_payload=["id"]))
            requests.append(models.QueryRequest(query=models.SparseVector(indices=ids or [0], values=values or [0.0]),
                                                using="bm25", limit=100, with_payload=["id"]))
        answers = idx._client.query_batch_points("koembed", requests)  # the engine's own two runs per query
    koembed_runs = zip(exact.search(queries, 100), bm25.search(queries, 100))
    agree = 0
    for q, (got, runs) in enumerate(zip(fused, koembed_runs)):
        scores: dict[str, float] = {}
        for run in (answers[2 * q].points, answers[2 * q + 1].points):
            ranks = np.arange(1, len(run) + 1)
            for point, share in zip(run, 1.0 / (60 + ranks)):
                scores[point.payload["id"]] = scores.get(point.payload["id"], 0.0) + share
        want = sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))[:10]
        assert_same_ranking([got], [want], tol=1e-6)  # the engine sums in float32: exact ties may differ by an ulp
        koembed_rrf = fuse(list(runs), k=10)
        agree += [d for d, _ in got] == [d for d, _ in koembed_rrf]
    assert agree >= 0.9 * len(queries)  # the rest: BM25 ties ranked in Qdrant's order, not by doc id


def test_add_then_delete(tmp_path, built, model, corpus):
    index_dir = shutil.copytree(built, tmp_path / "idx")
    manifest = add_documents(index_dir, ["pet-01"], [NEW_TEXT], encoder=model)
    assert manifest.counts["passages"] == 49 and manifest.pending is None
    with pytest.raises(DocumentIdError, match="already indexed"):
        add_documents(index_dir, ["pet-01"], ["다른 글"], encoder=model)
    query = "반려묘 사료 새벽 배송"
    with load_index(index_dir, encoder=model) as idx:
        hits = idx.search([query], 49, "bm25")[0]
        assert hits[0][0] == "pet-01" and idx.text("pet-01") == NEW_TEXT
        assert [d for d, _ in idx.search([NEW_TEXT], 1, "dense")[0]] == ["pet-01"]
    # Independently: Lucene BM25 of each field over the 49 passages, average lengths fixed at build (manifest),
    # summed with the fields' weights.
    ids, texts = corpus[0] + ["pet-01"], corpus[1] + [NEW_TEXT]
    tokenizer = get_analyzer()
    tokens, query_tokens = tokenizer(texts), tokenizer([query])[0]
    want = sum(weight * bm25_reference([field_tokens(f, t, x) for t, x in zip(tokens, texts)],
                                       field_tokens(f, query_tokens, query), 1.2, 0.75, manifest.bm25["avgdl"][f])
               for f, weight in DEFAULT.weights.items())
    expected = sorted(((ids[i], want[i]) for i in np.flatnonzero(want)), key=lambda kv: (-kv[1], kv[0]))
    assert [d for d, _ in hits] == [d for d, _ in expected]
    np.testing.assert_allclose([s for _, s in hits], [s for _, s in expected], rtol=1e-5)

    manifest = delete_documents(index_dir, ["pet-01", "fin-01"])
    assert manifest.counts == {"passages": 47, "deleted": 2}
    with pytest.raises(DocumentIdError, match="no passage with id 'nope'"):
        delete_documents(index_dir, ["gov-01", "nope"])
    with load_index(index_dir, encoder=model) as idx:
        assert len(idx) == 47 and "gov-01" in idx.doc_ids
        for mode in ("dense", "bm25", "hybrid"):
            assert not {"pet-01", "fin-01"} & {d for d, _ in idx.search([query, corpus[1][0]], 47, mode)[0]}
    assert index_info(index_dir)["collection_now"]["points"] == 47


def test_sigkill_during_add_loses_nothing_and_is_undone(tmp_path, built, tiny_model_dir, model, queries, corpus):
    index_dir = shutil.copytree(built, tmp_path / "idx")
    docs = tmp_path / "many.jsonl"
    docs.write_text("".join(json.dumps({"id": f"new-{i}", "text": f"{NEW_TEXT} {i}번째 안내"}, ensure_ascii=False)
                            + "\n" for i in range(300)), encoding="utf-8")
    with load_index(index_dir, encoder=model) as idx:
        before = {mode: idx.search(queries, 10, mode) for mode in ("dense", "bm25")}
    killed = subprocess.run([sys.executable, "-m", "tests.helpers", "qdrant-add", str(tiny_model_dir),
                             str(index_dir), str(docs), "1"], cwd=ROOT, capture_output=True, text=True)
    assert killed.returncode == -9, killed.stderr[-2000:]
    info = index_info(index_dir)
    assert info["pending"]["op"] == "add" and info["collection_now"]["points"] == 48 + 256  # one batch landed
    with load_index(index_dir, encoder=model) as idx:  # searchable now: the half-done add is hidden
        assert len(idx) == 48
        for mode, hits in before.items():
            assert_same_ranking(idx.search(queries, 10, mode), hits, tol=1e-6)
        fused = idx.search(queries, 10, "hybrid")  # (its RRF ranks BM25 ties in Qdrant's order, which may move)
        assert all(len(hits) == 10 and not any(d.startswith("new-") for d, _ in hits) for hits in fused)
    manifest = add_documents(index_dir, ["pet-01"], [NEW_TEXT], encoder=model)  # undoes it, then adds
    assert manifest.pending is None and manifest.counts["passages"] == 49
    assert index_info(index_dir)["collection_now"]["points"] == 49
    with load_index(index_dir, encoder=model) as idx:
        assert set(corpus[0]) < set(idx.doc_ids)


def test_a_delete_killed_half_way_is_all_or_nothing_to_readers(tmp_path, built, model, corpus, queries):
    """Issue 21.10: a killed delete left some of its passages in the collection, and readers saw them."""
    from koembed.index.qdrant import delete_points, open_client, read_qdrant_manifest, write_qdrant_manifest

    index_dir = shutil.copytree(built, tmp_path / "idx")
    gone = list(corpus[0][:10])
    manifest = read_qdrant_manifest(index_dir)
    manifest.pending = {"op": "delete", "ids": gone}  # what delete_documents records before deleting...
    write_qdrant_manifest(index_dir, manifest)
    client = open_client(index_dir, manifest.local_path, manifest.url)
    try:
        delete_points(client, manifest.collection, gone[:4])  # ...and the points it removed before the kill
    finally:
        client.close()
    with load_index(index_dir, encoder=model) as idx:
        assert len(idx) == 48 - 10 and not set(gone) & set(idx.doc_ids)
        assert not set(gone) & set(idx.passages)
        with pytest.raises(KeyError):
            idx.text(gone[-1])
        for mode in ("dense", "bm25", "hybrid"):
            assert not set(gone) & {d for hits in idx.search(queries, 48, mode) for d, _ in hits}, mode
    manifest = add_documents(index_dir, ["pet-new"], [NEW_TEXT], encoder=model)  # the next change finishes it
    assert manifest.pending is None and manifest.counts["passages"] == 48 - 10 + 1
    assert index_info(index_dir)["collection_now"]["points"] == 48 - 10 + 1


def test_wrong_model_is_refused(tmp_path, built, corpus):
    from koembed.models import load_model
    from koembed.models.testing import make_tiny_xlmr

    other = load_model(str(make_tiny_xlmr(tmp_path / "other", seed=1)))
    with pytest.raises(ModelMismatchError, match="embeds the probe text differently"):
        load_index(built, encoder=other)
    with pytest.raises(ModelMismatchError):
        add_documents(shutil.copytree(built, tmp_path / "idx"), ["x-1"], ["새 글"], encoder=other)
    wider = load_model(str(make_tiny_xlmr(tmp_path / "wide", hidden_size=48)))
    with pytest.raises(ModelMismatchError, match="48-dimensional"):
        load_index(built, encoder=wider)


def test_refusals_name_the_problem(tmp_path, built, model, corpus):
    with pytest.raises(IndexStoreError, match="already holds an index"):
        build_index("x", *corpus, built, target=QdrantTarget(), encoder=model)
    with pytest.raises(IndexStoreError, match="not both"):
        QdrantTarget(path="a", url="http://localhost:6333")
    with pytest.raises(IndexStoreError, match="cannot reach the Qdrant server at http://127.0.0.1:9"):
        build_index("m", *corpus, tmp_path / "srv", target=QdrantTarget(url="http://127.0.0.1:9"), encoder=model,
                    options=QUIET)
    assert not (tmp_path / "srv").exists()
    storage = tmp_path / "shared-storage"
    build_index("m", *corpus, tmp_path / "a", target=QdrantTarget(path=str(storage)), encoder=model, options=QUIET)
    with pytest.raises(IndexStoreError, match=r"collection 'koembed' in .*shared-storage already exists") as err:
        build_index("m", *corpus, tmp_path / "b", target=QdrantTarget(path=str(storage)), encoder=model,
                    options=QUIET)
    assert "has a collection" not in str(err.value)  # issue 21.9: not "collection 'koembed' already has a collection"
    assert not (tmp_path / "b").exists()
    with load_index(tmp_path / "a", encoder=model), pytest.raises(IndexStoreError, match="open in another process"):
        load_index(tmp_path / "a")  # local mode: one client per storage folder (here: a second one)


@pytest.mark.slow
def test_cli_build_search_export_add_delete(tmp_path, tiny_model_dir, built, model, queries):
    runner = CliRunner()
    faiss_dir, exported = tmp_path / "faiss", tmp_path / "exported"
    result = runner.invoke(app, ["index", "build", "-m", str(tiny_model_dir), "--corpus", "sample", "--out",
                                 str(faiss_dir), "--precision", "fp32", "-q"])  # as the reference index
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["index", "export", "-i", str(faiss_dir), "--out", str(exported), "-q"])
    assert result.exit_code == 0 and "qdrant collection 'koembed'" in result.output, result.output
    with load_index(exported, encoder=model) as a, load_index(built, encoder=model) as b:
        for mode in ("dense", "bm25"):
            assert_same_ranking(a.search(queries, 10, mode), b.search(queries, 10, mode), tol=1e-6)
    result = runner.invoke(app, ["search", "-i", str(exported), "--mode", "bm25", "-k", "2", "--json",
                                 "여권 재발급"])
    rows = [json.loads(line) for line in result.output.splitlines()]
    assert result.exit_code == 0 and [r["rank"] for r in rows] == [1, 2] and rows[0]["docid"].startswith("gov")
    docs = tmp_path / "new.jsonl"
    docs.write_text(json.dumps({"id": "pet-01", "text": NEW_TEXT}, ensure_ascii=False) + "\n", encoding="utf-8")
    result = runner.invoke(app, ["index", "add", "-i", str(exported), "--docs", str(docs), "-q"])
    assert result.exit_code == 0 and "49 passages" in result.output, result.output
    result = runner.invoke(app, ["index", "delete", "-i", str(exported), "--id", "nope"])
    assert result.exit_code == 2 and "nope" in result.output
    info = json.loads(runner.invoke(app, ["index", "info", "-i", str(exported), "--json"]).output)
    assert info["store"] == "qdrant" and info["collection_now"]["points"] == 49 and "probe" not in info["model"]
    summary = " ".join(runner.invoke(app, ["index", "info", "-i", str(exported)]).output.split())
    assert "qdrant collection" in summary and "the collection holds 49 points now" in summary
    storage = exported / info["local_path"] if not Path(info["local_path"]).is_absolute() else Path(info["local_path"])
    on_disk = sum(f.stat().st_size for f in storage.rglob("*") if f.is_file())
    assert f"qdrant storage {on_disk / 2**20:.1f} MB" in summary or f"qdrant storage {on_disk / 1024:.1f} KB" in summary
    result = runner.invoke(app, ["index", "build", "-m", "x", "--corpus", "sample", "--out", str(tmp_path / "y"),
                                 "--url", "http://127.0.0.1:9"])
    assert result.exit_code == 2 and "--store qdrant" in result.output


@pytest.mark.slow
@pytest.mark.shared_data
@pytest.mark.parametrize("name", ["korquad", "msmarco"])
def test_heldout_sets_on_the_rust_engine_equal_koembed(tmp_path, name, tiny_model_dir, model):
    """KorQuAD's held-out articles and MS MARCO-ko's test half (every 20th query): the embedded Rust engine's
    bm25, dense and weighted hybrid top 10 equal koembed's in-memory retrievers (ids and scores); its RRF hybrid
    equals them except where BM25 scores tie inside a prefetch (the engine's order, not doc ids)."""
    from koembed.data import load_retrieval_set
    from tests.helpers import KORQUAD, SHARED_DATA, require_shared

    path = require_shared(KORQUAD if name == "korquad" else SHARED_DATA / "msmarco-ko" / "msmarco_kor.json")
    rs = load_retrieval_set(path, split="test")
    ids, texts, queries = list(rs.corpus), list(rs.corpus.values()), list(rs.queries.values())[::20]
    tokens = get_analyzer()(texts)  # analysed once for both
    build_index(str(tiny_model_dir), ids, texts, tmp_path / "idx", target=QdrantTarget(), encoder=model,
                options=QUIET, tokens=tokens)
    bm25 = BM25Retriever(DEFAULT, show_progress=False)
    bm25.fit_analysed(ids, texts, tokens)
    dense = DenseRetriever(model, "dense", options=QUIET)
    dense.fit(ids, texts)
    with load_index(tmp_path / "idx", encoder=model) as idx:
        assert_same_ranking(idx.search(queries, 10, "bm25"), bm25.search(queries, 10))
        assert_same_ranking(idx.search(queries, 10, "dense"), dense.search(queries, 10))
        cc = HybridRetriever([dense, bm25], fusion="cc", weights=[0.4, 0.6])
        assert_same_ranking(idx.search(queries, 10, "hybrid", weights=[0.4, 0.6]), cc.search(queries, 10))
        rrf, mine = idx.search(queries, 10, "hybrid"), HybridRetriever([dense, bm25]).search(queries, 10)
    same = sum([d for d, _ in a] == [d for d, _ in b] for a, b in zip(rrf, mine))
    assert same >= 0.95 * len(queries), (same, len(queries))


@pytest.mark.slow
@pytest.mark.shared_data
def test_korquad_heldout_m3_on_the_rust_engine_equals_koembed(tmp_path, korquad_path, tiny_m3_dir):
    """BGE-M3's sparse, ColBERT (the engine's MaxSim sum / query vectors) and weighted m3 scores on the 354
    held-out KorQuAD paragraphs equal koembed's in-memory M3 retrievers (every 20th query)."""
    from koembed.data import load_retrieval_set
    from koembed.models.m3 import load_m3
    from koembed.retrieval.m3 import M3Retriever

    m3 = load_m3(str(tiny_m3_dir))
    rs = load_retrieval_set(korquad_path, split="test")
    ids, texts, queries = list(rs.corpus), list(rs.corpus.values()), list(rs.queries.values())[::20]
    build_index(str(tiny_m3_dir), ids, texts, tmp_path / "idx", target=QdrantTarget(), encoder=m3.model,
                options=QUIET)
    outputs = m3.encode(texts, QUIET, "passage")
    with load_index(tmp_path / "idx") as idx:
        for mode in ("sparse", "colbert", "m3"):
            retriever = M3Retriever(m3, f"m3-{mode}", mode, options=QUIET)
            retriever.fit_outputs(ids, outputs)
            assert_same_ranking(idx.search(queries, 10, mode), retriever.search(queries, 10))


@pytest.mark.parametrize("preset", ["bm25", "bm25-char"])
def test_other_lexical_presets_equal_koembed(tmp_path, tiny_model_dir, model, corpus, queries, preset):
    build_index(str(tiny_model_dir), *corpus, tmp_path / "idx", target=QdrantTarget(), encoder=model,
                options=QUIET, params=IndexParams(lexical=PRESETS[preset]))
    bm25 = BM25Retriever(PRESETS[preset], show_progress=False)
    bm25.fit(*corpus)
    with load_index(tmp_path / "idx", encoder=model) as idx:
        assert_same_ranking(idx.search(queries, 10, "bm25"), bm25.search(queries, 10))
    with pytest.raises(IndexStoreError, match="normalization 'z'"):
        build_index("m", *corpus, tmp_path / "z", target=QdrantTarget(), encoder=model,
                    params=IndexParams(lexical=LexicalConfig({"unigram": 1.0, "char": 0.5}, normalization="z")))


def test_sparse_weights_are_lucene_tf_parts_and_ids_are_stable():
    field = Field("unigram", k1=1.2, b=0.75, avgdl=4.0)
    ids, values = passage_vector(["a/N", "b/V", "a/N"], "", [field])
    norm = 1.2 * (1 - 0.75 + 0.75 * 3 / 4.0)
    assert dict(zip(ids, values)) == pytest.approx({term_id("a/N"): 2 / (2 + norm), term_id("b/V"): 1 / (1 + norm)})
    assert all(0 <= i < 2**32 for i in ids)
    # Two fields in one vector: separate id spaces; the query carries the field weights.
    fields = [field, Field("char", k1=1.2, b=0.75, avgdl=3.0, weight=0.5)]
    ids, values = passage_vector(["a/N"], "ab", fields)
    assert ids == sorted([term_id("a/N"), term_id("ab", "char")]) and term_id("ab", "char") != term_id("ab")
    ids, values = query_vector(["x/N", "x/N"], "ab", fields)
    assert dict(zip(ids, values)) == {term_id("x/N"): 2.0, term_id("ab", "char"): 0.5}
    terms = ["보증금/N", "돌려받/V", "ai/SL"]
    other = subprocess.run([sys.executable, "-c", "import sys; from koembed.index.qdrant_sparse import term_id; "
                            "print([term_id(t) for t in sys.argv[1:]])", *terms], capture_output=True, text=True,
                           env={"PYTHONHASHSEED": "123", "PATH": ""}, cwd=ROOT)
    assert other.stdout.strip() == str([term_id(t) for t in terms])  # another process, another hash seed
    # A collision, found by brute force: two terms with one id are one term (counts added).
    pair = colliding_pair()
    assert collisions([*pair, "other"]) == [tuple(sorted(pair))]
    ids, values = passage_vector(list(pair), "", [field])
    assert values == pytest.approx([2 / (2 + 1.2 * (1 - 0.75 + 0.75 * 2 / 4.0))])


def colliding_pair() -> tuple[str, str]:
    """Two distinct terms with one blake2b-32 id (the first among t0, t1, ...)."""
    seen: dict[int, str] = {}
    for i in range(400_000):
        term = f"t{i}"
        if term_id(term) in seen:
            return seen[term_id(term)], term
        seen[term_id(term)] = term
    raise AssertionError("no collision among 400,000 terms")


def reference_passage_vector(tokens, text, fields):
    """The per-term loop that built every stored sparse vector before the batched numpy version (Counter of
    term ids per field, then the Lucene tf part, summed over fields in their order): the reference."""
    from collections import Counter

    out: dict[int, float] = {}
    for field in fields:
        terms = field_tokens(field.name, tokens, text)
        counts = Counter(term_id(t, field.name) for t in terms)
        norm = field.k1 * (1.0 - field.b + field.b * len(terms) / field.avgdl)
        for i, c in counts.items():
            out[i] = out.get(i, 0.0) + c / (c + norm)
    ids = sorted(out)
    return ids, [out[i] for i in ids]


@pytest.mark.parametrize("weights", [DEFAULT.weights, {"unigram": 1.0, "bigram": 0.3, "pair": 0.2, "char": 0.7}])
def test_batched_sparse_vectors_equal_the_per_term_loop_bit_for_bit(corpus, weights):
    """What the store writes is unchanged by the batched computation: every passage's ids and values equal the
    old loop's exactly (floats compared with ==), on the bundled sample with each field, an empty passage, a
    repeated passage, and two colliding terms in one passage."""
    texts = [*corpus[1], "", corpus[1][0], "t t"]
    tokens = [*get_analyzer()(corpus[1]), [], get_analyzer()([corpus[1][0]])[0], list(colliding_pair()) * 2]
    config = LexicalConfig(dict(weights))
    lengths = average_lengths(config, tokens, texts)  # what the manifest records: as the terms counted one by one
    assert lengths == {f: sum(len(field_tokens(f, t, x)) for t, x in zip(tokens, texts)) / len(texts)
                       for f in config.fields}
    fields = fields_of(config, lengths)
    batched = passage_vectors(tokens, texts, fields)
    assert batched[len(corpus[1])] == ([], [])
    for toks, text, got in zip(tokens, texts, batched, strict=True):
        want = reference_passage_vector(toks, text, fields)
        assert got == want
        assert all(type(i) is int for i in got[0]) and all(type(v) is float for v in got[1])
    # batches of any size give the same vectors (the build uploads in batches)
    assert [v for a in range(0, len(texts), 7) for v in passage_vectors(tokens[a:a + 7], texts[a:a + 7], fields)] \
        == batched
    terms = [t for toks in tokens for t in toks]
    for name in ("unigram", "pair"):
        assert term_ids(terms, name).tolist() == [term_id(t, name) for t in terms]
