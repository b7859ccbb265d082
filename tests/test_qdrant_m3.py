"""BGE-M3's lexical weights and ColBERT vectors in the Qdrant store (local mode, tiny bge-m3-layout model): the
collection layout, and sparse / colbert / m3 search equal to koembed's in-memory M3 retrievers, after build,
FAISS export, add and delete."""

from __future__ import annotations

import json

import numpy as np
import pytest
from typer.testing import CliRunner

from koembed.cli import app
from koembed.errors import IndexStoreError, SpecError
from koembed.index import QdrantTarget, add_documents, build_index, delete_documents, export_index, load_index
from koembed.index.qdrant import point_id
from koembed.models.m3 import colbert_score, lexical_score, load_m3
from koembed.retrieval.m3 import M3Retriever
from tests.helpers import QUIET, assert_same_ranking


@pytest.fixture(scope="module")
def m3(tiny_m3_dir):
    return load_m3(str(tiny_m3_dir))


@pytest.fixture(scope="module")
def built(tmp_path_factory, tiny_m3_dir, m3, sample):
    out = tmp_path_factory.mktemp("qdrant-m3") / "idx"
    build_index(str(tiny_m3_dir), sample.doc_ids, list(sample.corpus.values()), out, target=QdrantTarget(),
                options=QUIET, encoder=m3.model)
    return out


def in_memory(m3, doc_ids, texts):
    """koembed's three in-memory M3 retrievers over the passages, sharing one encoding."""
    outputs = m3.encode(texts, QUIET, "passage")
    retrievers = {}
    for mode in ("sparse", "colbert", "m3"):
        retrievers[mode] = M3Retriever(m3, f"m3-{mode}", mode, options=QUIET)
        retrievers[mode].fit_outputs(doc_ids, outputs)
    return retrievers


def assert_equal_to(index, retrievers, queries, weights=(0.2, 0.5, 0.3)):
    for mode, retriever in retrievers.items():
        assert_same_ranking(index.search(queries, 10, mode), retriever.search(queries, 10))
    weighted = M3Retriever(retrievers["m3"].encoder, "m3", "m3", weights, options=QUIET)
    weighted.fit_outputs(retrievers["m3"]._doc_ids, retrievers["m3"]._corpus)
    assert_same_ranking(index.search(queries, 10, "m3", weights=weights), weighted.search(queries, 10))


def test_layout_and_search_equal_in_memory_m3(built, m3, sample):
    from qdrant_client import models

    with load_index(built) as index:
        record = index.manifest.m3
        assert record["sparse"] == "m3_sparse" and record["colbert"] == "m3_colbert"
        assert record["colbert_dimension"] == m3.colbert_linear.out_features
        params = index._client.get_collection("koembed").config.params
        assert params.sparse_vectors["m3_sparse"].modifier in (None, models.Modifier.NONE)
        assert params.vectors["m3_colbert"].multivector_config.comparator == models.MultiVectorComparator.MAX_SIM
        # a point's stored vectors are the passage's M3 outputs
        doc = sample.doc_ids[5]
        point = index._client.retrieve("koembed", [point_id(doc)], with_vectors=True)[0]
        out = m3.encode([sample.corpus[doc]], QUIET, "passage")
        stored = point.vector["m3_sparse"]
        assert dict(zip(stored.indices, stored.values)) == pytest.approx(out.sparse[0], abs=1e-6)
        np.testing.assert_allclose(point.vector["m3_colbert"], out.colbert[0], atol=1e-6)

        queries = [sample.queries[q] for q in sample.query_ids[:24]]
        retrievers = in_memory(m3, sample.doc_ids, list(sample.corpus.values()))
        assert_equal_to(index, retrievers, queries)
        # colbert: Qdrant's MaxSim sum divided by the query's vector count is FlagEmbedding's mean
        q = m3.encode(queries[:1], QUIET, "query")
        top = index.search(queries[:1], 3, "colbert")[0]
        p = m3.encode([sample.corpus[d] for d, _ in top], QUIET, "passage")
        assert [s for _, s in top] == pytest.approx([colbert_score(q.colbert[0], v) for v in p.colbert], abs=1e-5)
        top = index.search(queries[:1], 3, "sparse")[0]
        assert [s for _, s in top] == pytest.approx([lexical_score(q.sparse[0], w) for w in m3.encode(
            [sample.corpus[d] for d, _ in top], QUIET, "passage").sparse], abs=1e-5)
        with pytest.raises(SpecError, match="M3 weights"):
            index.search(queries[:1], 3, "m3", weights=[1, 1])


def test_export_add_delete_keep_m3_vectors(tmp_path, tiny_m3_dir, m3, sample):
    ids, texts = sample.doc_ids, list(sample.corpus.values())
    build_index(str(tiny_m3_dir), ids[:-3], texts[:-3], tmp_path / "faiss", options=QUIET, encoder=m3.model)
    manifest = export_index(tmp_path / "faiss", tmp_path / "qdrant", show_progress=False)
    assert manifest.m3 and manifest.m3["colbert"] == "m3_colbert"  # ColBERT vectors encoded again
    add_documents(tmp_path / "qdrant", ids[-3:], texts[-3:], options=QUIET)
    delete_documents(tmp_path / "qdrant", [ids[0], ids[-1]])
    queries = [sample.queries[q] for q in sample.query_ids[:12]]
    with pytest.raises(SpecError, match="keeps no ColBERT vectors"):
        load_index(tmp_path / "faiss").search(queries, 3, "colbert")
    with load_index(tmp_path / "qdrant") as index:
        assert len(index) == len(ids) - 2
        assert_equal_to(index, in_memory(m3, ids[1:-1], texts[1:-1]), queries)
    result = CliRunner().invoke(app, ["search", queries[0], "--index", str(tmp_path / "qdrant"), "--mode",
                                      "colbert", "-k", "3", "--json"])
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.output.splitlines()]
    exact = in_memory(m3, ids[1:-1], texts[1:-1])["colbert"].search(queries[:1], 3)[0]
    assert [r["docid"] for r in rows] == [d for d, _ in exact]


def test_missing_m3_vectors_are_refused(tmp_path, tiny_model_dir, built, sample):
    ids, texts = sample.doc_ids[:6], [sample.corpus[d] for d in sample.doc_ids[:6]]
    plain = tmp_path / "plain"
    build_index(str(tiny_model_dir), ids, texts, plain, target=QdrantTarget(), options=QUIET)
    with load_index(plain) as index:
        assert index.manifest.m3 is None
        for mode in ("sparse", "colbert", "m3"):
            with pytest.raises(SpecError, match="no BGE-M3 vectors"):
                index.search(["질문"], 3, mode)
    manifest = json.loads((plain / "manifest.json").read_text(encoding="utf-8"))
    manifest["m3"] = json.loads((built / "manifest.json").read_text(encoding="utf-8"))["m3"]
    (plain / "manifest.json").write_text(json.dumps(manifest), encoding="utf-8")
    with pytest.raises(IndexStoreError, match="m3_colbert"):
        load_index(plain)


def test_server_searches_the_m3_vectors_of_a_qdrant_index(built, m3, sample):
    from fastapi.testclient import TestClient

    from koembed.server import create_app

    queries = list(sample.queries.values())[:3]
    with load_index(built, encoder=m3.model) as index:
        expected = {mode: index.search(queries, 5, mode) for mode in ("sparse", "colbert", "m3")}
        with TestClient(create_app(m3.model, "tiny-m3", index=index), base_url="http://localhost") as client:
            for mode, want in expected.items():
                for query, hits in zip(queries, want):
                    response = client.post("/search", json={"query": query, "k": 5, "mode": mode})
                    assert response.status_code == 200, response.text
                    got = response.json()["hits"]
                    assert [h["docid"] for h in got] == [d for d, _ in hits], mode
                    np.testing.assert_allclose([h["score"] for h in got], [s for _, s in hits], atol=1e-5)
