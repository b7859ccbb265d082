"""The outermost ASGI layer: request metrics, Host check, API key, body size; runs before FastAPI reads anything.

Why our own and not Starlette's TrustedHostMiddleware: the Host check applies only to a server without an API
key, accepts any loopback address (127.0.0.0/8, ::1), and answers in the API's JSON error shape.
"""

from __future__ import annotations

import hmac
import time
from collections.abc import Awaitable, Callable

from koembed.server.config import OPEN_ROUTES, ROUTES, host_name, is_loopback
from koembed.server.errors import error_response
from koembed.server.observability import ServerMetrics

DRAIN_LIMIT = 64 << 20  # bytes of a refused body read (and dropped) so the client sees the error, not a reset


class Gate:
    """Outermost layer: request metrics, Host check, API key, body size. Runs before FastAPI reads anything.

    Without an API key only requests whose ``Host`` is a loopback name (``localhost``, 127.0.0.0/8, ``::1``)
    or one of ``allowed_hosts`` (``*``: any) are served: a web page cannot then reach the API through DNS
    rebinding (a name of its own that resolves to 127.0.0.1). With a key the key is the guard.
    The body is read here (up to ``max_body_bytes``) and replayed to the app; a larger body, or a request
    without the key, is drained (up to :data:`DRAIN_LIMIT`) before the error is sent, so the client reads
    the error instead of a connection reset.
    """

    def __init__(self, app: Callable[..., Awaitable[None]], metrics: ServerMetrics, api_key: str | None,
                 max_body_bytes: int, allowed_hosts: frozenset[str] = frozenset()):
        self.app, self.metrics, self.api_key, self.max_body_bytes = app, metrics, api_key, max_body_bytes
        self.allowed_hosts = frozenset(h.lower() for h in allowed_hosts)

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
        if not self._host_allowed(scope):
            if await self._drain(receive):
                await error_response(400, "this server has no API key and answers only requests addressed to "
                                          "a loopback name (localhost, 127.0.0.1, [::1]) or to --allowed-host",
                                     code="host_not_allowed")(scope, receive, send)
            return
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

    def _host_allowed(self, scope: dict) -> bool:
        if self.api_key is not None or "*" in self.allowed_hosts:
            return True
        for name, value in scope.get("headers", []):
            if name == b"host":
                host = host_name(value.decode("latin-1"))
                return is_loopback(host) or host in self.allowed_hosts
        return False

    def _authorized(self, scope: dict) -> bool:
        assert self.api_key is not None  # called only when the server has a key
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
