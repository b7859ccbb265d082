"""HTTP API: OpenAI-compatible embeddings, index search, health and Prometheus metrics, with dynamic batching.

Endpoints (see :func:`create_app`):

- ``POST /v1/embeddings``: OpenAI's request and response shapes, so the official ``openai`` client (and
  anything built on it) works with ``base_url="http://HOST:PORT/v1"``. ``input`` is a string or a list of
  strings, or token ids of the served model's own tokenizer (a list of ints or of such lists, as TEI and
  infinity take them: :mod:`koembed.server.token_inputs`); ``model`` is optional and any value is accepted,
  the response always names the served model; ``encoding_format`` is ``float`` (default) or ``base64``
  (little-endian float32 bytes, as OpenAI sends; the ``openai`` client asks for base64 and decodes it itself
  unless you pass ``encoding_format``); ``dimensions`` keeps the first d components and
  L2-renormalises them (Matryoshka-style truncation); ``user`` is ignored. koembed extension: ``"truncate":
  true`` embeds the first ``max_input_tokens`` tokens of a longer input instead of refusing it.
  ``usage.prompt_tokens`` counts the model tokenizer's tokens *including* its special tokens (``<s>``,
  ``</s>``), i.e. exactly the tokens the model reads and that ``max_seq_length`` limits.
- ``POST /v1/rerank`` (with ``--reranker``): the request of TEI / Cohere / Jina, ``{"query", "documents",
  "top_n", "return_documents"}``; the response ``{"model", "results": [{"index", "relevance_score",
  "document": {"text"}}], "usage": {"total_tokens"}}``, best first (ties by index). Scores are the
  cross-encoder's (``CrossEncoder.predict``, sigmoid: 0..1). Same API key, body limit and ``max_inputs``
  (documents per request) as embeddings; a (query, document) pair over the reranker's max length is a 413 unless
  ``"truncate": true`` (or ``--truncate``). Each request is one predict call on the model thread, between
  embedding batches; its pairs are batched ``batch_size`` at a time.
- ``POST /search``: ``{"query", "k": 10, "mode", "rerank": false}`` on the index given at start-up (``mode``
  default: the one the index recorded, ``/health``'s ``search_mode``: bm25 unless built with a fusion); hits carry ``rank``, ``docid``, ``score`` and ``text``, as ``koembed search --json`` prints them. With
  ``"rerank": true`` the top ``rerank_depth`` hits are rescored by the reranker (:mod:`koembed.retrieval.rerank`). With
  ``"highlight": true`` each hit also carries ``matches`` (character spans of the query's Kiwi content morphemes
  in ``text``) and the response ``morphemes`` (the query's), for the playground.
- ``GET /``: the search playground page (:mod:`koembed.server.playground`), open without the API key (it holds
  no data; the key typed into it is sent to ``/search``).
- ``GET /health``: never needs the API key; model, dimension, index, reranker, queue.
- ``GET /metrics``: Prometheus text format from a registry owned by this app.

Dynamic batching: :mod:`koembed.server.batching`. The ASGI gate in front (API key, body size, metrics):
:mod:`koembed.server.gate`.

Errors are JSON in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400 malformed JSON
or (without an API key) a ``Host`` that is not a loopback name, 401 missing or wrong API key, 404 unknown
route or no index, 413 too large (body, number of inputs, input tokens), 422 invalid fields or text the
tokenizer cannot read (the message names the field), 503 with ``Retry-After`` when the queue is full or a
request timed out. A failing request never stops the server.
"""


# No ``from __future__ import annotations`` here: FastAPI reads the route handlers' annotations, which name
# classes imported inside create_app (FastAPI is imported there, not at module level, to keep `koembed --help`
# fast).

import asyncio
import base64
import contextlib
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Union

from koembed.errors import KoembedError, SpecError
from koembed.index import Index, default_mode, load_index
from koembed.models import EncodeOptions, Encoder, ModelSpec, encode, length_limit, load_model
from koembed.models.reranker import load_reranker
from koembed.models.token_ids import encode_inputs
from koembed.ranking import hit_rows
from koembed.retrieval.rerank import DEFAULT_RERANK_DEPTH, first_stage_depth, rerank_documents, rerank_hits
from koembed.server.batching import Batcher
from koembed.server.config import (
    API_KEY_ENV,
    DEFAULT_HOST,
    NO_LIMIT_MAX_TOKENS,
    ServerLimits,
    check_exposure,
    is_loopback,
)
from koembed.server.errors import ApiError, error_response, validation_response
from koembed.server.gate import Gate
from koembed.server.observability import ServerMetrics
from koembed.server.playground import add_playground, highlight_rows
from koembed.server.schemas import EmbeddingRequest, RerankRequest, SearchRequest
from koembed.server.token_inputs import checked_token_ids, token_vocabulary
from koembed.server.tokens import TokenCounter

if TYPE_CHECKING:
    import numpy as np
    from fastapi import FastAPI
    from sentence_transformers import CrossEncoder

log = logging.getLogger(__name__)


def create_app(model: Encoder, model_name: str, index: Optional[Index] = None, api_key: Optional[str] = None,
               limits: ServerLimits = ServerLimits(), allowed_hosts: Sequence[str] = (),
               reranker: Optional["CrossEncoder"] = None, reranker_name: Optional[str] = None,
               rerank_depth: int = DEFAULT_RERANK_DEPTH) -> "FastAPI":
    """The FastAPI app serving ``model`` (a loaded SentenceTransformer) as ``model_name``.

    ``index``: a :class:`koembed.index.Index` for ``/search``, loaded with this same model object
    (``load_index(dir, encoder=model)``) so that one model, on one thread, does all the encoding.
    ``api_key``: required as ``Authorization: Bearer KEY`` on every route but ``/health``; ``None`` reads
    :data:`API_KEY_ENV`; no key (or an empty one) leaves the API open to requests whose ``Host`` is a loopback
    name or one of ``allowed_hosts`` (``"*"``: any), see :class:`koembed.server.gate.Gate`. One app owns its
    model: do not serve the same model object from two apps at once. ``reranker`` (a loaded CrossEncoder, served
    as ``reranker_name``) enables ``/v1/rerank`` and ``/search``'s ``rerank``, which rescores ``rerank_depth``
    hits.
    """
    from fastapi import FastAPI, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import JSONResponse, Response
    from starlette.exceptions import HTTPException as StarletteHTTPException

    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV)
    api_key = api_key or None
    dimension = int(model.get_embedding_dimension())
    model_limit = length_limit(model)
    max_tokens = limits.max_input_tokens or model_limit or NO_LIMIT_MAX_TOKENS
    if model_limit is not None and max_tokens > model_limit:
        raise ValueError(f"max_input_tokens={max_tokens} exceeds the model's max_seq_length={model_limit}: the "
                         "model would silently truncate what the server accepted")
    count_tokens = TokenCounter(model)
    vocabulary = token_vocabulary(model)
    count_rerank_tokens = TokenCounter(reranker) if reranker is not None else None
    options = EncodeOptions(batch_size=limits.batch_size, show_progress=False)
    metrics = ServerMetrics()

    def encode_rows(inputs: list[Union[str, list[int]]]) -> "np.ndarray":
        return encode_inputs(model, inputs, options, max_seq_length=max_tokens)

    batcher = Batcher(encode_rows, metrics, limits.max_batch_tokens, limits.max_wait_ms, limits.batching,
                      limits.max_queue_tokens, limits.request_timeout_s)
    metrics.queue_limit.set(limits.max_queue_tokens)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await batcher.close()

    app = FastAPI(title="koembed", summary="Korean text embeddings and search", lifespan=lifespan)
    app.state.batcher, app.state.metrics, app.state.limits = batcher, metrics, limits

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, param=exc.param, code=exc.code, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {400: "invalid_json", 404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        return error_response(exc.status_code, str(exc.detail), code=codes.get(exc.status_code),
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        return error_response(500, "internal server error (see the server log)", code="internal_error")

    async def checked_tokens(texts: list[str], name: str, single: bool, truncate: bool) -> list[int]:
        """Token counts, capped at the limit when truncating; 413 naming the first over-long text otherwise.
        Text the tokenizer cannot read is the request's fault: 422 naming the field, never a 500."""
        try:
            counts = await asyncio.to_thread(count_tokens, texts)
        except Exception as exc:
            log.warning("the tokenizer refused %s: %r", name, exc)
            raise ApiError(422, f"{name}: the model's tokenizer cannot read this text ({type(exc).__name__}); "
                                "send valid Unicode text", param=name, code="invalid_value") from exc
        over = [i for i, n in enumerate(counts) if n > max_tokens]
        if over and not truncate:
            i = over[0]
            where = name if single else f"{name}[{i}]"
            hint = "shorten it" if name == "query" else (f"shorten it, or send \"truncate\": true to embed its "
                                                         f"first {max_tokens} tokens")
            raise ApiError(413, f"{where} has {counts[i]} tokens, more than the limit of {max_tokens} "
                                f"(max_input_tokens): {hint}", param=name, code="input_too_long")
        return [min(n, max_tokens) for n in counts]

    @app.post("/v1/embeddings")
    async def embeddings(request: EmbeddingRequest) -> Response:
        """OpenAI-compatible embeddings; see the module docstring for the fields."""
        ids = request.token_ids()
        single = isinstance(request.input, str) or ids is not None and isinstance(request.input[0], int)
        texts = ids if ids is not None else [request.input] if single else list(request.input)
        if len(texts) > limits.max_inputs:
            raise ApiError(413, f"input has {len(texts)} texts, more than the limit of {limits.max_inputs} per "
                                "request (max_inputs): split it into several requests", param="input",
                           code="too_many_inputs")
        if request.dimensions is not None and request.dimensions > dimension:
            raise ApiError(422, f"dimensions: {request.dimensions} is more than the model's {dimension} "
                                "dimensions", param="dimensions", code="invalid_value")
        truncate = limits.truncate if request.truncate is None else request.truncate
        if ids is None:
            counts = await checked_tokens(texts, "input", single, truncate)
        else:
            texts, counts = checked_token_ids(ids, vocabulary, max_tokens, single, truncate)
        rows = await batcher.embed(texts, sum(counts))
        body = await asyncio.to_thread(_render_embeddings, rows, request.dimensions, request.encoding_format,
                                       model_name, sum(counts))
        return Response(body, media_type="application/json")

    def require_reranker() -> "CrossEncoder":
        if reranker is None:
            raise ApiError(404, "this server has no reranker: start it with --reranker MODEL (a cross-encoder)",
                           code="no_reranker")
        return reranker

    @app.post("/v1/rerank")
    async def rerank(request: RerankRequest) -> JSONResponse:
        """TEI / Cohere / Jina rerank; see the module docstring for the fields."""
        cross_encoder = require_reranker()
        if len(request.documents) > limits.max_inputs:
            raise ApiError(413, f"documents has {len(request.documents)} texts, more than the limit of "
                                f"{limits.max_inputs} per request (max_inputs): split it into several requests",
                           param="documents", code="too_many_inputs")
        truncate = limits.truncate if request.truncate is None else request.truncate
        counts = await asyncio.to_thread(count_rerank_tokens, [request.query, *request.documents])
        pair_limit = cross_encoder.max_seq_length
        over = [i for i, n in enumerate(counts[1:]) if counts[0] + n > pair_limit]
        if over and not truncate:
            raise ApiError(413, f"query + documents[{over[0]}] have {counts[0] + counts[1 + over[0]]} tokens, more "
                                f"than the reranker's limit of {pair_limit}: shorten them, or send \"truncate\": "
                                "true to cut the pair", param="documents", code="input_too_long")
        tokens = sum(min(counts[0] + n, pair_limit) for n in counts[1:])
        results = await batcher.run(rerank_documents, cross_encoder, request.query, request.documents,
                                    request.top_n, options, tokens=tokens)
        if request.return_documents:
            for row in results:
                row["document"] = {"text": request.documents[row["index"]]}
        return JSONResponse({"model": reranker_name, "results": results,
                             "usage": {"total_tokens": tokens, "prompt_tokens": tokens}})

    @app.post("/search")
    async def search(request: SearchRequest) -> JSONResponse:
        """Top-k passages of the loaded index for one query, as :meth:`koembed.index.Index.search` ranks them
        (reranked by the cross-encoder when ``rerank``)."""
        if index is None:
            raise ApiError(404, "this server has no index: start it with --index DIR (koembed index build "
                                "makes one)", code="no_index")
        cross_encoder = require_reranker() if request.rerank else None
        tokens = await checked_tokens([request.query], "query", single=True, truncate=False)
        depth = first_stage_depth(request.k, rerank_depth, cross_encoder is not None)
        mode = request.mode or default_mode(index.manifest)
        try:
            hits = await batcher.run(index.search, [request.query], depth, mode, tokens=tokens[0])
            if cross_encoder is not None:
                hits = await batcher.run(rerank_hits, cross_encoder, [request.query], hits, index.text, request.k,
                                         rerank_depth, options, tokens=tokens[0] * len(hits[0]))
        except SpecError as exc:  # a mode this index cannot serve (sparse without lexical weights, colbert on FAISS)
            raise ApiError(422, f"mode: {exc}", param="mode", code="invalid_value") from exc
        except KoembedError as exc:
            log.error("search failed: %s", exc)
            raise ApiError(500, f"search failed: {exc}", code="search_failed") from exc
        body = {"query": request.query, "mode": mode, "k": request.k, "rerank": request.rerank,
                "hits": hit_rows(hits[0], index.text)}
        if request.highlight:
            body["morphemes"], body["hits"] = await batcher.run(highlight_rows, request.query, body["hits"],
                                                                tokens=tokens[0])
        return JSONResponse(body)

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and configuration; open without the API key (load balancers probe it)."""
        return {"status": "ok", "model": model_name, "dimension": dimension, "max_input_tokens": max_tokens,
                "index_loaded": index is not None, "index_passages": len(index) if index is not None else 0,
                "search_mode": default_mode(index.manifest) if index is not None else None,
                "reranker": reranker_name if reranker is not None else None,
                "rerank_depth": rerank_depth if reranker is not None else None,
                "batching": limits.batching, "queue_size": batcher.queued_texts,
                "queued_requests": batcher.queued_requests, "queued_tokens": batcher.queued_tokens,
                "max_queue_tokens": limits.max_queue_tokens}

    @app.get("/metrics")
    async def metrics_text() -> Response:
        """Prometheus text exposition of this app's registry."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    add_playground(app)
    app.add_middleware(Gate, metrics=metrics, api_key=api_key, max_body_bytes=limits.max_body_bytes,
                       allowed_hosts=frozenset(allowed_hosts))
    return app


def _render_embeddings(rows: "np.ndarray", dimensions: Optional[int], encoding_format: str, model_name: str,
                       tokens: int) -> bytes:
    """The response body (run off the event loop: a float list of many rows takes a while to write)."""
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


WARM_UP_TEXT = "전세 보증금 반환 절차"


def warm_up(model: Encoder, index: Optional[Index] = None) -> None:
    """Pay every first-use cost before the server binds (so before ``/health`` answers ok): the model's first
    encode, and with an index its lexical fields (built on first use), Kiwi (which loads its model on its first
    analysis, for BM25 queries and highlighting) and a dense search. The first real request then pays none."""
    if index is None:
        encode(model, [WARM_UP_TEXT], EncodeOptions(batch_size=1, show_progress=False))
        return
    for mode in ("bm25", "dense"):
        index.search([WARM_UP_TEXT], 1, mode=mode)


def serve(model: ModelSpec, index_dir: Union[str, Path, None] = None, *, host: str = DEFAULT_HOST,
          port: int = 8000, api_key: Optional[str] = None, limits: ServerLimits = ServerLimits(),
          log_level: str = "info", allowed_hosts: Sequence[str] = (), insecure_no_auth: bool = False,
          reranker: Optional[ModelSpec] = None, rerank_depth: int = DEFAULT_RERANK_DEPTH) -> None:
    """Load the model (and index), then serve them with uvicorn until interrupted.

    Loading errors (:class:`~koembed.errors.KoembedError`) are raised before anything binds, and the model,
    Kiwi and the index are warmed up (:func:`warm_up`) before it binds. The index is
    checked against the model (:func:`koembed.index.load_index`). Binds to 127.0.0.1 unless told otherwise;
    another interface without an API key (``api_key`` or :data:`API_KEY_ENV`) is a
    :class:`~koembed.errors.ServeError` unless ``insecure_no_auth``; a keyless server answers only requests
    addressed to a loopback name, ``host`` itself, or ``allowed_hosts``. ``reranker`` (a cross-encoder) enables
    ``/v1/rerank`` and reranked ``/search``.
    """
    import uvicorn

    api_key = api_key or os.environ.get(API_KEY_ENV) or None
    check_exposure(host, api_key, insecure_no_auth)
    if not is_loopback(host) and host not in ("0.0.0.0", "::"):
        allowed_hosts = (*allowed_hosts, host)
    encoder = load_model(model)
    index = load_index(index_dir, encoder=encoder) if index_dir is not None else None
    cross_encoder = load_reranker(reranker) if reranker is not None else None
    warm_up(encoder, index)
    app = create_app(encoder, model.name, index=index, api_key=api_key, limits=limits, allowed_hosts=allowed_hosts,
                     reranker=cross_encoder, reranker_name=reranker.name if reranker is not None else None,
                     rerank_depth=rerank_depth)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
