"""A bounded, seeded fuzz of the HTTP API against its own OpenAPI schema (schemathesis on hypothesis).

The real server runs on 127.0.0.1 with an API key and an index. Requests come from schemathesis's positive
and negative generation for every operation the app's schema lists (so a route added later, such as
/v1/rerank, is fuzzed too) and from a strategy of our own for what a schema cannot express: raw bytes, invalid
UTF-8, lone surrogates, token ids and ``dimensions`` of every kind, rerank requests (the app has a reranker),
wrong content types and methods, missing or wrong keys. Expected: no response >= 500,
every error in the API's JSON shape, the server still answering correctly, and resident memory growing less
than 10% after a warm-up.
"""

from __future__ import annotations

import collections
import gc
import json
import time

import httpx
import numpy as np
import pytest

from koembed.models import encode
from koembed.models.reranker import load_reranker
from koembed.server import ServerLimits, create_app
from tests.helpers import running

KEY = "fuzz-key"
SEED = 20240611
WARMUP, REQUESTS = 200, 1200
TIME_CAP_S = 120  # a bound for CI; the run takes ~30 s on 2 shared cores


def raw_requests(paths: list[str]):
    """What no schema expresses: lone surrogates and invisible text in well-addressed requests, and bodies of raw
    bytes, bad UTF-8 or deep nesting with odd types, methods, keys and routes. Returns both strategies."""
    from hypothesis import strategies as st

    korean = st.text(alphabet=st.characters(min_codepoint=0xAC00, max_codepoint=0xD7A3) | st.sampled_from(" .?1a"),
                     max_size=30)
    texts = st.one_of(
        korean,
        st.text(alphabet=st.characters(codec=None, categories=("Lo", "Ll", "Nd", "Zs", "Cc", "So")), max_size=40),
        st.builds(lambda a, c, b: a + c + b, korean, st.characters(codec=None, categories=("Cs",)), korean),
        st.sampled_from(["\x00", "\ufeff", "\u200b", " "]),  # invisible text
    )
    json_values = st.recursive(st.none() | st.booleans() | st.integers() | st.floats() | texts,
                               lambda inner: st.lists(inner, max_size=4) | st.dictionaries(texts, inner, max_size=4),
                               max_leaves=12)
    fields = st.sampled_from(["input", "query", "k", "mode", "dimensions", "encoding_format", "truncate", "model",
                              "documents", "top_n"])
    objects = st.dictionaries(fields, json_values | texts | st.lists(texts, max_size=5), max_size=4)
    bodies = st.one_of(
        objects.map(_ascii_json),
        st.binary(max_size=200),
        st.builds(lambda t: b'{"input": "' + t + b'"}', st.binary(max_size=20)),  # invalid UTF-8 inside JSON
        st.integers(1, 60_000).map(lambda n: b"[" * n + b"]" * n),  # deep nesting
    )
    headers = st.fixed_dictionaries({}, optional={
        "Authorization": st.sampled_from([f"Bearer {KEY}", "Bearer wrong", KEY, ""]),
        "Content-Type": st.sampled_from(["application/json", "text/plain", "application/x-www-form-urlencoded"]),
    })
    good = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    # token ids of the served model (800 ids): in and out of the vocabulary, negative, floats, booleans
    ids = st.lists(st.integers(-2, 900) | st.sampled_from([2.5, 1e30, True, 799]), min_size=0, max_size=12)
    embedding_options = {"dimensions": st.integers(-2, 40) | json_values,
                         "encoding_format": st.sampled_from(["float", "base64"]) | json_values,
                         "truncate": st.booleans() | json_values}
    addressed = st.one_of(  # right route, key and type: the text itself is what is odd
        st.tuples(st.just("POST"), st.just("/v1/embeddings"), st.just(good),
                  st.fixed_dictionaries({"input": texts | st.lists(texts, min_size=1, max_size=5)},
                                        optional=embedding_options).map(_ascii_json)),
        st.tuples(st.just("POST"), st.just("/v1/embeddings"), st.just(good),
                  st.fixed_dictionaries({"input": ids | st.lists(ids, min_size=0, max_size=4)},
                                        optional=embedding_options).map(_ascii_json)),
        st.tuples(st.just("POST"), st.just("/v1/rerank"), st.just(good),
                  st.fixed_dictionaries({"query": texts, "documents": st.lists(texts, min_size=0, max_size=5)},
                                        optional={"top_n": st.integers(-1, 8) | json_values,
                                                  "return_documents": st.booleans() | json_values,
                                                  "truncate": st.booleans()}).map(_ascii_json)),
        st.tuples(st.just("POST"), st.just("/search"), st.just(good),
                  st.fixed_dictionaries({"query": texts}, optional={"k": st.integers(-2, 1200) | json_values,
                                                                    "mode": st.sampled_from(["dense", "bm25", "hybrid"])
                                                                    | json_values}).map(_ascii_json)),
    )
    anything = st.tuples(st.sampled_from(["POST", "GET", "PUT", "DELETE"]), st.sampled_from(paths + ["/", "/nope"]),
                         headers, bodies)
    return addressed, anything


def _ascii_json(obj) -> bytes:
    return json.dumps(obj).encode()  # ASCII: a lone surrogate travels as a \\udXXX escape


def run_fuzz(base: str, schema, n: int, seed: int, deadline: float, statuses: collections.Counter) -> int:
    """Send ``n`` generated requests (fewer if ``deadline`` passes); count (route, status); return how many."""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as fixed_seed
    from hypothesis import strategies as st
    from schemathesis import Case
    from schemathesis.generation.modes import GenerationMode

    addressed, anything = raw_requests(sorted(schema.raw_schema["paths"]))
    strategy = st.one_of(schema.as_strategy(GenerationMode.POSITIVE), schema.as_strategy(GenerationMode.NEGATIVE),
                         addressed, anything)
    sent = 0
    client = httpx.Client(base_url=base, timeout=60)

    @fixed_seed(seed)
    @settings(max_examples=n, deadline=None, database=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(request=strategy)
    def one(request) -> None:
        nonlocal sent
        if time.monotonic() > deadline:
            return
        if isinstance(request, Case):
            response = request.call(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
            route, status, body = request.path, response.status_code, response.content
        else:
            method, path, headers, content = request
            response = client.request(method, path, headers=headers, content=content)
            route, status, body = path, response.status_code, response.content
        sent += 1
        statuses[(route, status)] += 1
        assert status < 500, (request, body[:300])
        if status >= 400:
            error = json.loads(body)["error"]  # every error in the API's shape
            assert set(error) == {"message", "type", "param", "code"}, body[:300]

    try:
        one()
    finally:
        client.close()
    return sent


@pytest.mark.slow
def test_fuzzed_requests_never_get_a_5xx_and_memory_stays_flat(model, index, sample, tiny_cross_encoder_dir):
    import psutil
    import schemathesis

    limits = ServerLimits(max_inputs=16, max_input_tokens=64, max_body_bytes=256 * 1024)
    reranker = load_reranker(str(tiny_cross_encoder_dir), device="cpu")
    app = create_app(model, "fuzz", index=index, api_key=KEY, limits=limits, reranker=reranker,
                     reranker_name="tiny-ce")
    schema = schemathesis.openapi.from_dict(app.openapi())
    process = psutil.Process()
    statuses: collections.Counter = collections.Counter()
    deadline = time.monotonic() + TIME_CAP_S
    with running(app) as base:
        run_fuzz(base, schema, WARMUP, SEED + 1, deadline, collections.Counter())
        gc.collect()
        rss_before = process.memory_info().rss
        started = time.monotonic()
        sent = run_fuzz(base, schema, REQUESTS, SEED, deadline, statuses)
        seconds = time.monotonic() - started
        gc.collect()
        rss_after = process.memory_info().rss
        with httpx.Client(base_url=base, headers={"Authorization": f"Bearer {KEY}"}, timeout=30) as client:
            assert client.get("/health").json()["status"] == "ok"
            text = next(iter(sample.queries.values()))
            row = client.post("/v1/embeddings", json={"input": text}).json()["data"][0]["embedding"]
            np.testing.assert_allclose(row, encode(model, [text], show_progress=False, max_seq_length=64)[0],
                                       atol=1e-5)
            assert client.post("/search", json={"query": text, "k": 3}).status_code == 200
            assert client.post("/v1/rerank", json={"query": text, "documents": [text]}).status_code == 200
    by_status = collections.Counter()
    for (_, status), count in statuses.items():
        by_status[status] += count
    growth = rss_after / rss_before - 1
    print(f"\nfuzz: {sent} requests in {seconds:.1f} s, statuses {dict(sorted(by_status.items()))}, "
          f"routes {sorted({route for route, _ in statuses})}, RSS {rss_before / 2**20:.0f} -> "
          f"{rss_after / 2**20:.0f} MiB ({growth:+.1%})")
    assert sent >= 1000, f"only {sent} requests within the {TIME_CAP_S} s cap"
    assert max(by_status) < 500 and by_status[200] > 50  # valid requests were among them, and served
    assert {"/v1/embeddings", "/search", "/v1/rerank"} <= {route for route, _ in statuses}
    assert statuses[("/v1/rerank", 200)] > 10 and statuses[("/v1/embeddings", 200)] > 10
    assert growth < 0.10
