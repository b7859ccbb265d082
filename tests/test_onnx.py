"""ONNX backends on the bundled MiniLM (and the tiny XLM-R for the bge-m3 path).

Expectations are computed independently: the fp32 export must reproduce the torch model's embeddings; the int8
export must hold one integer MatMul per ``nn.Linear`` of the torch model, stay close to fp32 and keep the
bundled sample's retrieval quality; every way in (API, CLI, encode, index, server) must use the same graph.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from koembed.cli import app
from koembed.errors import ModelLoadError
from koembed.models import encode, load_model, model_precision
from koembed.models import onnx as onnx_model
from koembed.models.export import export_model
from tests.helpers import QUIET

pytestmark = pytest.mark.slow


def cli(*args) -> object:
    return CliRunner().invoke(app, [str(a) for a in args])


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv(onnx_model.CACHE_ENV, str(tmp_path_factory.getbasetemp() / "koembed-cache"))


@pytest.fixture(scope="module")
def torch_model():
    return load_model("minilm", backend="torch", precision="fp32")


@pytest.fixture(scope="module")
def texts(sample) -> list[str]:
    return list(sample.corpus.values()) + list(sample.queries.values())


@pytest.fixture(scope="module")
def reference(torch_model, texts) -> np.ndarray:
    return encode(torch_model, texts, show_progress=False)


@pytest.fixture(scope="module")
def exports(tmp_path_factory) -> dict[str, tuple[Path, dict]]:
    root = tmp_path_factory.mktemp("exports")
    return {backend: (root / backend, export_model("minilm", root / backend, backend=backend))
            for backend in onnx_model.ONNX_BACKENDS}


def test_fp32_export_reproduces_torch(exports, reference, texts):
    folder, report = exports["onnx"]
    model = load_model(str(folder))
    assert model_precision(model) == "onnx"
    got = encode(model, texts, show_progress=False)
    np.testing.assert_allclose(got, reference, atol=1e-4)
    # batch composition (padding) must not change a text's embedding
    np.testing.assert_allclose(encode(model, texts, batch_size=5, show_progress=False), got, atol=1e-5)
    meta = json.loads((folder / onnx_model.META_FILE).read_text(encoding="utf-8"))
    assert meta["dimension"] == reference.shape[1] and meta["normalized"] is True
    assert meta["inputs"] == ["input_ids", "attention_mask", "token_type_ids"]
    from koembed.files import sha256_file

    assert meta["files"] == {"model.onnx": sha256_file(folder / "model.onnx")}
    assert report["check"]["cosine_min"] > 0.9999


def test_int8_export_quantises_every_linear_layer_and_keeps_quality(exports, torch_model, reference, texts, sample):
    import onnx

    folder, report = exports["onnx-int8"]
    graph = onnx.load(str(folder / "model.onnx")).graph
    ops = [node.op_type for node in graph.node]
    # every Linear of the encoder layers (BERT's pooler head is not on the sentence-embedding path)
    linears = sum(isinstance(m, torch.nn.Linear) for m in torch_model[0].auto_model.encoder.modules())
    assert ops.count("MatMulInteger") == linears > 0
    assert (folder / "model.onnx").stat().st_size < 0.75 * (exports["onnx"][0] / "model.onnx").stat().st_size

    got = encode(load_model(str(folder)), texts, show_progress=False)
    cosine = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert cosine.mean() > 0.95
    assert report["check"]["cosine_mean"] == pytest.approx(float(cosine.mean()), abs=1e-3)

    from koembed.evaluation.runner import run_bench

    fp32, int8 = run_bench(sample, ["dense:minilm", f"dense:{folder}"], top_k=(10,), options=QUIET)
    assert abs(fp32.ir["ndcg@10"] - int8.ir["ndcg@10"]) <= 0.05


def test_backend_option_exports_once_into_the_cache(torch_model, reference, texts, tmp_path, monkeypatch):
    monkeypatch.setenv(onnx_model.CACHE_ENV, str(tmp_path))
    first = load_model("minilm", backend="onnx")
    folders = list((tmp_path / "onnx").iterdir())
    assert len(folders) == 1 and onnx_model.is_export(folders[0])
    stamp = (folders[0] / "model.onnx").stat().st_mtime_ns
    second = load_model("minilm", backend="onnx", max_seq_length=16)
    assert (folders[0] / "model.onnx").stat().st_mtime_ns == stamp  # reused, not exported again
    np.testing.assert_allclose(encode(first, texts, show_progress=False), reference, atol=1e-4)
    short = load_model("minilm", max_seq_length=16, backend="torch", precision="fp32")
    np.testing.assert_allclose(encode(second, texts, show_progress=False),
                               encode(short, texts, show_progress=False), atol=1e-4)


def test_tiny_xlmr_export_has_no_token_types_and_matches(tiny_model_dir, tmp_path, sample):
    texts = list(sample.queries.values())[:40]
    torch_model = load_model(str(tiny_model_dir), backend="torch", precision="fp32")
    export_model(str(tiny_model_dir), tmp_path / "x", backend="onnx", check_texts=texts)
    exported = load_model(str(tmp_path / "x"))
    assert exported.inputs == ["input_ids", "attention_mask"]
    np.testing.assert_allclose(encode(exported, texts, show_progress=False),
                               encode(torch_model, texts, show_progress=False), atol=1e-4)


@pytest.mark.parametrize("kwargs, words", [
    ({"backend": "tensorrt"}, "unknown backend"),
    ({"backend": "onnx", "precision": "bf16"}, "applies to the torch backend"),
    ({"backend": "onnx-int8", "device": "cuda"}, "runs on the CPU"),
])
def test_bad_backend_requests_are_refused_before_loading(kwargs, words):
    with pytest.raises(ModelLoadError, match=words):
        load_model("minilm", **kwargs)


def test_export_folder_errors(exports, tmp_path):
    folder = exports["onnx-int8"][0]
    with pytest.raises(ModelLoadError, match="is a onnx-int8 export"):
        load_model(str(folder), backend="onnx")
    with pytest.raises(ModelLoadError, match="already an ONNX export"):
        export_model(str(folder), tmp_path / "again")
    # a damaged graph is refused by its checksum
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    for path in folder.iterdir():
        (damaged / path.name).write_bytes(path.read_bytes())
    with (damaged / "model.onnx").open("ab") as handle:
        handle.write(b"\0")
    with pytest.raises(ModelLoadError, match="sha256"):
        load_model(str(damaged))
    (damaged / onnx_model.META_FILE).write_text("{not json", encoding="utf-8")
    with pytest.raises(ModelLoadError, match="koembed_onnx.json"):
        load_model(str(damaged))


def test_export_cli_refuses_a_non_empty_folder_and_writes_nothing_on_error(tmp_path):
    out = tmp_path / "busy"
    out.mkdir()
    (out / "keep.txt").write_text("mine", encoding="utf-8")
    result = cli("export", "--model", "minilm", "--out", out)
    assert result.exit_code == 2 and "not empty" in result.output
    assert [p.name for p in out.iterdir()] == ["keep.txt"]
    result = cli("export", "--model", "minilm", "--out", tmp_path / "new", "--backend", "torch")
    assert result.exit_code == 2 and "unknown export backend" in result.output
    assert not (tmp_path / "new").exists() and sorted(p.name for p in tmp_path.iterdir()) == ["busy"]


def test_export_cli_then_encode_index_and_search(tmp_path, sample):
    out = tmp_path / "int8"
    result = cli("export", "--model", "minilm", "--out", out)
    assert result.exit_code == 0, result.output
    assert "onnx-int8" in result.output and "cosine" in result.output
    model = load_model(str(out))
    corpus = tmp_path / "docs.jsonl"
    corpus.write_text("".join(json.dumps({"id": d, "text": t}, ensure_ascii=False) + "\n"
                              for d, t in sample.corpus.items()), encoding="utf-8")

    result = cli("encode", "--model", "minilm", "--backend", "onnx-int8", "--corpus", corpus, "--out",
                 tmp_path / "emb", "-q")
    assert result.exit_code == 0, result.output
    manifest = json.loads((tmp_path / "emb" / "shard-0-of-1" / "manifest.json").read_text(encoding="utf-8"))
    assert manifest["precision"] == "onnx-int8"
    result = cli("encode", "--model", "minilm", "--corpus", corpus, "--out", tmp_path / "emb", "-q")
    assert result.exit_code == 2 and "precision" in result.output  # torch fp32 is another run

    result = cli("index", "build", "--model", out, "--corpus", corpus, "--out", tmp_path / "idx", "-q")
    assert result.exit_code == 0, result.output
    query = next(iter(sample.queries.values()))
    result = cli("search", query, "--index", tmp_path / "idx", "--mode", "dense", "-k", "3", "--json")
    assert result.exit_code == 0, result.output
    hits = [json.loads(line)["docid"] for line in result.output.splitlines()]
    passages = encode(model, list(sample.corpus.values()), show_progress=False)
    scores = passages @ encode(model, [query], show_progress=False)[0]
    assert hits == [list(sample.corpus)[i] for i in np.argsort(-scores, kind="stable")[:3]]


def test_server_serves_the_onnx_model(exports, texts):
    from koembed.server import create_app
    from tests.helpers import running

    model = load_model(str(exports["onnx"][0]))
    ids = model.tokenizer(texts[-6:], truncation=True, max_length=model.max_seq_length)["input_ids"]
    with running(create_app(model, "minilm-onnx")) as base:
        response = httpx.post(f"{base}/v1/embeddings", json={"input": texts[-6:]}, timeout=30)
        by_ids = httpx.post(f"{base}/v1/embeddings", json={"input": ids}, timeout=30)  # token-id inputs
    assert response.status_code == 200, response.text
    got = np.array([row["embedding"] for row in response.json()["data"]], dtype=np.float32)
    expected = np.stack([encode(model, [t], show_progress=False)[0] for t in texts[-6:]])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert by_ids.status_code == 200, by_ids.text
    np.testing.assert_allclose([row["embedding"] for row in by_ids.json()["data"]], expected, atol=1e-5)
    assert by_ids.json()["usage"]["prompt_tokens"] == sum(map(len, ids))
