"""Query and passage prompts: a tiny model saved with e5-style prompts gets them in every path, exactly as
sentence-transformers' ``encode(..., prompt_name=...)`` applies them; ModelSpec overrides win; indexes and bench
results record them."""

from __future__ import annotations

import numpy as np
import pytest
from sentence_transformers import SentenceTransformer

from koembed.evaluation.runner import run_bench
from koembed.index import build_index, load_index
from koembed.models import EXACT, EncodeOptions, ModelSpec, encode, load_model
from koembed.models.prompts import Prompts, model_prompts, role_options
from koembed.retrieval.dense import DenseRetriever
from tests.helpers import QUIET

PROMPTS = {"query": "query: ", "passage": "passage: "}


@pytest.fixture(scope="module")
def prompted_dir(tmp_path_factory, tiny_model_dir):
    model = SentenceTransformer(str(tiny_model_dir), device="cpu")
    model.prompts = dict(PROMPTS)
    out = tmp_path_factory.mktemp("prompted") / "model"
    model.save(str(out))
    return out


@pytest.fixture(scope="module")
def reference(prompted_dir):
    return SentenceTransformer(str(prompted_dir), device="cpu")


@pytest.fixture(scope="module")
def texts(sample):
    return [sample.queries[q] for q in sample.query_ids[:6]] + list(sample.corpus.values())[:6]


def test_saved_prompts_are_applied_as_sentence_transformers_does(prompted_dir, reference, texts):
    model = load_model(ModelSpec(str(prompted_dir), EXACT))  # torch fp32, as the reference runs
    assert model_prompts(model) == Prompts(**PROMPTS)
    for role in ("query", "passage"):
        ours = encode(model, texts, role_options(QUIET, model, role))
        np.testing.assert_allclose(ours, reference.encode(texts, prompt_name=role), atol=1e-6)
        budget = encode(model, texts, role_options(EncodeOptions(max_batch_tokens=256, show_progress=False),
                                                   model, role))
        np.testing.assert_allclose(budget, ours, atol=1e-5)
    plain = encode(model, texts, QUIET)
    assert np.abs(plain - reference.encode(texts, prompt_name="query")).max() > 1e-3  # the prompt matters


def test_spec_overrides_win(prompted_dir, reference, texts):
    model = load_model(ModelSpec(str(prompted_dir), EXACT, query_prompt="", passage_prompt="문서: "))
    assert model_prompts(model) == Prompts(query="", passage="문서: ")
    np.testing.assert_allclose(encode(model, texts, role_options(QUIET, model, "query")), reference.encode(texts),
                               atol=1e-6)
    np.testing.assert_allclose(encode(model, texts, role_options(QUIET, model, "passage")),
                               reference.encode(texts, prompt="문서: "), atol=1e-6)


def test_dense_retriever_bench_and_results_use_the_prompts(prompted_dir, reference, sample):
    model = load_model(ModelSpec(str(prompted_dir), EXACT))  # compared with the fp32 torch reference below
    dense = DenseRetriever(model, "dense", options=QUIET)
    dense.fit(sample.doc_ids, list(sample.corpus.values()))
    queries = [sample.queries[q] for q in sample.query_ids[:5]]
    q = reference.encode(queries, prompt_name="query")
    p = reference.encode(list(sample.corpus.values()), prompt_name="passage")
    scores = q @ p.T  # normalised embeddings: cosine
    for row, hits in zip(scores, dense.search(queries, 3)):
        assert [d for d, _ in hits] == [sample.doc_ids[i] for i in np.lexsort((sample.doc_ids, -row))[:3]]
        np.testing.assert_allclose([s for _, s in hits], np.sort(row)[::-1][:3], atol=1e-5)
    spec = f"dense:{prompted_dir}"
    result = run_bench(sample, [spec, f"hybrid:bm25+{spec}"], options=QUIET)
    assert result[0].prompts == {spec: PROMPTS} and result[1].prompts == {spec: PROMPTS}
    assert result[0].to_json()["prompts"] == {spec: PROMPTS}


def test_index_records_prompts_and_searches_with_them(tmp_path, prompted_dir, reference, sample):
    build_index(ModelSpec(str(prompted_dir), EXACT, query_prompt="질문: "), sample.doc_ids, list(sample.corpus.values()),
                tmp_path / "idx", options=QUIET)
    index = load_index(tmp_path / "idx")  # loads the model without the override: the index's prompts still apply
    assert index.manifest.model["prompts"] == {"query": "질문: ", "passage": "passage: "}
    query = sample.queries[sample.query_ids[2]]
    q = reference.encode([query], prompt="질문: ")[0]
    p = reference.encode(list(sample.corpus.values()), prompt_name="passage")
    hits = index.search([query], 4, mode="dense")[0]
    row = {d: float(v) for d, v in zip(sample.doc_ids, p @ q)}
    np.testing.assert_allclose([s for _, s in hits], [row[d] for d, _ in hits], atol=1e-5)
    assert [d for d, _ in hits] == sorted(row, key=lambda d: (-row[d], d))[:4]


@pytest.mark.slow
def test_training_applies_config_prompts_and_records_them(tmp_path, tiny_model_dir, sample):
    import json

    import yaml

    from koembed.evaluation.runner import evaluate_model
    from koembed.training import load_config, train

    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("".join(json.dumps({"query": sample.queries[q], "positive": sample.corpus[d]},
                                        ensure_ascii=False) + "\n"
                             for q in sample.query_ids for d in sorted(sample.relevant_ids(q))), encoding="utf-8")
    cfg = {"model": {"base": str(tiny_model_dir), "max_seq_length": 64, "query_prompt": "질문: ",
                     "passage_prompt": "문서: "},
           "data": {"train": [{"type": "pairs", "path": str(pairs)}], "eval": {"path": "sample", "steps": 100},
                    "allow_overlap": True},
           "loss": {"name": "mnrl"}, "train": {"batch_size": 8, "max_steps": 3, "save_steps": 3, "seed": 2},
           "output_dir": str(tmp_path / "run")}
    (tmp_path / "c.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True), encoding="utf-8")
    summary = train(load_config(tmp_path / "c.yaml"), show_progress=False)
    final = summary["final_model"]
    assert summary["prompts"] == {"query": "질문: ", "passage": "문서: "}
    assert model_prompts(load_model(final)) == Prompts(query="질문: ", passage="문서: ")  # saved with the model
    # the trainer's evaluator used the prompts exactly as koembed's own evaluation applies them
    ours = evaluate_model(sample, final, QUIET)
    assert summary["metrics"]["cosine_ndcg@10"] == pytest.approx(ours["cosine_ndcg@10"], abs=1e-6)
    card = (tmp_path / "run" / "final" / "README.md").read_text(encoding="utf-8")
    assert "## Prompts" in card and "`질문: `" in card and "`문서: `" in card


def test_graph_backends_take_the_prompts_of_the_model_loaded_not_of_a_cached_export(prompted_dir, tiny_model_dir):
    """Exports are cached by weights: the tiny model and its prompted copy share one; each keeps its own prompts."""
    plain = load_model(ModelSpec(str(tiny_model_dir), backend="onnx"))
    prompted = load_model(ModelSpec(str(prompted_dir), backend="onnx"))
    assert model_prompts(prompted) == Prompts(**PROMPTS)
    assert model_prompts(plain) == Prompts(query="", passage="")
