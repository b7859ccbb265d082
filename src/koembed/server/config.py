"""Server settings: limits and batching, bind address checks, the routes and their key requirement."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from koembed.errors import ServeError

API_KEY_ENV = "KOEMBED_API_KEY"
DEFAULT_HOST = "127.0.0.1"
MAX_SEARCH_K = 1000
# The search playground's static files (koembed.server.playground): route -> file in koembed/server/static.
PLAYGROUND_FILES = {"/": "playground.html", "/playground.js": "playground.js", "/playground.css": "playground.css"}
ROUTES = ("/v1/embeddings", "/v1/rerank", "/search", "/health", "/metrics", *PLAYGROUND_FILES)  # metric labels
# Reachable without the API key (still only under an allowed Host): health, and the playground's files, which hold
# no data (a browser cannot send a key when it opens a page; the page sends the key typed into it to /search).
OPEN_ROUTES = frozenset({"/health", *PLAYGROUND_FILES})
NO_LIMIT_MAX_TOKENS = 8192  # max_input_tokens for a model that reads any length (a static model): bge-m3's limit


@dataclass(frozen=True)
class ServerLimits:
    """Request limits and batching settings of one app.

    ``max_input_tokens`` (default: the model's ``max_seq_length``, which it may not exceed, or
    :data:`NO_LIMIT_MAX_TOKENS` for a model without one, such as a static model) applies to every
    text the server embeds; a longer embedding input is refused with 413 unless ``truncate`` (server-wide)
    or the request's ``"truncate": true`` asks for its first ``max_input_tokens`` tokens instead. Search
    queries are never truncated. ``max_batch_tokens`` and ``max_wait_ms`` bound one dynamic batch;
    ``batching=False`` encodes each request on its own (one request, one :func:`encode` call), for
    comparison. ``batch_size`` is :func:`encode`'s forward batch size within a batch. ``max_queue_tokens``
    bounds the tokens waiting to be encoded (more is a 503 with ``Retry-After``) and ``request_timeout_s`` the
    time a request waits for the model (then a 503): together they bound memory and latency under overload.
    ``index_timeout_s`` bounds each call to the index (a search, on the index's own thread): an index backend
    that does not answer in time is a 503 ``index_unavailable`` (:mod:`koembed.server.index_calls`).
    """

    max_inputs: int = 256
    max_input_tokens: int | None = None
    max_batch_tokens: int = 8192
    max_wait_ms: float = 5.0
    max_body_bytes: int = 4 * 1024 * 1024
    truncate: bool = False
    batching: bool = True
    batch_size: int = 32
    max_queue_tokens: int = 65536
    request_timeout_s: float = 60.0
    index_timeout_s: float = 30.0

    def __post_init__(self) -> None:
        for name in ("max_inputs", "max_batch_tokens", "max_body_bytes", "batch_size", "max_queue_tokens"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.max_input_tokens is not None and self.max_input_tokens < 1:
            raise ValueError(f"max_input_tokens must be at least 1, got {self.max_input_tokens}")
        if self.max_wait_ms < 0:
            raise ValueError(f"max_wait_ms must be >= 0, got {self.max_wait_ms}")
        for name in ("request_timeout_s", "index_timeout_s"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")


def is_loopback(host: str) -> bool:
    """True when ``host`` only accepts connections from this machine (127.0.0.0/8, ::1, localhost)."""
    host = host.lower().rstrip(".")
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def host_name(header: str) -> str:
    """The name in an HTTP ``Host`` header, without port or IPv6 brackets: ``[::1]:8000`` -> ``::1``."""
    header = header.strip().lower()
    if header.startswith("["):
        return header[1:].partition("]")[0]
    return header.rpartition(":")[0] if header.count(":") == 1 else header


def check_exposure(host: str, api_key: str | None, insecure_no_auth: bool) -> None:
    """Refuse to bind a non-loopback ``host`` without an API key unless ``insecure_no_auth`` says it is meant."""
    if not is_loopback(host) and not api_key and not insecure_no_auth:
        raise ServeError(f"binding to {host} without an API key would let any machine that reaches it use the API: "
                         f"set {API_KEY_ENV} (or --api-key), bind 127.0.0.1, or pass --insecure-no-auth")
