"""Server settings: limits and batching, bind address checks, the routes and their key requirement."""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

API_KEY_ENV = "KOEMBED_API_KEY"
DEFAULT_HOST = "127.0.0.1"
MAX_SEARCH_K = 1000
ROUTES = ("/v1/embeddings", "/v1/rerank", "/search", "/health", "/metrics")  # metric labels; else "other"
OPEN_ROUTES = frozenset({"/health"})  # reachable without the API key


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
