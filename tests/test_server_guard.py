"""Server hardening (docs/RELIABILITY.md): text the tokenizer cannot read is a 422, a bounded queue answers 503
with Retry-After and times requests out, and a keyless server answers only loopback Host names.

All against the real uvicorn server on 127.0.0.1 (tests.helpers.running); the encoder is gated by an event so
the queue can be filled at will and the outcome of each request is known in advance.
"""

from __future__ import annotations

import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import pytest

from koembed.errors import ServeError
from koembed.models import ModelSpec
from koembed.server import ServerLimits, create_app
from koembed.server.tokens import TokenCounter
from tests.helpers import running

JSON = {"Content-Type": "application/json"}


@pytest.fixture(scope="module")
def keyless(model, index):
    with running(create_app(model, "tiny", index=index, api_key="", allowed_hosts=["api.internal"])) as base:
        yield base


def _error(response: httpx.Response, status: int, code: str, param: str | None = None) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["code"] == code and error["param"] == param, error
    return error


def _metric(text: str, name: str) -> float:
    match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
    return float(match.group(1)) if match else 0.0


# --------------------------------------------------------------------------- 1: unreadable text is a 422


@pytest.mark.parametrize("path, body, param, where", [
    ("/v1/embeddings", b'{"input": "a\\ud800b"}', "input", "input:"),
    ("/v1/embeddings", b'{"input": "a\xed\xa0\x80b"}', "input", "input:"),  # the raw bytes of U+D800
    ("/v1/embeddings", b'{"input": ["fine", "\\udfff"]}', "input", "input[1]"),
    ("/search", b'{"query": "a\\ud800b"}', "query", "query"),
])
def test_lone_surrogates_are_422_naming_the_field(keyless, path, body, param, where):
    with httpx.Client(base_url=keyless, timeout=10) as client:
        error = _error(client.post(path, content=body, headers=JSON), 422, "invalid_value", param)
        assert error["message"].startswith(where) and "unicode" in error["message"].lower(), error
        assert client.post("/v1/embeddings", json={"input": "여권 재발급"}).status_code == 200


def test_any_tokenizer_error_is_a_422_not_a_500(keyless, monkeypatch):
    def broken(self, texts):
        raise RuntimeError("the tokenizer failed on this text")

    monkeypatch.setattr(TokenCounter, "__call__", broken)
    with httpx.Client(base_url=keyless, timeout=10) as client:
        error = _error(client.post("/v1/embeddings", json={"input": ["질문"]}), 422, "invalid_value", "input")
        assert "tokenizer" in error["message"]
        _error(client.post("/search", json={"query": "질문"}), 422, "invalid_value", "query")
    monkeypatch.undo()
    with httpx.Client(base_url=keyless, timeout=10) as client:
        assert client.post("/v1/embeddings", json={"input": "질문"}).status_code == 200


# --------------------------------------------------------------------------- 2: backpressure


def test_full_queue_is_503_with_retry_after_and_waits_are_bounded(model, index):
    text = "전세 보증금 반환"
    t = TokenCounter(model)([text])[0]
    # Two queued requests of 2 texts (4t tokens) fit; then 3 more texts (3t) do not.
    limits = ServerLimits(max_queue_tokens=5 * t, request_timeout_s=4, max_wait_ms=0)
    app = create_app(model, "tiny", index=index, limits=limits)
    batcher = app.state.batcher
    encode_rows, entered, release = batcher.encode_rows, threading.Event(), threading.Event()

    def gated(texts):  # the model is busy until the test says so
        entered.set()
        release.wait(30)
        return encode_rows(texts)

    batcher.encode_rows = gated
    with running(app) as base, httpx.Client(base_url=base, timeout=30) as client, ThreadPoolExecutor(8) as pool:
        first = pool.submit(client.post, "/v1/embeddings", json={"input": text})
        assert entered.wait(10)  # taken off the queue, encoding blocks
        queued = [pool.submit(client.post, "/v1/embeddings", json={"input": [text] * 2}) for _ in range(2)]
        deadline = time.monotonic() + 10
        while client.get("/health").json()["queued_requests"] < 2 and time.monotonic() < deadline:
            time.sleep(0.02)
        health = client.get("/health").json()
        assert health["queued_requests"] == 2 and health["queued_tokens"] == 4 * t
        started = time.monotonic()
        full = client.post("/v1/embeddings", json={"input": [text] * 3})  # does not fit: refused at once
        assert time.monotonic() - started < 1.0
        error = _error(full, 503, "server_busy")
        assert "max_queue_tokens" in error["message"] and int(full.headers["retry-after"]) >= 1
        _error(client.post("/search", json={"query": text * 4}), 503, "server_busy")  # one queue bound for the model
        for future in queued:  # nobody answered them within request_timeout: 503, and they left the queue
            _error(future.result(), 503, "timeout")
        assert client.get("/health").json()["queued_tokens"] == 0
        metrics = client.get("/metrics").text
        assert _metric(metrics, 'koembed_rejected_requests_total{reason="queue_full"}') == 2
        assert _metric(metrics, 'koembed_rejected_requests_total{reason="timeout"}') >= 2
        assert _metric(metrics, "koembed_queue_limit_tokens") == 5 * t and "koembed_queue_tokens" in metrics
        release.set()
        _error(first.result(), 503, "timeout")  # the request whose encoding blocked timed out too
        ok = client.post("/v1/embeddings", json={"input": [text] * 3})
        assert ok.status_code == 200 and len(ok.json()["data"]) == 3
        assert client.post("/search", json={"query": text}).status_code == 200


def test_one_request_larger_than_the_queue_is_served_when_the_queue_is_empty(model):
    app = create_app(model, "tiny", limits=ServerLimits(max_queue_tokens=8))
    with running(app) as base, httpx.Client(base_url=base, timeout=30) as client:
        response = client.post("/v1/embeddings", json={"input": ["전세 보증금 반환 소송 절차"] * 4})
        assert response.status_code == 200 and response.json()["usage"]["prompt_tokens"] > 8


def test_limits_refuse_bad_queue_settings():
    with pytest.raises(ValueError, match="max_queue_tokens"):
        ServerLimits(max_queue_tokens=0)
    with pytest.raises(ValueError, match="request_timeout_s"):
        ServerLimits(request_timeout_s=0)


# --------------------------------------------------------------------------- 3: exposure


@pytest.mark.parametrize("host, allowed", [
    ("attacker.example", False), ("attacker.example:80", False), ("127.0.0.1.attacker.example", False),
    ("10.0.0.5", False), ("localhost", True), ("LOCALHOST:1234", True), ("127.0.0.1", True), ("127.8.9.1:8000", True),
    ("[::1]:8000", True), ("api.internal", True), ("api.internal:8000", True),
])
def test_keyless_server_answers_only_loopback_and_allowed_host_names(keyless, host, allowed):
    with httpx.Client(base_url=keyless, timeout=10) as client:
        for method, path, body in [("POST", "/search", {"query": "여권"}), ("GET", "/health", None),
                                   ("POST", "/v1/embeddings", {"input": "여권"})]:
            response = client.request(method, path, json=body, headers={"Host": host})
            if allowed:
                assert response.status_code == 200, response.text
            else:
                error = _error(response, 400, "host_not_allowed")
                assert "--allowed-host" in error["message"]


def test_with_a_key_any_host_is_served_and_star_allows_any_without_one(model):
    with running(create_app(model, "tiny", api_key="k")) as base, httpx.Client(base_url=base, timeout=10) as client:
        response = client.get("/metrics", headers={"Host": "attacker.example", "Authorization": "Bearer k"})
        assert response.status_code == 200
    with running(create_app(model, "tiny", api_key="", allowed_hosts=["*"])) as base, \
            httpx.Client(base_url=base, timeout=10) as client:
        assert client.get("/health", headers={"Host": "anything.example"}).status_code == 200


def test_serve_refuses_a_keyless_non_loopback_bind_before_loading(monkeypatch):
    import uvicorn

    from koembed.server import app as app_module

    monkeypatch.delenv("KOEMBED_API_KEY", raising=False)
    loaded, ran = [], []
    monkeypatch.setattr(app_module, "load_model", lambda spec: loaded.append(spec) or pytest.fail("loaded"))
    with pytest.raises(ServeError, match="--insecure-no-auth"):
        app_module.serve(ModelSpec("minilm"), host="0.0.0.0")
    with pytest.raises(ServeError):
        app_module.serve(ModelSpec("minilm"), host="192.168.1.20", api_key="")
    assert loaded == []
    # Explicitly insecure: it loads and serves, and the bound address is an allowed Host name.
    monkeypatch.setattr(app_module, "load_model", lambda spec: loaded.append(spec) or object())
    monkeypatch.setattr(app_module, "create_app", lambda *a, **k: ran.append(k) or "app")
    monkeypatch.setattr(app_module, "warm_up", lambda *a: None)  # the stand-in model cannot encode
    monkeypatch.setattr(uvicorn, "run", lambda *a, **k: None)
    app_module.serve(ModelSpec("minilm"), host="192.168.1.20", insecure_no_auth=True)
    assert ran[-1]["allowed_hosts"] == ("192.168.1.20",) and ran[-1]["api_key"] is None
    monkeypatch.setenv("KOEMBED_API_KEY", "k")
    app_module.serve(ModelSpec("minilm"), host="0.0.0.0")
    assert ran[-1]["api_key"] == "k"
