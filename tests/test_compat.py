"""Compatibility of ``/v1/embeddings`` with what clients send: token-id inputs (TEI / infinity / OpenAI style) and
the real LangChain and LlamaIndex OpenAI embedding classes against a ``koembed serve`` subprocess.

Token ids of ``model.tokenizer(text)`` must embed exactly as ``text`` (to 1e-5) with the bundled MiniLM and the
tiny XLM-R; a truncated id list must embed as the model computes its first ``max_input_tokens`` ids (checked with
transformers directly: CLS of the last hidden state, L2-normalised); text and id requests share batches.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import openai
import pytest

from koembed.models import encode, load_model
from koembed.server import ServerLimits, create_app
from tests.helpers import QUIET, running, serving_cli

KEY = "compat-key-71c2"
MAX_TOKENS = 48


@pytest.fixture(scope="module")
def texts(queries) -> list[str]:
    return queries[:12]


@pytest.fixture(scope="module")
def minilm():
    return load_model("minilm")


@pytest.fixture(scope="module")
def minilm_url():
    """``koembed serve -m minilm`` as users start it (a subprocess, with an API key)."""
    with serving_cli("-m", "minilm", "--precision", "fp32", "--api-key", KEY) as url:
        yield url


@pytest.fixture(scope="module")
def tiny_url(tiny_model_dir):
    """The tiny XLM-R with a short token limit; max_wait_ms generous so concurrent requests share batches."""
    limits = ServerLimits(max_input_tokens=MAX_TOKENS, max_wait_ms=50)
    with running(create_app(load_model(str(tiny_model_dir)), "tiny", limits=limits)) as url:
        yield url


def _rows(response: httpx.Response) -> np.ndarray:
    assert response.status_code == 200, response.text
    return np.array([row["embedding"] for row in response.json()["data"]], dtype=np.float32)


# --------------------------------------------------------------------------- token-id inputs


@pytest.mark.slow
def test_minilm_token_ids_embed_as_their_text(minilm_url, minilm, texts):
    ids = minilm.tokenizer(texts)["input_ids"]  # special tokens ([CLS], [SEP]) included
    client = openai.OpenAI(base_url=f"{minilm_url}/v1", api_key=KEY, max_retries=0, timeout=30)
    got = client.embeddings.create(model="minilm", input=ids)  # the openai client: base64 float32
    expected = encode(minilm, texts, QUIET)
    np.testing.assert_allclose([d.embedding for d in got.data], expected, atol=1e-5)
    assert got.usage.prompt_tokens == sum(map(len, ids))
    one = client.embeddings.create(model="minilm", input=ids[3], encoding_format="float")  # one flat id list
    np.testing.assert_allclose(one.data[0].embedding, expected[3], atol=1e-5)


def test_tiny_xlmr_token_ids_embed_as_their_text_in_shared_batches(tiny_url, model, texts):
    ids = model.tokenizer(texts)["input_ids"]
    assert max(map(len, ids)) <= MAX_TOKENS
    expected = encode(model, texts, QUIET)
    bodies = [{"input": texts[i: i + 3]} if i % 2 else {"input": ids[i: i + 3]} for i in range(0, 12, 3)]
    with httpx.Client(base_url=tiny_url, timeout=30) as http, ThreadPoolExecutor(len(bodies)) as pool:
        before = _batches(http)
        responses = list(pool.map(lambda body: http.post("/v1/embeddings", json=body), bodies))
        batches = _batches(http) - before
    np.testing.assert_allclose(np.concatenate([_rows(r) for r in responses]), expected, atol=1e-5)
    assert batches < len(bodies)  # text and id requests were encoded together
    assert [r.json()["usage"]["prompt_tokens"] for r in responses[::2]] == [sum(map(len, ids[0:3])),
                                                                             sum(map(len, ids[6:9]))]


def _batches(http: httpx.Client) -> float:
    line = next(x for x in http.get("/metrics").text.splitlines()
                if x.startswith("koembed_embedding_batch_size_count"))
    return float(line.split()[-1])


def test_truncated_token_ids_embed_their_first_ids(tiny_url, tiny_model_dir):
    import torch
    from transformers import AutoModel

    long_ids = list(range(5, 5 + MAX_TOKENS + 10))
    with httpx.Client(base_url=tiny_url, timeout=30) as http:
        refused = http.post("/v1/embeddings", json={"input": [long_ids]})
        assert refused.status_code == 413 and "input[0]" in refused.json()["error"]["message"]
        cut = http.post("/v1/embeddings", json={"input": [long_ids, long_ids[:7]], "truncate": True})
    encoder = AutoModel.from_pretrained(str(tiny_model_dir)).eval()  # the saved XLM-R, without koembed
    with torch.inference_mode():
        cls = [encoder(input_ids=torch.tensor([row])).last_hidden_state[0, 0] for row in
               (long_ids[:MAX_TOKENS], long_ids[:7])]
    expected = torch.nn.functional.normalize(torch.stack(cls), dim=1).numpy()
    np.testing.assert_allclose(_rows(cut), expected, atol=1e-5)
    assert cut.json()["usage"]["prompt_tokens"] == MAX_TOKENS + 7


# --------------------------------------------------------------------------- LangChain and LlamaIndex


@pytest.mark.slow
def test_langchain_openai_embeddings(minilm_url, minilm, texts):
    from langchain_openai import OpenAIEmbeddings

    embeddings = OpenAIEmbeddings(model="minilm", base_url=f"{minilm_url}/v1", api_key=KEY,
                                  check_embedding_ctx_length=False, max_retries=0)
    np.testing.assert_allclose(embeddings.embed_documents(texts), encode(minilm, texts, QUIET), atol=1e-5)
    np.testing.assert_allclose(embeddings.embed_query(texts[0]), encode(minilm, texts[:1], QUIET)[0], atol=1e-5)


@pytest.mark.slow
def test_llama_index_openai_like_embedding(minilm_url, minilm, texts):
    from llama_index.embeddings.openai_like import OpenAILikeEmbedding

    embedding = OpenAILikeEmbedding(model_name="minilm", api_base=f"{minilm_url}/v1", api_key=KEY, max_retries=0,
                                    embed_batch_size=5)
    got = embedding.get_text_embedding_batch(texts)
    np.testing.assert_allclose(got, encode(minilm, texts, QUIET), atol=1e-5)
    np.testing.assert_allclose(embedding.get_query_embedding(texts[1]), encode(minilm, texts[1:2], QUIET)[0],
                               atol=1e-5)
