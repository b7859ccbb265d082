"""HTTP API: OpenAI-compatible embeddings, index search, health and Prometheus metrics, with dynamic batching.

Endpoints (see :func:`create_app`):

- ``POST /v1/embeddings``: OpenAI's request and response shapes, so the official ``openai`` client (and
  anything built on it) works with ``base_url="http://HOST:PORT/v1"``. ``input`` is a string or a list of
  strings (token-id arrays are refused with 422: koembed's tokenizer is not OpenAI's); ``model`` is optional
  and any value is accepted, the response always names the served model; ``encoding_format`` is ``float``
  (default) or ``base64`` (little-endian float32 bytes, as OpenAI sends; the ``openai`` client asks for base64
  and decodes it itself unless you pass ``encoding_format``); ``dimensions`` keeps the first d components and
  L2-renormalises them (Matryoshka-style truncation); ``user`` is ignored. koembed extension: ``"truncate":
  true`` embeds the first ``max_input_tokens`` tokens of a longer input instead of refusing it.
  ``usage.prompt_tokens`` counts the model tokenizer's tokens *including* its special tokens (``<s>``,
  ``</s>``), i.e. exactly the tokens the model reads and that ``max_seq_length`` limits.
- ``POST /search``: ``{"query", "k": 10, "mode": "hybrid"}`` on the index given at start-up; hits carry
  ``rank``, ``docid``, ``score`` and ``text``, as ``koembed search --json`` prints them.
- ``GET /health``: never needs the API key; model, dimension, index, queue.
- ``GET /metrics``: Prometheus text format from a registry owned by this app.

Dynamic batching: requests put their texts on one queue; a worker takes requests in arrival order until
their tokens reach ``max_batch_tokens`` or the oldest has waited ``max_wait_ms``, runs one :func:`encode`
call on a worker thread (the event loop keeps serving), and hands each request back its own rows. A request
larger than the budget is encoded alone, never split. Every use of the model (embedding batches and the
index's query embedding) runs on that one thread, because the model is not safe to call concurrently
(:func:`encode` changes ``max_seq_length`` for the duration of a call) and two parallel forward passes would
only compete for the same cores.

Errors are JSON in OpenAI's shape, ``{"error": {"message", "type", "param", "code"}}``: 400 malformed JSON,
401 missing or wrong API key, 404 unknown route or no index, 413 too large (body, number of inputs, input
tokens), 422 invalid fields (the message names the field). A failing request never stops the server.
"""

from __future__ import annotations

import asyncio
import base64
import collections
import contextlib
import copy
import hmac
import ipaddress
import json
import logging
import os
import threading
import time
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from koembed.errors import KoembedError

log = logging.getLogger(__name__)

API_KEY_ENV = "KOEMBED_API_KEY"
DEFAULT_HOST = "127.0.0.1"
MAX_SEARCH_K = 1000
ROUTES = ("/v1/embeddings", "/search", "/health", "/metrics")  # metric labels; anything else is "other"
OPEN_ROUTES = frozenset({"/health"})  # reachable without the API key
DRAIN_LIMIT = 64 << 20  # bytes of a refused body read (and dropped) so the client sees the error, not a reset


@dataclass(frozen=True)
class ServerLimits:
    """Request limits and batching settings of one app.

    ``max_input_tokens`` (default: the model's ``max_seq_length``, which it may not exceed) applies to every
    text the server embeds; a longer embedding input is refused with 413 unless ``truncate`` (server-wide)
    or the request's ``"truncate": true`` asks for its first ``max_input_tokens`` tokens instead. Search
    queries are never truncated. ``max_batch_tokens`` and ``max_wait_ms`` bound one dynamic batch;
    ``batching=False`` encodes each request on its own (one request, one :func:`encode` call), for
    comparison. ``batch_size`` is :func:`encode`'s forward batch size within a batch.
    """

    max_inputs: int = 256
    max_input_tokens: int | None = None
    max_batch_tokens: int = 8192
    max_wait_ms: float = 5.0
    max_body_bytes: int = 4 * 1024 * 1024
    truncate: bool = False
    batching: bool = True
    batch_size: int = 32

    def __post_init__(self) -> None:
        for name in ("max_inputs", "max_batch_tokens", "max_body_bytes", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_input_tokens is not None and self.max_input_tokens < 1:
            raise ValueError(f"max_input_tokens must be at least 1, got {self.max_input_tokens}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


# --------------------------------------------------------------------------- errors


class ApiError(Exception):
    """An error response in OpenAI's shape; raised by endpoints, rendered by the app's exception handler."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None):
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


def error_response(status: int, message: str, *, param: str | None = None, code: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    """``{"error": {"message", "type", "param", "code"}}`` with OpenAI's types for 4xx and 5xx statuses."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    return JSONResponse({"error": {"message": message, "type": kind, "param": param, "code": code}},
                        status_code=status, headers=headers)


def _field_path(loc: Sequence[Any]) -> str:
    """("body", "input", 2) -> "input[2]"."""
    path = ""
    for part in loc[1:] if loc and loc[0] == "body" else loc:
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
    return path


def _validation_response(exc: RequestValidationError) -> JSONResponse:
    errors = list(exc.errors())
    first = errors[0] if errors else {"loc": (), "msg": "invalid request", "type": ""}
    if first.get("type") == "json_invalid":
        detail = (first.get("ctx") or {}).get("error", "invalid JSON")
        return error_response(400, f"the request body is not valid JSON ({detail}, at character "
                                   f"{first['loc'][-1]})", code="invalid_json")
    parts = []
    for err in errors[:3]:
        where = _field_path(err["loc"])
        msg = str(err["msg"]).removeprefix("Value error, ")
        if err.get("type") == "extra_forbidden":
            msg = "unknown field"
        if not where:  # the body itself: missing, or not a JSON object
            msg = f"the request body must be a JSON object sent as application/json ({msg})"
        parts.append(f"{where}: {msg}" if where and not msg.startswith(f"{where}[") else msg)
    more = f" (and {len(errors) - 3} more errors)" if len(errors) > 3 else ""
    loc = [p for p in first["loc"] if p != "body"]
    param = str(loc[0]) if loc else None
    return error_response(422, "; ".join(parts) + more, param=param, code="invalid_value")


# --------------------------------------------------------------------------- request models


class EmbeddingRequest(BaseModel):
    """OpenAI's embeddings request. Unknown fields are refused, as OpenAI refuses them (a typo is not silent)."""

    model_config = ConfigDict(extra="forbid")

    input: str | list[str]
    model: StrictStr | None = None
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: Annotated[StrictInt, Field(ge=1)] | None = None
    user: StrictStr | None = None
    truncate: StrictBool | None = None  # koembed extension; None = the server's setting

    @field_validator("input", mode="before")
    @classmethod
    def _texts_only(cls, value: Any) -> Any:
        """Clear messages for the usual mistakes instead of pydantic's per-union-member errors.

        Wrong types raise ValueError too: pydantic turns ValueError, not TypeError, into a validation error.
        """
        if isinstance(value, str):
            if not value:
                raise ValueError("must not be an empty string")
            return value
        if not isinstance(value, list):
            raise ValueError(f"must be a string or a list of strings, not {_json_type(value)}")
        if not value:
            raise ValueError("must not be an empty list")
        if all(isinstance(item, list) or isinstance(item, int) and not isinstance(item, bool) for item in value):
            raise ValueError("token-id arrays are not supported (koembed uses its model's own tokenizer): "
                             "send the texts as strings")
        for i, item in enumerate(value):
            if not isinstance(item, str):
                raise ValueError(f"input[{i}] must be a string, not {_json_type(item)}")
            if not item:
                raise ValueError(f"input[{i}] must not be an empty string")
        return value


class SearchRequest(BaseModel):
    """A query on the loaded index; ``mode`` as :meth:`koembed.index.Index.search` takes it."""

    model_config = ConfigDict(extra="forbid")

    query: Annotated[StrictStr, Field(min_length=1)]
    k: Annotated[StrictInt, Field(ge=1, le=MAX_SEARCH_K)] = 10
    mode: Literal["dense", "bm25", "hybrid"] = "hybrid"


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", dict: "an object", list: "a list",
             str: "a string", type(None): "null"}
    return names.get(type(value), type(value).__name__)


# --------------------------------------------------------------------------- tokens, metrics, batching


class TokenCounter:
    """Counts the model tokenizer's tokens per text, special tokens included, without truncation.

    It works on its own copy of the tokenizer: the model's tokenizer is reconfigured (truncation length)
    by every :func:`encode` call on the encoding thread, and Hugging Face fast tokenizers raise "Already
    borrowed" when one is reconfigured and used from two threads at once.
    """

    def __init__(self, model: Any):
        tokenizer = getattr(model, "tokenizer", None)
        if tokenizer is None:
            raise ValueError("the model has no tokenizer to count tokens with")
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self._lock = threading.Lock()
        if backend is not None:  # a fast tokenizer: a Rust copy, safe to share between threads read-only
            from tokenizers import Tokenizer

            self._fast = Tokenizer.from_str(backend.to_str())
            self._fast.no_truncation()
            self._fast.no_padding()
            self._slow = None
        else:
            self._fast = None
            self._slow = copy.deepcopy(tokenizer)

    def __call__(self, texts: Sequence[str]) -> list[int]:
        if self._fast is not None:  # encode_batch_fast skips the character offsets we do not need
            batch = getattr(self._fast, "encode_batch_fast", self._fast.encode_batch)
            return [len(e.ids) for e in batch(list(texts), add_special_tokens=True)]
        with self._lock:
            ids = self._slow(list(texts), add_special_tokens=True, truncation=False, padding=False,
                             verbose=False)["input_ids"]
        return [len(i) for i in ids]


class ServerMetrics:
    """The app's Prometheus metrics, in a registry of its own (two apps in one process do not collide)."""

    def __init__(self) -> None:
        from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

        self.registry = CollectorRegistry()
        self.requests = Counter("koembed_requests", "HTTP requests by route and status code",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("koembed_request_duration_seconds", "HTTP request latency by route", ["route"],
                                 buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
                                          30), registry=self.registry)
        self.batch_size = Histogram("koembed_embedding_batch_size", "Texts per encode call",
                                    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048),
                                    registry=self.registry)
        self.batch_tokens = Histogram("koembed_embedding_batch_tokens", "Tokens per encode call",
                                      buckets=(16, 64, 256, 1024, 2048, 4096, 8192, 16384, 65536),
                                      registry=self.registry)
        self.queue_depth = Gauge("koembed_queue_depth", "Texts waiting to be encoded", registry=self.registry)

    def render(self) -> bytes:
        from prometheus_client import generate_latest

        return generate_latest(self.registry)


@dataclass
class _Job:
    texts: list[str]
    tokens: int
    future: asyncio.Future
    enqueued: float


@dataclass
class Batcher:
    """Dynamic batching of embedding requests onto one encoding thread (see the module docstring).

    ``encode_rows(texts) -> (len(texts), dim) array`` runs on the thread; :meth:`embed` returns the rows
    of one request, in its order. :meth:`run` runs any other model call (index search) on the same thread.
    The worker task and thread start on first use in the running event loop and stop with :meth:`close`.
    """

    encode_rows: Callable[[list[str]], np.ndarray]
    metrics: ServerMetrics
    max_batch_tokens: int = 8192
    max_wait_ms: float = 5.0
    batching: bool = True
    _jobs: collections.deque = field(default_factory=collections.deque, init=False)
    _texts: int = field(default=0, init=False)
    _tokens: int = field(default=0, init=False)
    _wakeup: asyncio.Event | None = field(default=None, init=False)
    _worker: asyncio.Task | None = field(default=None, init=False)
    _executor: ThreadPoolExecutor | None = field(default=None, init=False)

    @property
    def queued_texts(self) -> int:
        """Texts waiting for a batch (not counting the batch being encoded)."""
        return self._texts

    @property
    def queued_requests(self) -> int:
        """Requests waiting for a batch."""
        return len(self._jobs)

    async def embed(self, texts: list[str], tokens: int) -> np.ndarray:
        """Queue one request's texts (``tokens`` in all) and wait for their rows."""
        self._start()
        job = _Job(texts, tokens, asyncio.get_running_loop().create_future(), time.monotonic())
        self._jobs.append(job)
        self._account(len(texts), tokens)
        self._wakeup.set()
        return await job.future

    async def run(self, fn: Callable[..., Any], *args: Any) -> Any:
        """Run ``fn(*args)`` on the encoding thread, between batches."""
        self._start()
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def close(self) -> None:
        """Stop the worker; requests still queued get a 503."""
        if self._worker is not None:
            self._worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._worker
            self._worker = None
        while self._jobs:
            job = self._jobs.popleft()
            if not job.future.done():
                job.future.set_exception(ApiError(503, "the server is shutting down", code="shutting_down"))
        self._texts = self._tokens = 0
        self.metrics.queue_depth.set(0)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    def _start(self) -> None:
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="koembed-encode")
        if self._worker is None or self._worker.done():
            self._wakeup = asyncio.Event()  # bound to the running loop
            self._worker = asyncio.get_running_loop().create_task(self._work(), name="koembed-batcher")

    def _account(self, texts: int, tokens: int) -> None:
        self._texts += texts
        self._tokens += tokens
        self.metrics.queue_depth.set(self._texts)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._jobs:
                self._wakeup.clear()
                await self._wakeup.wait()
            if self.batching:  # wait for more work until the budget is full or the oldest job's wait is over
                deadline = self._jobs[0].enqueued + self.max_wait_ms / 1000
                while self._tokens < self.max_batch_tokens and (left := deadline - time.monotonic()) > 0:
                    self._wakeup.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wakeup.wait(), left)
            batch = self._take()
            if not batch:
                continue
            texts = [t for job in batch for t in job.texts]
            self.metrics.batch_size.observe(len(texts))
            self.metrics.batch_tokens.observe(sum(job.tokens for job in batch))
            try:
                rows = await loop.run_in_executor(self._executor, self.encode_rows, texts)
                if len(rows) != len(texts):  # never hand a request someone else's rows
                    raise RuntimeError(f"encode returned {len(rows)} rows for {len(texts)} texts")
            except asyncio.CancelledError:
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(ApiError(503, "the server is shutting down", code="shutting_down"))
                raise
            except Exception as exc:  # the requests fail, the worker goes on
                log.exception("encoding a batch of %d texts failed", len(texts))
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            start = 0
            for job in batch:
                if not job.future.done():  # a cancelled request's rows are dropped
                    job.future.set_result(rows[start: start + len(job.texts)])
                start += len(job.texts)

    def _take(self) -> list[_Job]:
        """Jobs from the front of the queue: one without batching, else as many as fit the token budget."""
        batch: list[_Job] = []
        tokens = 0
        while self._jobs:
            job = self._jobs[0]
            if batch and (not self.batching or tokens + job.tokens > self.max_batch_tokens):
                break
            self._jobs.popleft()
            self._account(-len(job.texts), -job.tokens)
            if job.future.done():  # cancelled while queued
                continue
            batch.append(job)
            tokens += job.tokens
        return batch


# --------------------------------------------------------------------------- ASGI gate: auth, body limit, metrics


class _Gate:
    """Outermost layer: request metrics, API key, body size. Runs before FastAPI reads or parses anything.

    The body is read here (up to ``max_body_bytes``) and replayed to the app; a larger body, or a request
    without the key, is drained (up to :data:`DRAIN_LIMIT`) before the error is sent, so the client reads
    the error instead of a connection reset.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: ServerMetrics, api_key: str | None,
                 max_body_bytes: int):
        self.app, self.metrics, self.api_key, self.max_body_bytes = app, metrics, api_key, max_body_bytes

    async def __call__(self, scope: dict, receive: Callable, send: Callable) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        route = scope["path"] if scope["path"] in ROUTES else "other"
        status = 500  # if the app raises before it answers
        started = time.perf_counter()

        async def send_status(message: dict) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self._handle(scope, receive, send_status)
        finally:
            self.metrics.requests.labels(route, str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)

    async def _handle(self, scope: dict, receive: Callable, send: Callable) -> None:
        if self.api_key is not None and scope["path"] not in OPEN_ROUTES and not self._authorized(scope):
            if await self._drain(receive):
                await error_response(401, "missing or invalid API key: send the header 'Authorization: Bearer "
                                          "KEY'", code="invalid_api_key",
                                     headers={"WWW-Authenticate": "Bearer"})(scope, receive, send)
            return
        declared = _content_length(scope)
        chunks: list[bytes] = []
        size, more = 0, True
        if declared is None or declared <= self.max_body_bytes:
            while more and size <= self.max_body_bytes:
                message = await receive()
                if message["type"] == "http.disconnect":
                    return
                chunks.append(message.get("body", b""))
                size += len(chunks[-1])
                more = message.get("more_body", False)
        if (declared is not None and declared > self.max_body_bytes) or size > self.max_body_bytes:
            if not more or await self._drain(receive, size):
                await error_response(413, f"the request body is larger than {self.max_body_bytes} bytes; send "
                                          "fewer or shorter inputs per request", code="body_too_large",
                                     headers={"Connection": "close"})(scope, receive, send)
            return
        body, replayed = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)

    def _authorized(self, scope: dict) -> bool:
        for name, value in scope.get("headers", []):
            if name == b"authorization":
                scheme, _, token = value.decode("latin-1").partition(" ")
                return scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(),
                                                                          self.api_key.encode())
        return False

    @staticmethod
    async def _drain(receive: Callable, seen: int = 0) -> bool:
        """Read and drop the rest of the body (the app has read none of it); False if the client went away."""
        more = True
        while more and seen <= DRAIN_LIMIT:
            message = await receive()
            if message["type"] == "http.disconnect":
                return False
            seen += len(message.get("body", b""))
            more = message.get("more_body", False)
        return True


def _content_length(scope: dict) -> int | None:
    for name, value in scope.get("headers", []):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


# --------------------------------------------------------------------------- the app


def create_app(model: Any, model_name: str, index: Any = None, api_key: str | None = None,
               limits: ServerLimits = ServerLimits()) -> FastAPI:
    """The FastAPI app serving ``model`` (a loaded SentenceTransformer) as ``model_name``.

    ``index``: a :class:`koembed.index.Index` for ``/search``, loaded with this same model object
    (``load_index(dir, model=model)``) so that one model, on one thread, does all the encoding.
    ``api_key``: required as ``Authorization: Bearer KEY`` on every route but ``/health``; ``None`` reads
    :data:`API_KEY_ENV`; no key (or an empty one) leaves the API open. One app owns its model: do not
    serve the same model object from two apps at once.
    """
    from koembed.models import encode

    if api_key is None:
        api_key = os.environ.get(API_KEY_ENV) or None
    dimension = int(model.get_embedding_dimension())
    model_limit = model.max_seq_length
    max_tokens = limits.max_input_tokens or model_limit
    if max_tokens is None:
        raise ValueError("the model has no max_seq_length: set ServerLimits.max_input_tokens")
    if model_limit is not None and max_tokens > model_limit:
        raise ValueError(f"max_input_tokens={max_tokens} exceeds the model's max_seq_length={model_limit}: the "
                         "model would silently truncate what the server accepted")
    count_tokens = TokenCounter(model)
    metrics = ServerMetrics()

    def encode_rows(texts: list[str]) -> np.ndarray:
        return encode(model, texts, batch_size=limits.batch_size, show_progress=False, max_seq_length=max_tokens)

    batcher = Batcher(encode_rows, metrics, limits.max_batch_tokens, limits.max_wait_ms, limits.batching)

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI):
        yield
        await batcher.close()

    app = FastAPI(title="koembed", summary="Korean text embeddings and search", lifespan=lifespan)
    app.state.batcher, app.state.metrics, app.state.limits = batcher, metrics, limits

    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, param=exc.param, code=exc.code)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        return _validation_response(exc)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        codes = {404: "not_found", 405: "method_not_allowed", 413: "body_too_large"}
        return error_response(exc.status_code, str(exc.detail), code=codes.get(exc.status_code),
                              headers=getattr(exc, "headers", None))

    @app.exception_handler(Exception)
    async def _unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.error("unexpected error", exc_info=exc)
        return error_response(500, "internal server error (see the server log)", code="internal_error")

    async def checked_tokens(texts: list[str], name: str, single: bool, truncate: bool) -> list[int]:
        """Token counts, capped at the limit when truncating; 413 naming the first over-long text otherwise."""
        counts = await asyncio.to_thread(count_tokens, texts)
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
        single = isinstance(request.input, str)
        texts = [request.input] if single else list(request.input)
        if len(texts) > limits.max_inputs:
            raise ApiError(413, f"input has {len(texts)} texts, more than the limit of {limits.max_inputs} per "
                                "request (max_inputs): split it into several requests", param="input",
                           code="too_many_inputs")
        if request.dimensions is not None and request.dimensions > dimension:
            raise ApiError(422, f"dimensions: {request.dimensions} is more than the model's {dimension} "
                                "dimensions", param="dimensions", code="invalid_value")
        truncate = limits.truncate if request.truncate is None else request.truncate
        counts = await checked_tokens(texts, "input", single, truncate)
        rows = await batcher.embed(texts, sum(counts))
        body = await asyncio.to_thread(_render_embeddings, rows, request.dimensions, request.encoding_format,
                                       model_name, sum(counts))
        return Response(body, media_type="application/json")

    @app.post("/search")
    async def search(request: SearchRequest) -> JSONResponse:
        """Top-k passages of the loaded index for one query, as :meth:`koembed.index.Index.search` ranks them."""
        if index is None:
            raise ApiError(404, "this server has no index: start it with --index DIR (koembed index build "
                                "makes one)", code="no_index")
        await checked_tokens([request.query], "query", single=True, truncate=False)
        try:
            hits = (await batcher.run(index.search, [request.query], request.k, request.mode))[0]
        except KoembedError as exc:
            log.error("search failed: %s", exc)
            raise ApiError(500, f"search failed: {exc}", code="search_failed") from exc
        return JSONResponse({"query": request.query, "mode": request.mode, "k": request.k,
                             "hits": [{"rank": r, "docid": doc, "score": score, "text": index.text(doc)}
                                      for r, (doc, score) in enumerate(hits, start=1)]})

    @app.get("/health")
    async def health() -> dict[str, Any]:
        """Liveness and configuration; open without the API key (load balancers probe it)."""
        return {"status": "ok", "model": model_name, "dimension": dimension, "max_input_tokens": max_tokens,
                "index_loaded": index is not None, "index_passages": len(index) if index is not None else 0,
                "batching": limits.batching, "queue_size": batcher.queued_texts,
                "queued_requests": batcher.queued_requests}

    @app.get("/metrics")
    async def metrics_text() -> Response:
        """Prometheus text exposition of this app's registry."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    app.add_middleware(_Gate, metrics=metrics, api_key=api_key, max_body_bytes=limits.max_body_bytes)
    return app


def _render_embeddings(rows: np.ndarray, dimensions: int | None, encoding_format: str, model_name: str,
                       tokens: int) -> bytes:
    """The response body (run off the event loop: a float list of many rows takes a while to write)."""
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


def serve(model_name: str, index_dir: str | Path | None = None, *, host: str = DEFAULT_HOST, port: int = 8000,
          api_key: str | None = None, limits: ServerLimits = ServerLimits(), device: str | None = None,
          log_level: str = "info", precision: str = "fp32", backend: str = "torch") -> None:
    """Load the model (and index), then serve them with uvicorn until interrupted.

    Loading errors (:class:`~koembed.errors.KoembedError`) are raised before anything binds. The index is
    checked against the model (:func:`koembed.index.load_index`). Binds to 127.0.0.1 unless told otherwise;
    callers exposing another interface should set an API key.
    """
    import uvicorn

    from koembed.index import load_index
    from koembed.models import load_model

    model = load_model(model_name, device=device, precision=precision, backend=backend)
    index = load_index(index_dir, model=model) if index_dir is not None else None
    app = create_app(model, model_name, index=index, api_key=api_key, limits=limits)
    uvicorn.run(app, host=host, port=port, log_level=log_level)
