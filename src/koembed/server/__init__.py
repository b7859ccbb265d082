"""The HTTP API: OpenAI-compatible embeddings, index search, health and metrics.

Rooms: :mod:`.app` (the FastAPI routes and ``serve``), :mod:`.service` (what the API does, without HTTP),
:mod:`.batching` (dynamic batching and the bounded queue, no FastAPI), :mod:`.schemas` (request bodies),
:mod:`.errors` (OpenAI-shaped error responses), :mod:`.gate` (Host check, API key, body size and request
metrics, in front of the app), :mod:`.tokens` (token counting), :mod:`.observability` (Prometheus metrics),
:mod:`.config` (limits, routes, bind and Host checks). The app and its pydantic schemas load on first use of
``create_app`` or ``serve`` (:mod:`koembed._lazy`).
"""

from typing import TYPE_CHECKING

from koembed._lazy import lazy_exports
from koembed.server.config import API_KEY_ENV, DEFAULT_HOST, ServerLimits, check_exposure, is_loopback

__all__ = ["API_KEY_ENV", "DEFAULT_HOST", "ServerLimits", "check_exposure", "create_app", "is_loopback", "serve"]
__getattr__, __dir__ = lazy_exports(__name__, {"create_app": "koembed.server.app", "serve": "koembed.server.app"})

if TYPE_CHECKING:
    from koembed.server.app import create_app, serve
