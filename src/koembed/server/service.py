"""What the API does, without HTTP: limits and token checks, embed, rerank, search and health.

:class:`Service` takes validated request bodies (:mod:`koembed.server.schemas`) and returns response bodies;
every refusal is an :class:`~koembed.server.errors.ApiError` (status, message naming the field, code), which the
FastAPI routes of :mod:`koembed.server.app` render. Tests call it directly (no server, no HTTP client).
Embeddings and reranks run on the batcher's one encoding thread (:mod:`koembed.server.batching`); index calls on
a thread of their own, with their own timeout (:mod:`koembed.server.index_calls`).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import json
import logging
from typing import TYPE_CHECKING, Any

from koembed.errors import KoembedError, SpecError
from koembed.index import SearchIndex, default_mode
from koembed.models import EncodeOptions, Encoder, length_limit
from koembed.models.token_ids import encode_inputs
from koembed.ranking import Hit, hit_rows
from koembed.retrieval.rerank import DEFAULT_RERANK_DEPTH, first_stage_depth, rerank_documents, rerank_hits
from koembed.server.batching import Batcher
from koembed.server.config import NO_LIMIT_MAX_TOKENS, ServerLimits
from koembed.server.errors import ApiError
from koembed.server.index_calls import IndexCalls
from koembed.server.observability import ServerMetrics
from koembed.server.playground import highlight_rows, index_search_info
from koembed.server.schemas import EmbeddingRequest, RerankRequest, SearchRequest
from koembed.server.token_inputs import checked_token_ids, token_vocabulary
from koembed.server.tokens import TokenCounter

if TYPE_CHECKING:
    import numpy as np
    from sentence_transformers import CrossEncoder

log = logging.getLogger(__name__)
PROBE_ID = "\x00koembed-health-probe"  # no passage id: ids are text with a visible character


class Service:
    """The API of one model (and optionally an index and a reranker), as plain async methods.

    ``model`` (a loaded SentenceTransformer) is served as ``model_name``; ``index`` (FAISS or Qdrant, loaded with
    this same model object: ``load_index(dir, encoder=model)``) enables :meth:`search`; ``reranker`` (a loaded
    CrossEncoder, served as ``reranker_name``) enables :meth:`rerank` and reranked search of ``rerank_depth``
    hits. A ``ValueError`` if ``limits.max_input_tokens`` exceeds the model's own limit. Call :meth:`close` when
    done (the app's lifespan does).
    """

    def __init__(self, model: Encoder, model_name: str, index: SearchIndex | None = None,
                 limits: ServerLimits = ServerLimits(), reranker: CrossEncoder | None = None,
                 reranker_name: str | None = None, rerank_depth: int = DEFAULT_RERANK_DEPTH):
        self.model_name, self.index, self.limits = model_name, index, limits
        self.reranker, self.reranker_name, self.rerank_depth = reranker, reranker_name, rerank_depth
        dimension = model.get_embedding_dimension()
        if dimension is None:  # (was int(None): a TypeError too)
            raise TypeError("the model reports no embedding dimension")
        self.dimension = int(dimension)
        model_limit = length_limit(model)
        self.max_tokens = limits.max_input_tokens or model_limit or NO_LIMIT_MAX_TOKENS
        if model_limit is not None and self.max_tokens > model_limit:
            raise ValueError(f"max_input_tokens={self.max_tokens} exceeds the model's max_seq_length={model_limit}: "
                             "the model would silently truncate what the server accepted")
        self._count_tokens = TokenCounter(model)
        self._vocabulary = token_vocabulary(model)
        self._count_rerank_tokens = TokenCounter(reranker) if reranker is not None else None
        self.options = EncodeOptions(batch_size=limits.batch_size, show_progress=False)
        self.metrics = ServerMetrics()

        def encode_rows(inputs: list[str | list[int]]) -> np.ndarray:
            return encode_inputs(model, inputs, self.options, max_seq_length=self.max_tokens)

        self.batcher = Batcher(encode_rows, self.metrics, limits.max_batch_tokens, limits.max_wait_ms, limits.batching,
                               limits.max_queue_tokens, limits.request_timeout_s)
        self.metrics.queue_limit.set(limits.max_queue_tokens)
        self._index_calls = IndexCalls(limits.index_timeout_s, _where(index), limits.request_timeout_s) if index is not None else None

    async def close(self) -> None:
        await self.batcher.close()
        if self._index_calls is not None:
            self._index_calls.close()

    # ------------------------------------------------------------------ checks

    def _check_count(self, n: int, name: str) -> None:
        """413 when a request carries more than ``max_inputs`` texts (``name``: the field)."""
        if n > self.limits.max_inputs:
            raise ApiError(413, f"{name} has {n} texts, more than the limit of {self.limits.max_inputs} per request "
                                "(max_inputs): split it into several requests", param=name, code="too_many_inputs")

    def _truncate(self, asked: bool | None) -> bool:
        return self.limits.truncate if asked is None else asked

    async def _token_counts(self, counter: TokenCounter, texts: list[str], name: str) -> list[int]:
        """Token counts off the event loop. Text the tokenizer cannot read is the request's fault: 422 naming the
        field, never a 500."""
        try:
            return await asyncio.to_thread(counter, texts)
        except Exception as exc:
            log.warning("the tokenizer refused %s: %r", name, exc)
            raise ApiError(422, f"{name}: the model's tokenizer cannot read this text ({type(exc).__name__}); "
                                "send valid Unicode text", param=name, code="invalid_value") from exc

    async def _checked_tokens(self, texts: list[str], name: str, single: bool, truncate: bool) -> list[int]:
        """Token counts, capped at the limit when truncating; 413 naming the first over-long text otherwise."""
        counts = await self._token_counts(self._count_tokens, texts, name)
        over = [i for i, n in enumerate(counts) if n > self.max_tokens]
        if over and not truncate:
            i = over[0]
            where = name if single else f"{name}[{i}]"
            hint = "shorten it" if name == "query" else (f"shorten it, or send \"truncate\": true to embed its "
                                                         f"first {self.max_tokens} tokens")
            raise ApiError(413, f"{where} has {counts[i]} tokens, more than the limit of {self.max_tokens} "
                                f"(max_input_tokens): {hint}", param=name, code="input_too_long")
        return [min(n, self.max_tokens) for n in counts]

    def _require_reranker(self) -> CrossEncoder:
        if self.reranker is None:
            raise ApiError(404, "this server has no reranker: start it with --reranker MODEL (a cross-encoder)",
                           code="no_reranker")
        return self.reranker

    def _require_index(self) -> tuple[SearchIndex, IndexCalls]:
        if self.index is None or self._index_calls is None:
            raise ApiError(404, "this server has no index: start it with --index DIR (koembed index build makes "
                                "one)", code="no_index")
        return self.index, self._index_calls

    # ------------------------------------------------------------------ the API

    async def embed(self, request: EmbeddingRequest) -> bytes:
        """The JSON body of OpenAI's embeddings response (rendered off the event loop: a float list of many rows
        takes a while to write)."""
        ids = request.token_ids()
        single = isinstance(request.input, str) or (ids is not None and isinstance(request.input[0], int))
        texts: list[Any] = ids if ids is not None else [request.input] if single else list(request.input)
        self._check_count(len(texts), "input")
        if request.dimensions is not None and request.dimensions > self.dimension:
            raise ApiError(422, f"dimensions: {request.dimensions} is more than the model's {self.dimension} "
                                "dimensions", param="dimensions", code="invalid_value")
        truncate = self._truncate(request.truncate)
        if ids is None:
            counts = await self._checked_tokens(texts, "input", single, truncate)
        else:
            texts, counts = checked_token_ids(ids, self._vocabulary, self.max_tokens, single, truncate)
        rows = await self.batcher.embed(texts, sum(counts))
        return await asyncio.to_thread(render_embeddings, rows, request.dimensions, request.encoding_format,
                                       self.model_name, sum(counts))

    async def rerank(self, request: RerankRequest) -> dict[str, Any]:
        """TEI / Cohere / Jina rerank: results best first (ties by index), with usage."""
        cross_encoder = self._require_reranker()
        self._check_count(len(request.documents), "documents")
        truncate = self._truncate(request.truncate)
        assert self._count_rerank_tokens is not None  # made with the reranker
        counts = await self._token_counts(self._count_rerank_tokens, [request.query, *request.documents],
                                          "documents")
        pair_limit = cross_encoder.max_seq_length
        over = [i for i, n in enumerate(counts[1:]) if counts[0] + n > pair_limit]
        if over and not truncate:
            raise ApiError(413, f"query + documents[{over[0]}] have {counts[0] + counts[1 + over[0]]} tokens, more "
                                f"than the reranker's limit of {pair_limit}: shorten them, or send \"truncate\": "
                                "true to cut the pair", param="documents", code="input_too_long")
        tokens = sum(min(counts[0] + n, pair_limit) for n in counts[1:])
        results = await self.batcher.run(rerank_documents, cross_encoder, request.query, request.documents,
                                         request.top_n, self.options, tokens=tokens)
        if request.return_documents:
            for row in results:
                row["document"] = {"text": request.documents[row["index"]]}
        return {"model": self.reranker_name, "results": results,
                "usage": {"total_tokens": tokens, "prompt_tokens": tokens}}

    async def search(self, request: SearchRequest) -> dict[str, Any]:
        """Top-k passages of the index for one query, as :meth:`SearchIndex.search` ranks them (reranked by the
        cross-encoder when ``rerank``). The index is called on its own thread within ``index_timeout_s``
        (:class:`~koembed.server.index_calls.IndexCalls`; the time includes the query's turn on the model): a hung
        or failing backend is a 503 ``index_unavailable`` and never holds up the model thread. A full queue
        refuses the search at once, as it refuses embeddings (503 ``server_busy``)."""
        index, index_calls = self._require_index()
        cross_encoder = self._require_reranker() if request.rerank else None
        tokens = (await self._checked_tokens([request.query], "query", single=True, truncate=False))[0]
        depth = first_stage_depth(request.k, self.rerank_depth, cross_encoder is not None)
        self.batcher.admit(tokens)  # the query's embedding needs the model: not while the queue is full
        mode = request.mode or default_mode(index.manifest)  # none asked for: the one the index recorded
        try:
            hits, texts = await index_calls(_hits_and_texts, index, request.query, depth, mode)
            if cross_encoder is not None:
                hits = (await self.batcher.run(rerank_hits, cross_encoder, [request.query], [hits], texts.__getitem__,
                                               request.k, self.rerank_depth, self.options,
                                               tokens=tokens * len(hits)))[0]
        except SpecError as exc:  # a mode this index cannot serve (sparse without lexical weights, colbert on FAISS)
            raise ApiError(422, f"mode: {exc}", param="mode", code="invalid_value") from exc
        except KoembedError as exc:
            log.error("search failed: %s", exc)
            raise ApiError(500, f"search failed: {exc}", code="search_failed") from exc
        body: dict[str, Any] = {"query": request.query, "mode": mode, "k": request.k,
                                "rerank": request.rerank, "hits": hit_rows(hits, texts.__getitem__)}
        if request.highlight:
            body["morphemes"], body["hits"] = await self.batcher.run(highlight_rows, request.query, body["hits"],
                                                                     index.analyzer, tokens=tokens)
        return body

    def health(self) -> dict[str, Any]:
        """Liveness and configuration (what ``/health`` answers). ``status`` is ``degraded`` while the index is
        unavailable (``index.state``), else ``ok``; embeddings are served either way."""
        reranking = self.reranker is not None
        index = None
        if self.index is not None and self._index_calls is not None:
            index = self._index_calls.state(probe=functools.partial(_touch, self.index))
        return {"status": "degraded" if index and index["state"] != "ok" else "ok", "model": self.model_name,
                "dimension": self.dimension, "max_input_tokens": self.max_tokens,
                "index_loaded": self.index is not None,
                "index_passages": len(self.index) if self.index is not None else 0, "index": index,
                "search_mode": default_mode(self.index.manifest) if self.index is not None else None,
                "reranker": self.reranker_name if reranking else None,
                "rerank_depth": self.rerank_depth if reranking else None,
                "batching": self.limits.batching, "queue_size": self.batcher.queued_texts,
                "queued_requests": self.batcher.queued_requests, "queued_tokens": self.batcher.queued_tokens,
                "max_queue_tokens": self.limits.max_queue_tokens, **index_search_info(self.index)}


def _hits_and_texts(index: SearchIndex, query: str, depth: int, mode: str) -> tuple[list[Hit], dict[str, str]]:
    """One query's hits and their passage texts, both from the index (on the index thread: a Qdrant index may
    fetch a text over the network)."""
    hits = index.search([query], depth, mode)[0]
    return hits, {doc: index.text(doc) for doc, _ in hits}


def _touch(index: SearchIndex) -> None:
    """A cheap round trip to the index's backend (/health's probe): look up an id no index holds."""
    with contextlib.suppress(KeyError):
        index.text(PROBE_ID)


def _where(index: SearchIndex) -> str:
    url = getattr(index.manifest, "url", None)
    return f"the index {index.path}" + (f" (Qdrant at {url})" if url else "")


def render_embeddings(rows: np.ndarray, dimensions: int | None, encoding_format: str, model_name: str,
                      tokens: int) -> bytes:
    """OpenAI's embeddings response body: ``dimensions`` keeps the first d components, L2-renormalised;
    ``base64`` is little-endian float32 bytes."""
    import numpy as np

    rows = np.asarray(rows, dtype=np.float32)
    if dimensions is not None and dimensions < rows.shape[1]:
        rows = rows[:, :dimensions]
        rows = rows / np.maximum(np.linalg.norm(rows, axis=1, keepdims=True), 1e-12)
    if encoding_format == "base64":
        values = [base64.b64encode(row.astype("<f4").tobytes()).decode("ascii") for row in rows]
    else:
        values = rows.tolist()
    data = [{"object": "embedding", "index": i, "embedding": v} for i, v in enumerate(values)]
    return json.dumps({"object": "list", "data": data, "model": model_name,
                       "usage": {"prompt_tokens": tokens, "total_tokens": tokens}},
                      ensure_ascii=False, allow_nan=False).encode()
