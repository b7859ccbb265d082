"""HTTP server: the real uvicorn server on 127.0.0.1, driven by the official openai client and httpx.

Embeddings must equal koembed's own ``encode`` (float, base64, truncated ``dimensions``), concurrent requests
must each get their own rows whether batched or not, every refused request gets an OpenAI-shaped JSON error
naming the field and leaves the server serving, the API key guards all but /health, and /search returns
exactly what Index.search returns.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest
from typer.testing import CliRunner

from koembed.models import ModelSpec, encode, load_model
from koembed.server import ServerLimits, create_app
from tests.helpers import running

KEY = "test-key-3f9a"
MAX_TOKENS = 64
MAX_INPUTS = 8
MAX_BODY = 64 * 1024
LONG_TEXT = "전세 보증금 반환 소송 절차 " * 40  # far over MAX_TOKENS tokens


@pytest.fixture(scope="module")
def texts(sample) -> list[str]:
    return list(sample.queries.values())[:32]


@pytest.fixture(scope="module")
def url(model, index):
    """Batching, API key, index, tight limits; max_wait_ms is generous so concurrent requests share batches."""
    limits = ServerLimits(max_inputs=MAX_INPUTS, max_input_tokens=MAX_TOKENS, max_body_bytes=MAX_BODY,
                          max_wait_ms=20)
    with running(create_app(model, "koembed-tiny", index=index, api_key=KEY, limits=limits)) as base:
        yield base


@pytest.fixture(scope="module")
def plain_url(tiny_model_dir):
    """No batching, no key, no index; its own model object (an app owns its model)."""
    app = create_app(load_model(str(tiny_model_dir)), "tiny-plain", limits=ServerLimits(batching=False))
    with running(app) as base:
        yield base


@pytest.fixture(scope="module")
def http(url) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {KEY}"}, timeout=10) as client:
        yield client


def _client(url: str, key: str = KEY) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{url}/v1", api_key=key, max_retries=0, timeout=10)


def _expected(model, texts: list[str]) -> np.ndarray:
    return encode(model, texts, show_progress=False)


def _metric(text: str, name: str, labels: str = "") -> float:
    match = re.search(rf"^{re.escape(name + labels)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _counts(client: httpx.Client) -> tuple[float, float]:
    """(encode calls so far, successful embedding requests so far) from /metrics."""
    text = client.get("/metrics").text
    return (_metric(text, "koembed_embedding_batch_size_count"),
            _metric(text, "koembed_requests_total", '{route="/v1/embeddings",status="200"}'))


# --------------------------------------------------------------------------- OpenAI compatibility


def test_openai_client_embeddings_equal_encode(url, model, texts):
    client = _client(url)
    expected = _expected(model, texts[:3])

    one = client.embeddings.create(model="anything", input=texts[0], encoding_format="float")
    assert one.model == "koembed-tiny" and one.object == "list" and len(one.data) == 1
    np.testing.assert_allclose(one.data[0].embedding, expected[0], atol=1e-5)
    tokens = len(model.tokenizer(texts[0])["input_ids"])  # special tokens included
    assert one.usage.prompt_tokens == one.usage.total_tokens == tokens

    many = client.embeddings.create(model="koembed-tiny", input=texts[:3], encoding_format="float")
    assert [d.index for d in many.data] == [0, 1, 2]
    np.testing.assert_allclose([d.embedding for d in many.data], expected, atol=1e-5)
    assert many.usage.prompt_tokens == sum(len(model.tokenizer(t)["input_ids"]) for t in texts[:3])

    raw = client.embeddings.create(model="koembed-tiny", input=texts[:3], encoding_format="base64")
    assert all(isinstance(d.embedding, str) for d in raw.data)  # asked explicitly: the client leaves it encoded
    decoded = np.stack([np.frombuffer(base64.b64decode(d.embedding), dtype="<f4") for d in raw.data])
    np.testing.assert_allclose(decoded, expected, atol=1e-5)

    default = client.embeddings.create(model="koembed-tiny", input=texts[:3])  # client asks base64, decodes it
    np.testing.assert_allclose([d.embedding for d in default.data], expected, atol=1e-5)

    short = client.embeddings.create(model="koembed-tiny", input=texts[:3], dimensions=8, encoding_format="float")
    cut = expected[:, :8] / np.linalg.norm(expected[:, :8], axis=1, keepdims=True)
    np.testing.assert_allclose([d.embedding for d in short.data], cut, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm([d.embedding for d in short.data], axis=1), 1.0, atol=1e-5)


def test_openai_client_wrong_key_is_authentication_error(url):
    with pytest.raises(openai.AuthenticationError):
        _client(url, key="wrong").embeddings.create(model="m", input="질문")


# --------------------------------------------------------------------------- batching


def _hammer(base: str, texts: list[str], headers: dict[str, str], threads: int = 16,
            per_thread: int = 4) -> list[tuple[list[str], list[list[float]]]]:
    """threads x per_thread requests at once, each with its own 1-2 texts; returns (texts, rows) per request."""
    def worker(t: int) -> list[tuple[list[str], list[list[float]]]]:
        out = []
        with httpx.Client(base_url=base, headers=headers, timeout=10) as client:
            for r in range(per_thread):
                start = (t * per_thread + r) % len(texts)
                batch = texts[start: start + 1 + (t + r) % 2] or texts[:1]
                response = client.post("/v1/embeddings", json={"input": batch})
                assert response.status_code == 200, response.text
                out.append((batch, [d["embedding"] for d in response.json()["data"]]))
        return out

    with ThreadPoolExecutor(threads) as pool:
        return [item for chunk in pool.map(worker, range(threads)) for item in chunk]


def _check_rows(results, model, texts) -> None:
    expected = dict(zip(texts, _expected(model, texts)))
    for batch, rows in results:
        assert len(rows) == len(batch)
        for text, row in zip(batch, rows):
            np.testing.assert_allclose(row, expected[text], atol=1e-5)


def test_concurrent_requests_get_their_own_rows_in_shared_batches(url, http, model, texts):
    batches_before, requests_before = _counts(http)
    results = _hammer(url, texts, {"Authorization": f"Bearer {KEY}"})
    _check_rows(results, model, texts)
    batches, requests = (a - b for a, b in zip(_counts(http), (batches_before, requests_before)))
    assert requests == len(results) == 64
    assert 0 < batches < requests  # requests were merged into shared encode calls
    metrics = http.get("/metrics").text
    assert _metric(metrics, "koembed_embedding_batch_size_sum") > _metric(metrics, "koembed_embedding_batch_size_count")
    assert "koembed_request_duration_seconds_bucket" in metrics and "koembed_queue_depth" in metrics


def test_without_batching_each_request_is_one_encode(plain_url, model, texts):
    with httpx.Client(base_url=plain_url, timeout=10) as client:
        batches_before, requests_before = _counts(client)
        results = _hammer(plain_url, texts, {}, threads=8, per_thread=2)
        _check_rows(results, model, texts)
        batches, requests = (a - b for a, b in zip(_counts(client), (batches_before, requests_before)))
    assert batches == requests == len(results)


# --------------------------------------------------------------------------- errors


EMBEDDING_ERRORS = [
    # (request body, status, param, code, words the message must contain)
    ({"input": ["질문"] * (MAX_INPUTS + 1)}, 413, "input", "too_many_inputs", ["input", str(MAX_INPUTS)]),
    ({"input": LONG_TEXT}, 413, "input", "input_too_long", ["input", str(MAX_TOKENS), "truncate"]),
    ({"input": ["질문", LONG_TEXT]}, 413, "input", "input_too_long", ["input[1]"]),
    ({"input": ""}, 422, "input", "invalid_value", ["input", "empty"]),
    ({"input": []}, 422, "input", "invalid_value", ["input", "empty"]),
    ({"input": ["질문", ""]}, 422, "input", "invalid_value", ["input[1]", "empty"]),
    ({"input": " "}, 422, "input", "invalid_value", ["input: an empty text (no visible character)"]),
    ({"input": ["질문", " \n\u200b"]}, 422, "input", "invalid_value", ["input[1] is an empty text"]),
    # token ids of the tiny model's tokenizer (800 ids)
    ({"input": [5, 900, 6]}, 422, "input", "invalid_value", ["input[1]", "900", "0 to 799"]),
    ({"input": [[5, 6], [7, 8, 9, 5, 6, 800]]}, 422, "input", "invalid_value", ["input[1][5]", "800"]),
    ({"input": [[5, -1]]}, 422, "input", "invalid_value", ["input[0][1]", "negative"]),
    ({"input": [[5, 6], []]}, 422, "input", "invalid_value", ["input[1]", "empty"]),
    ({"input": [[5, "a"]]}, 422, "input", "invalid_value", ["input[0][1]", "integer", "string"]),
    ({"input": [5, 6.0]}, 422, "input", "invalid_value", ["input[1]", "integer", "number"]),
    ({"input": [2.5, 6]}, 422, "input", "invalid_value", ["input[0] must be an integer token id", "(2.5)"]),
    ({"input": [[5, 6, 2.5]]}, 422, "input", "invalid_value", ["input[0][2] must be an integer token id", "(2.5)"]),
    ({"input": [5, True]}, 422, "input", "invalid_value", ["input[1]", "integer", "boolean"]),
    ({"input": [[5, 6], "text"]}, 422, "input", "invalid_value", ["input[1]", "list of token ids"]),
    ({"input": ["질문", [5]]}, 422, "input", "invalid_value", ["input[1]", "string"]),
    ({"input": [[5]] * (MAX_INPUTS + 1)}, 413, "input", "too_many_inputs", ["input", str(MAX_INPUTS)]),
    ({"input": [[5] * (MAX_TOKENS + 1)]}, 413, "input", "input_too_long", ["input[0]", str(MAX_TOKENS)]),
    ({"input": [5] * (MAX_TOKENS + 1)}, 413, "input", "input_too_long", ["input has", str(MAX_TOKENS)]),
    ({"input": 5}, 422, "input", "invalid_value", ["input", "string"]),
    ({"input": ["질문", 3.5]}, 422, "input", "invalid_value", ["input[1]", "string"]),
    ({"input": {"text": "질문"}}, 422, "input", "invalid_value", ["input"]),
    ({}, 422, "input", "invalid_value", ["input", "required"]),
    ({"input": "질문", "model": 7}, 422, "model", "invalid_value", ["model"]),
    ({"input": "질문", "encoding_format": "int8"}, 422, "encoding_format", "invalid_value", ["encoding_format"]),
    ({"input": "질문", "dimensions": 0}, 422, "dimensions", "invalid_value", ["dimensions"]),
    ({"input": "질문", "dimensions": 33}, 422, "dimensions", "invalid_value", ["dimensions", "32"]),
    ({"input": "질문", "dimensions": "8"}, 422, "dimensions", "invalid_value", ["dimensions"]),
    ({"input": "질문", "truncate": "yes"}, 422, "truncate", "invalid_value", ["truncate"]),
    ({"input": "질문", "dimension": 8}, 422, "dimension", "invalid_value", ["dimension", "unknown field"]),
    (["질문"], 422, None, "invalid_value", ["JSON object"]),
]


def _assert_error(response: httpx.Response, status: int, param: str | None, code: str | None,
                  words: list[str] = ()) -> None:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == ("server_error" if status >= 500 else "invalid_request_error")
    assert error["param"] == param and error["code"] == code
    for word in words:
        assert word in error["message"], error["message"]


def _still_serving(http: httpx.Client) -> None:
    assert http.get("/health").json()["status"] == "ok"
    response = http.post("/v1/embeddings", json={"input": "여권 재발급"})
    assert response.status_code == 200 and len(response.json()["data"][0]["embedding"]) == 32


@pytest.mark.parametrize("body, status, param, code, words", EMBEDDING_ERRORS)
def test_embedding_errors(http, body, status, param, code, words):
    _assert_error(http.post("/v1/embeddings", json=body), status, param, code, words)


def test_malformed_and_oversized_bodies_then_still_serving(http):
    json_type = {"Content-Type": "application/json"}
    _assert_error(http.post("/v1/embeddings", content=b'{"input": "a",', headers=json_type), 400, None,
                  "invalid_json", ["JSON"])
    _assert_error(http.post("/v1/embeddings", content=b'{"input": "a"}', headers={"Content-Type": "text/plain"}),
                  422, None, "invalid_value", ["application/json"])
    _assert_error(http.post("/v1/embeddings", content=b"", headers=json_type), 422, None, "invalid_value")
    big = b'{"input": "' + b"a" * (MAX_BODY + 10) + b'"}'
    _assert_error(http.post("/v1/embeddings", content=big, headers=json_type), 413, None, "body_too_large",
                  [str(MAX_BODY)])
    chunked = iter([big[: MAX_BODY // 2], big[MAX_BODY // 2:]])  # no Content-Length: counted as it arrives
    _assert_error(http.post("/v1/embeddings", content=chunked, headers=json_type), 413, None, "body_too_large")
    _assert_error(http.get("/v1/embeddings"), 405, None, "method_not_allowed")
    _assert_error(http.get("/no-such-route"), 404, None, "not_found")
    _still_serving(http)


def test_truncate_embeds_the_first_tokens(http, model):
    response = http.post("/v1/embeddings", json={"input": LONG_TEXT, "truncate": True})
    assert response.status_code == 200, response.text
    assert response.json()["usage"]["prompt_tokens"] == MAX_TOKENS
    expected = encode(model, [LONG_TEXT], show_progress=False, max_seq_length=MAX_TOKENS)[0]
    np.testing.assert_allclose(response.json()["data"][0]["embedding"], expected, atol=1e-5)
    _still_serving(http)


def test_failing_encode_is_a_json_500_and_the_server_recovers(model):
    from fastapi.testclient import TestClient

    app = create_app(model, "tiny")
    batcher = app.state.batcher
    working = batcher.encode_rows

    def broken(texts):
        raise RuntimeError("simulated failure")

    with TestClient(app, raise_server_exceptions=False, base_url="http://localhost") as client:  # no key: loopback Host
        batcher.encode_rows = broken
        _assert_error(client.post("/v1/embeddings", json={"input": "질문"}), 500, None, "internal_error")
        batcher.encode_rows = working
        assert client.post("/v1/embeddings", json={"input": "질문"}).status_code == 200


def test_search_errors(http, plain_url):
    for body, param, word in [({"query": ""}, "query", "query"), ({"query": " \t"}, "query", "empty text"), ({"query": "여권", "k": 0}, "k", "k"),
                              ({"query": "여권", "k": "3"}, "k", "k"), ({"query": "여권", "mode": "fuzzy"}, "mode",
                                                                        "mode"), ({"k": 3}, "query", "query"),
                              ({"query": "여권", "mode": "sparse"}, "mode", "lexical weights"),
                              ({"query": "여권", "mode": "colbert"}, "mode", "ColBERT")]:
        _assert_error(http.post("/search", json=body), 422, param, "invalid_value", [word])
    _assert_error(http.post("/search", json={"query": LONG_TEXT}), 413, "query", "input_too_long", ["query"])
    with httpx.Client(base_url=plain_url, timeout=10) as client:
        _assert_error(client.post("/search", json={"query": "여권"}), 404, None, "no_index", ["--index"])
        assert client.get("/health").json()["index_loaded"] is False
    _still_serving(http)


# --------------------------------------------------------------------------- API key, health, search


def test_api_key_guards_everything_but_health(url):
    requests = [("POST", "/v1/embeddings", {"input": "질문"}), ("POST", "/search", {"query": "질문"}),
                ("POST", "/v1/rerank", {"query": "질문", "documents": ["문서"]}), ("GET", "/metrics", None)]
    with httpx.Client(base_url=url, timeout=10) as client:
        for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": f"Basic {KEY}"},
                        {"Authorization": KEY}):
            for method, path, body in requests:
                response = client.request(method, path, json=body, headers=headers)
                _assert_error(response, 401, None, "invalid_api_key", ["API key"])
                assert response.headers["www-authenticate"] == "Bearer"
        health = client.get("/health")
    assert health.status_code == 200
    index_state = health.json().pop("index")
    assert index_state["state"] == "ok" and index_state["error"] is None
    assert {k: v for k, v in health.json().items() if k != "index"} | {"queue_size": 0, "queued_requests": 0,
                                                                       "queued_tokens": 0} == {
        "status": "ok", "model": "koembed-tiny", "dimension": 32, "max_input_tokens": MAX_TOKENS,
        "index_loaded": True, "index_passages": 48, "batching": True, "queue_size": 0, "queued_requests": 0,
        "queued_tokens": 0, "max_queue_tokens": ServerLimits().max_queue_tokens,
        "reranker": None, "rerank_depth": None, "lexical": "bm25-phrase", "analyzer": "mecab", "search_mode": "bm25",
        "fusion": {"fusion": "rrf", "rrf_k": 60, "weights": None}}


def test_api_key_from_environment(monkeypatch, model):
    from fastapi.testclient import TestClient

    monkeypatch.setenv("KOEMBED_API_KEY", "env-key")
    with TestClient(create_app(model, "tiny")) as client:
        assert client.get("/metrics").status_code == 401
        assert client.get("/metrics", headers={"Authorization": "Bearer env-key"}).status_code == 200


@pytest.mark.parametrize("mode", ["dense", "bm25", "hybrid"])
def test_search_equals_index_search(http, index, sample, mode):
    for query in list(sample.queries.values())[:3]:
        response = http.post("/search", json={"query": query, "k": 5, "mode": mode})
        assert response.status_code == 200, response.text
        hits = response.json()["hits"]
        expected = index.search([query], 5, mode=mode)[0]
        assert [h["docid"] for h in hits] == [doc for doc, _ in expected]
        np.testing.assert_allclose([h["score"] for h in hits], [score for _, score in expected], atol=1e-6)
        assert [h["rank"] for h in hits] == list(range(1, len(expected) + 1))
        assert [h["text"] for h in hits] == [index.text(doc) for doc, _ in expected]
    default = http.post("/search", json={"query": query}).json()
    assert default["mode"] == "bm25" and default["k"] == 10  # the index's recorded mode: built without a fusion
    assert default["hits"] == http.post("/search", json={"query": query, "mode": "bm25"}).json()["hits"]


# --------------------------------------------------------------------------- configuration and CLI


def test_limits_are_checked(model):
    with pytest.raises(ValueError, match="max_seq_length"):
        create_app(model, "tiny", limits=ServerLimits(max_input_tokens=model.max_seq_length + 1))
    with pytest.raises(ValueError, match="max_inputs"):
        ServerLimits(max_inputs=0)


def test_cli_serve_passes_options_and_refuses_keyless_exposure(monkeypatch):
    import koembed.server as server_module
    from koembed.cli import app

    calls = []
    monkeypatch.setattr(server_module, "serve", lambda *args, **kwargs: calls.append((args, kwargs)))
    monkeypatch.delenv("KOEMBED_API_KEY", raising=False)
    result = CliRunner().invoke(app, ["serve", "--model", "minilm", "--port", "8123", "--max-inputs", "3",
                                      "--max-wait-ms", "2", "--no-batching", "--truncate"])
    assert result.exit_code == 0, result.output
    (args, kwargs), = calls
    assert args == (ModelSpec("minilm", precision="auto"), None) and kwargs["host"] == "127.0.0.1" and kwargs["port"] == 8123
    assert kwargs["limits"] == ServerLimits(max_inputs=3, max_wait_ms=2, batching=False, truncate=True)
    assert "warning" not in result.output
    result = CliRunner().invoke(app, ["serve", "--model", "minilm", "--host", "0.0.0.0"])
    assert result.exit_code == 2 and "--insecure-no-auth" in result.output and len(calls) == 1
    result = CliRunner().invoke(app, ["serve", "--model", "minilm", "--host", "0.0.0.0", "--insecure-no-auth"])
    assert result.exit_code == 0 and "warning" in result.output and "without an API key" in result.output
    assert calls[-1][1]["insecure_no_auth"] is True
    monkeypatch.setenv("KOEMBED_API_KEY", "k")
    result = CliRunner().invoke(app, ["serve", "--model", "minilm", "--host", "0.0.0.0"])
    assert result.exit_code == 0 and "without an API key" not in result.output
