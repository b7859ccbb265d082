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
- ``GET /health``: never needs the API key; model, dimension, index, reranker, queue. Always 200 while the
  process serves (liveness: embeddings do not need the index); ``status`` is ``degraded`` and ``index.state``
  ``unavailable`` while the index backend hangs or fails (then ``/search`` answers 503 ``index_unavailable``
  within ``--index-timeout``: :mod:`koembed.server.index_calls`).
- ``GET /metrics``: Prometheus text format from a registry owned by this app.

Dynamic batching: :mod:`koembed.server.batching`. The ASGI gate in front (API key, body size, metrics):
:mod:`koembed.server.gate`.

Errors are JSON in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400 malformed JSON
or (without an API key) a ``Host`` that is not a loopback name, 401 missing or wrong API key, 404 unknown
route or no index, 413 too large (body, number of inputs, input tokens), 422 invalid fields or text the
tokenizer cannot read, or blank (the message names the field), 503 with ``Retry-After`` when the queue is full,
a request timed out, or the index backend is unavailable. A failing request never stops the server.
"""


# No ``from __future__ import annotations`` here: FastAPI reads the route handlers' annotations, which name
# classes imported inside create_app (FastAPI is imported there, not at module level, to keep `koembed --help`
# fast).

import contextlib
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

from koembed.index import SearchIndex, load_index
from koembed.models import EncodeOptions, Encoder, ModelSpec, encode, load_model
from koembed.models.reranker import load_reranker
from koembed.retrieval.rerank import DEFAULT_RERANK_DEPTH
from koembed.server.config import API_KEY_ENV, DEFAULT_HOST, ServerLimits, check_exposure, is_loopback
from koembed.server.errors import ApiError, error_response, validation_response
from koembed.server.gate import Gate
from koembed.server.playground import add_playground
from koembed.server.schemas import EmbeddingRequest, RerankRequest, SearchRequest
from koembed.server.service import Service

if TYPE_CHECKING:
    from fastapi import FastAPI
    from sentence_transformers import CrossEncoder

log = logging.getLogger(__name__)


def create_app(model: Encoder, model_name: str, index: SearchIndex | None = None, api_key: str | None = None,
               limits: ServerLimits = ServerLimits(), allowed_hosts: Sequence[str] = (),
               reranker: Optional["CrossEncoder"] = None, reranker_name: str | None = None,
               rerank_depth: int = DEFAULT_RERANK_DEPTH) -> "FastAPI":
    """The FastAPI app serving ``model`` (a loaded SentenceTransformer) as ``model_name``: thin routes over a
    :class:`koembed.server.service.Service` (``app.state.service``), which does the work.

    ``index``: a :class:`koembed.index.SearchIndex` (FAISS or Qdrant) for ``/search``, loaded with this same
    model object (``load_index(dir, encoder=model)``) so that one model, on one thread, does all the encoding.
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
    service = Service(model, model_name, index=index, limits=limits, reranker=reranker, reranker_name=reranker_name,
                      rerank_depth=rerank_depth)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await service.close()

    app = FastAPI(title="koembed", summary="Korean text embeddings and search", lifespan=lifespan)
    app.state.service, app.state.batcher, app.state.metrics = service, service.batcher, service.metrics
    app.state.limits = limits

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

    @app.post("/v1/embeddings")
    async def embeddings(request: EmbeddingRequest) -> Response:
        """OpenAI-compatible embeddings; see the module docstring for the fields."""
        return Response(await service.embed(request), media_type="application/json")

    @app.post("/v1/rerank")
    async def rerank(request: RerankRequest) -> JSONResponse:
        """TEI / Cohere / Jina rerank; see the module docstring for the fields."""
        return JSONResponse(await service.rerank(request))

    @app.post("/search")
    async def search(request: SearchRequest) -> JSONResponse:
        """Top-k passages of the loaded index for one query (reranked when ``rerank``)."""
        return JSONResponse(await service.search(request))

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and configuration; open without the API key (load balancers probe it)."""
        return service.health()

    @app.get("/metrics")
    async def metrics_text() -> Response:
        """Prometheus text exposition of this app's registry."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(service.metrics.render(), media_type=CONTENT_TYPE_LATEST)

    add_playground(app)
    app.add_middleware(Gate, metrics=service.metrics, api_key=api_key or None, max_body_bytes=limits.max_body_bytes,
                       allowed_hosts=frozenset(allowed_hosts))
    return app


WARM_UP_TEXT = "전세 보증금 반환 절차"


def warm_up(model: Encoder, index: SearchIndex | None = None) -> None:
    """Pay every first-use cost before the server binds (so before ``/health`` answers ok): the model's first
    encode, and with an index its lexical fields (built on first use), its analyzer (Kiwi loads its model on its
    first analysis, for BM25 queries and highlighting) and a dense search. The first real request then pays none."""
    if index is None:
        encode(model, [WARM_UP_TEXT], EncodeOptions(batch_size=1, show_progress=False))
        return
    for mode in ("bm25", "dense"):
        index.search([WARM_UP_TEXT], 1, mode=mode)


def serve(model: ModelSpec, index_dir: str | Path | None = None, *, host: str = DEFAULT_HOST,
          port: int = 8000, api_key: str | None = None, limits: ServerLimits = ServerLimits(),
          log_level: str = "info", allowed_hosts: Sequence[str] = (), insecure_no_auth: bool = False,
          reranker: ModelSpec | None = None, rerank_depth: int = DEFAULT_RERANK_DEPTH) -> None:
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
