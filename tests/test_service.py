"""The API's service object called directly, without HTTP: what it answers, and the ApiError each refusal raises
(status, code, the field it names)."""

from __future__ import annotations

import asyncio
import json

import numpy as np
import pytest

from koembed.models import encode
from koembed.server.config import ServerLimits
from koembed.server.errors import ApiError
from koembed.server.schemas import EmbeddingRequest, RerankRequest, SearchRequest
from koembed.server.service import Service

MAX_INPUTS = 4


@pytest.fixture(scope="module")
def service(model, index) -> Service:
    return Service(model, "tiny", index=index, limits=ServerLimits(max_inputs=MAX_INPUTS, max_input_tokens=64))


def call(service: Service, method: str, body: dict):
    """Run one service call in its own event loop (the batcher's worker lives in that loop), then stop it."""
    request = {"embed": EmbeddingRequest, "rerank": RerankRequest, "search": SearchRequest}[method](**body)

    async def run():
        try:
            return await getattr(service, method)(request)
        finally:
            await service.close()

    return asyncio.run(run())


def refusal(service: Service, method: str, body: dict) -> ApiError:
    with pytest.raises(ApiError) as caught:
        call(service, method, body)
    return caught.value


def test_embed_equals_encode(service, model, queries):
    body = json.loads(call(service, "embed", {"input": queries[:3], "dimensions": 8}))
    full = encode(model, queries[:3], show_progress=False)[:, :8]
    np.testing.assert_allclose([d["embedding"] for d in body["data"]],
                               full / np.linalg.norm(full, axis=1, keepdims=True), atol=1e-5)
    assert body["model"] == "tiny" and body["usage"]["prompt_tokens"] == sum(
        len(model.tokenizer(q)["input_ids"]) for q in queries[:3])


def test_search_equals_index_search(service, index, queries):
    body = call(service, "search", {"query": queries[0], "k": 5, "mode": "bm25"})
    assert [(h["docid"], pytest.approx(h["score"])) for h in body["hits"]] == index.search([queries[0]], 5, "bm25")[0]


def test_too_many_inputs_is_one_413_for_every_list(model, index):
    service = Service(model, "tiny", limits=ServerLimits(max_inputs=MAX_INPUTS))
    error = refusal(service, "embed", {"input": ["질문"] * (MAX_INPUTS + 1)})
    assert (error.status, error.code, error.param) == (413, "too_many_inputs", "input")
    assert f"input has {MAX_INPUTS + 1} texts, more than the limit of {MAX_INPUTS}" in error.message


def test_refusals_name_the_field(service, model):
    error = refusal(service, "embed", {"input": "질문", "dimensions": 33})
    assert (error.status, error.param) == (422, "dimensions") and "32" in error.message
    error = refusal(service, "embed", {"input": ["전세 " * 100]})
    assert (error.status, error.code) == (413, "input_too_long") and error.message.startswith("input[0] has")
    error = refusal(service, "search", {"query": "여권", "mode": "colbert"})
    assert (error.status, error.param) == (422, "mode")
    error = refusal(service, "rerank", {"query": "q", "documents": ["d"]})
    assert (error.status, error.code) == (404, "no_reranker")
    error = refusal(Service(model, "tiny"), "search", {"query": "여권"})
    assert (error.status, error.code) == (404, "no_index")


def test_health(service):
    health = service.health()
    assert health["status"] == "ok" and health["index_loaded"] is True and health["index_passages"] == 48
    assert health["max_input_tokens"] == 64 and health["dimension"] == 32
