"""Static models (StaticEmbedding): tokenizer learning, the config, deterministic training, and every command on a
static model (bench, eval, encode, index, serve, export, card); distillation with model2vec; the bundled static-ko."""

from __future__ import annotations

import hashlib
import json
import unicodedata

import numpy as np
import pytest
from typer.testing import CliRunner

from koembed.cli import app
from koembed.errors import ConfigError, ModelLoadError
from koembed.models import encode, load_model
from koembed.models.static import learn_tokenizer, static_module, untrained_like
from koembed.training.config import load_config
from tests.helpers import QUIET, train_tiny_static


@pytest.fixture(scope="module")
def static(tiny_static_dir):
    return load_model(str(tiny_static_dir))


def test_learned_wordpiece_keeps_hangul_syllables_whole_and_is_deterministic(sample):
    texts = list(sample.corpus.values())
    tokenizer = learn_tokenizer(texts, "wordpiece", 300)
    pieces = tokenizer.encode("전세 보증금을 PC로", add_special_tokens=False).tokens
    assert not any("\u1100" <= c <= "\u11ff" for p in pieces for c in p)  # no conjoining jamo (NFKD would give them)
    assert all(unicodedata.is_normalized("NFC", p) for p in pieces)
    assert "".join(p.removeprefix("##") for p in pieces if p != "[UNK]") == "전세보증금을pc로"
    # tokenizers alone numbers continuation pieces in hash-map order (its issue #1794); ours is byte-identical
    assert all(learn_tokenizer(texts, "wordpiece", 300).to_str() == tokenizer.to_str() for _ in range(3))
    unigram = learn_tokenizer(texts, "unigram", 1500)
    assert type(unigram.model).__name__ == "Unigram" and unigram.get_vocab_size() <= 1500
    with pytest.raises(ValueError, match="raise vocab_size"):
        learn_tokenizer(texts, "unigram", 300)


def test_static_config_defaults_and_errors(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model: {type: static}\ndata: {train: [{type: pairs, path: p.jsonl}]}\noutput_dir: out\n")
    cfg = load_config(path)
    assert cfg.model.static.dim == 512 and cfg.model.static.tokenizer == "learn"
    assert (cfg.loss.name, cfg.train.batch_size, cfg.train.learning_rate, cfg.train.epochs) == ("mnrl", 512, 0.2, 10)
    assert cfg.loss.matryoshka_dims == [512, 256, 128, 64, 32]
    kept = load_config(path, ["train.learning_rate=0.05", "loss.matryoshka_dims=[]", "model.static.dim=64"])
    assert kept.train.learning_rate == 0.05 and kept.loss.matryoshka_dims == [] and kept.train.batch_size == 512
    transformer = load_config(path, ["model.type=transformer", "model.base=minilm"])
    assert transformer.train.learning_rate == 3e-5 and transformer.loss.name == "cached_mnrl"
    for overrides, words in [(["model.base=x", "model.static.dim=64"], "either new"), (["model.type=transformer"], "model.base is required"),
                             (["loss.matryoshka_dims=[1024]"], "must not exceed"),
                             (["model.static.tokenizer_model=bpe"], "tokenizer_model"),
                             (["model.type=transformer", "model.base=x", "model.save_dtype=float16"], "apply only")]:
        with pytest.raises(ConfigError, match=words):
            load_config(path, overrides)


def test_training_is_deterministic_and_beats_its_untrained_baseline(tmp_path, tiny_static_dir, sample, static):
    from koembed.evaluation.runner import evaluate_model

    again = train_tiny_static(tmp_path / "again", sample)
    digest = [hashlib.sha256((d / "model.safetensors").read_bytes()).hexdigest() for d in (tiny_static_dir, again)]
    assert digest[0] == digest[1]
    untrained = untrained_like(static, seed=42)
    assert untrained[0].tokenizer.to_str() == static_module(static).tokenizer.to_str()
    untrained.save(str(tmp_path / "untrained"))
    trained = evaluate_model(sample, str(tiny_static_dir), QUIET)["cosine_ndcg@10"]
    baseline = evaluate_model(sample, str(tmp_path / "untrained"), QUIET)["cosine_ndcg@10"]
    assert trained > baseline + 0.05  # trained on these very pairs: it must have learned them


def test_eval_equals_sentence_transformers_evaluator(tiny_static_dir, static, sample):
    """evaluate_model used to crash on a static model (it set max_seq_length, which StaticEmbedding cannot take)."""
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    from koembed.evaluation.runner import evaluate_model

    relevant = {q: sample.relevant_ids(q) for q in sample.relevant}
    reference = InformationRetrievalEvaluator(sample.queries, sample.corpus, relevant, write_csv=False)(static)
    ours = evaluate_model(sample, str(tiny_static_dir), QUIET)
    for name in ("accuracy@1", "ndcg@10", "mrr@10", "map@100"):
        assert ours[f"cosine_{name}"] == pytest.approx(reference[f"cosine_{name}"], abs=1e-6)


def test_encode_truncation_and_token_budgets_on_a_static_model(static, sample):
    tokenizer = static_module(static).tokenizer
    texts = list(sample.corpus.values())[:20]
    full = encode(static, texts, QUIET)
    np.testing.assert_allclose(encode(static, texts, QUIET, max_batch_tokens=200), full, atol=1e-6)
    first = tokenizer.encode(texts[0], add_special_tokens=False)
    prefix = texts[0][: first.offsets[4][1]]  # the text of its first five pieces
    cut = encode(static, [texts[0]], QUIET, max_seq_length=5)[0]
    np.testing.assert_allclose(cut, encode(static, [prefix], QUIET)[0], atol=1e-6)
    assert tokenizer.truncation is None and static.max_seq_length == float("inf")  # put back as it was
    np.testing.assert_allclose(encode(static, texts[:1], QUIET), full[:1], atol=1e-6)


def test_bench_index_search_card_and_model2vec_export(tmp_path, tiny_static_dir, static, sample):
    runner = CliRunner()
    spec = f"dense:{tiny_static_dir}"
    out = tmp_path / "r.json"
    result = runner.invoke(app, ["bench", "-r", spec, "-r", f"hybrid-z@1,0.5:bm25+{spec}", "--top-k", "1",
                                 "--out", str(out), "-q"])
    assert result.exit_code == 0, result.output
    assert [r["retriever"] for r in json.loads(out.read_text())["results"]] == [spec, f"hybrid-z@1,0.5:bm25+{spec}"]
    result = runner.invoke(app, ["index", "build", "--model", str(tiny_static_dir), "--corpus", "sample", "--out",
                                 str(tmp_path / "idx"), "-q"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["search", "--index", str(tmp_path / "idx"), "--mode", "dense", "--json", "-k", "3",
                                 sample.queries[sample.query_ids[0]]])
    assert result.exit_code == 0, result.output
    from koembed.retrieval.dense import DenseRetriever

    exact = DenseRetriever(static, "exact", options=QUIET)
    exact.fit(sample.doc_ids, list(sample.corpus.values()))
    expected = [d for d, _ in exact.search([sample.queries[sample.query_ids[0]]], 3)[0]]
    assert [json.loads(line)["docid"] for line in result.output.strip().splitlines()] == expected
    result = runner.invoke(app, ["card", "--model", str(tiny_static_dir)])
    assert result.exit_code == 0 and "**static**" in (tiny_static_dir / "README.md").read_text()
    result = runner.invoke(app, ["export", "--model", str(tiny_static_dir), "--backend", "model2vec", "--out",
                                 str(tmp_path / "m2v")])
    assert result.exit_code == 0 and "mean 1.0000" in result.output, result.output
    from koembed.models.export import load_model2vec

    vectors = load_model2vec(tmp_path / "m2v").encode(list(sample.queries.values()))
    np.testing.assert_allclose(vectors, encode(static, list(sample.queries.values()), QUIET), atol=1e-5)
    bad = runner.invoke(app, ["export", "--model", str(tiny_static_dir), "--backend", "onnx", "--out",
                              str(tmp_path / "onnx")])
    assert bad.exit_code == 2 and "model2vec" in bad.output and not (tmp_path / "onnx").exists()
    with pytest.raises(ModelLoadError, match="static model"):
        load_model(str(tiny_static_dir), backend="onnx")


def test_server_embeds_and_truncates_with_a_static_model(static, sample):
    from fastapi.testclient import TestClient

    from koembed.server import ServerLimits, create_app

    texts = list(sample.queries.values())[:4]
    long_text = " ".join(sample.corpus.values())
    app = create_app(static, "tiny-static", limits=ServerLimits(max_input_tokens=40))
    with TestClient(app, base_url="http://localhost") as client:  # no key: a loopback Host
        body = client.post("/v1/embeddings", json={"input": texts}).json()
        assert "data" in body, body
        np.testing.assert_allclose([d["embedding"] for d in body["data"]], encode(static, texts, QUIET), atol=1e-5)
        pieces = static_module(static).tokenizer.encode_batch(texts, add_special_tokens=False)
        assert body["usage"]["prompt_tokens"] == sum(len(p.ids) for p in pieces)  # no special tokens in a static model
        assert client.post("/v1/embeddings", json={"input": long_text}).status_code == 413
        cut = client.post("/v1/embeddings", json={"input": long_text, "truncate": True}).json()
        expected = encode(static, [long_text], QUIET, max_seq_length=40)[0]
        np.testing.assert_allclose(cut["data"][0]["embedding"], expected, atol=1e-5)
        assert client.get("/health").json()["max_input_tokens"] == 40
        # token ids: what the static model reads of a text (no special tokens); cut at the limit like text
        ids = [p.ids for p in pieces]
        by_ids = client.post("/v1/embeddings", json={"input": ids}).json()
        np.testing.assert_allclose([d["embedding"] for d in by_ids["data"]], [d["embedding"] for d in body["data"]], atol=1e-5)
        long_ids = static_module(static).tokenizer.encode(long_text, add_special_tokens=False).ids
        assert client.post("/v1/embeddings", json={"input": long_ids}).status_code == 413
        cut_ids = client.post("/v1/embeddings", json={"input": long_ids, "truncate": True}).json()
        np.testing.assert_allclose(cut_ids["data"][0]["embedding"], expected, atol=1e-5)
        assert cut_ids["usage"]["prompt_tokens"] == 40
        vocab = static_module(static).tokenizer.get_vocab_size()
        oov = client.post("/v1/embeddings", json={"input": [[1, 2], [3, vocab]]}).json()["error"]
        assert "input[1][1]" in oov["message"] and str(vocab - 1) in oov["message"]


def test_distill_tiny_xlmr_then_fine_tune(tmp_path, tiny_model_dir, sample):
    result = CliRunner().invoke(app, ["distill", "--teacher", str(tiny_model_dir), "--out", str(tmp_path / "d"),
                                      "--pca-dims", "16"])
    assert result.exit_code == 0, result.output
    distilled = load_model(str(tmp_path / "d"))
    teacher_vocab = load_model(str(tiny_model_dir)).tokenizer.get_vocab()
    module = static_module(distilled)
    assert module.embedding_dim == 16 and module.num_embeddings <= len(teacher_vocab)
    assert encode(distilled, ["전세 보증금"], QUIET).shape == (1, 16)
    assert "distilled from" in (tmp_path / "d" / "README.md").read_text()
    tuned = train_tiny_static(tmp_path / "tuned", sample, model={"type": "static", "base": str(tmp_path / "d")},
                              loss={"matryoshka_dims": []})
    after = static_module(load_model(str(tuned)))
    assert after.tokenizer.to_str() == module.tokenizer.to_str()
    assert not np.allclose(after.embedding.weight.detach().numpy(), module.embedding.weight.detach().numpy())
    bad = CliRunner().invoke(app, ["distill", "--teacher", str(tmp_path / "d"), "--out", str(tmp_path / "d2")])
    assert bad.exit_code == 2 and "no Transformer module" in bad.output


def test_float16_vectors_halve_the_file_and_load_back_as_float32(tmp_path, tiny_static_dir, static, sample):
    half = train_tiny_static(tmp_path / "half", sample, model={"type": "static", "static": {"vocab_size": 400,
                                                                                          "dim": 32},
                                                                "save_dtype": "float16"})
    sizes = [(d / "model.safetensors").stat().st_size for d in (half, tiny_static_dir)]
    assert sizes[0] < 0.55 * sizes[1]
    model = load_model(str(half))
    assert str(static_module(model).embedding.weight.dtype) == "torch.float32"
    # auto (bf16 on CPUs with bf16 support) keeps a static model in float32: a lookup is no faster in bf16
    assert str(static_module(load_model(str(half), precision="auto")).embedding.weight.dtype) == "torch.float32"
    texts = list(sample.queries.values())
    np.testing.assert_allclose(encode(model, texts, QUIET), encode(static, texts, QUIET), atol=2e-3)


def test_bundled_static_ko_ships_whole_with_its_card_and_reproduces_its_sample_metrics(sample):
    import fnmatch
    import re
    import tomllib
    from pathlib import Path

    from koembed.evaluation.runner import evaluate_model
    from koembed.models.locate import bundled_static_path

    folder = bundled_static_path()
    files = sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and "__pycache__" not in str(p))
    assert sum((folder / f).stat().st_size for f in files) <= 20 * 2**20
    pyproject = tomllib.loads((Path(__file__).resolve().parents[1] / "pyproject.toml").read_text(encoding="utf-8"))
    globs = pyproject["tool"]["setuptools"]["package-data"]["koembed.models"]
    assert all(any(fnmatch.fnmatch(f"static_ko/{f}", g) for g in globs) for f in files)  # all of it is installed
    card = (folder / "README.md").read_text(encoding="utf-8")
    assert "license: cc-by-sa-4.0" in card and all(w in card for w in ("KorSTS", "KorNLI", "KLUE", "Kakao Brain",
                                                                       "make static-ko"))
    for name in ("model.safetensors", "tokenizer.json"):
        assert hashlib.sha256((folder / name).read_bytes()).hexdigest() in card
    row = re.search(r"\| koembed-sample[^|]*\| ([0-9.]+) \| ([0-9.]+) \|", card)
    metrics = evaluate_model(sample, "static-ko", QUIET)
    assert (round(metrics["cosine_accuracy@1"], 4), round(metrics["cosine_ndcg@10"], 4)) == (float(row[1]),
                                                                                             float(row[2]))
    assert static_module(load_model("static-ko")).num_embeddings == 10000
