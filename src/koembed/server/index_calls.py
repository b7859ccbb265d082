"""Index calls off the model thread, each within ``index_timeout_s``, and the index's state for ``/health``.

An index may live on another machine (a Qdrant server), which can hang or go away. Its calls therefore run on a
thread of their own, never on the model thread that embedding requests wait for: a hung backend costs the
searches, not the embeddings. The query's embedding inside a search still takes its turn on the model
(:func:`koembed.models.embed.model_lock`), between embedding batches. One index thread (calls in arrival order,
as the store's clients and Kiwi expect one caller at a time); a call not answered within the timeout of its
start is a 503 ``index_unavailable`` at once, and while a call is stuck past its timeout every new one is refused the same way
without waiting. A backend that refuses the connection or fails (a stopped Qdrant) is a 503 too, not a 500.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any

from koembed.errors import IndexStoreError
from koembed.server.errors import ApiError

log = logging.getLogger(__name__)

# Exceptions of the clients a store talks to its server with: the backend failed, not the request.
BACKEND_MODULES = ("qdrant_client", "httpx", "httpcore", "grpc", "urllib3", "requests")
PROBE_INTERVAL_S = 10.0  # /health re-checks an idle index at most this often


def backend_failure(exc: BaseException) -> bool:
    """Whether ``exc`` says the index's backend is unreachable or failing (rather than a bad request or a bug)."""
    return (isinstance(exc, (OSError, IndexStoreError))
            or type(exc).__module__.split(".")[0] in BACKEND_MODULES)


class IndexCalls:
    """Runs an index's calls on its own thread with a timeout; remembers whether the index answers.

    ``await calls(fn, *args)`` runs ``fn(*args)`` and returns its result, or raises :class:`ApiError` 503
    ``index_unavailable`` (timeout, a call still stuck, or a backend failure); other exceptions (a
    :class:`~koembed.errors.SpecError` for a mode the index cannot serve, a bug) pass through unchanged. ``where``
    names the backend in messages.
    """

    def __init__(self, timeout_s: float, where: str, queue_timeout_s: float = 60.0):
        self.timeout_s, self.where, self.queue_timeout_s = timeout_s, where, queue_timeout_s
        self._executor: ThreadPoolExecutor | None = None
        self._lock = threading.Lock()
        self._stuck = 0  # calls past their timeout that have not returned yet
        self._ok, self._checked = True, time.monotonic()
        self._error: str | None = None
        self._since = _now()
        self._probe: asyncio.Task | None = None

    async def __call__(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._stuck:
            raise self._unavailable(f"an earlier call to the index has not returned after more than "
                                    f"{self.timeout_s:g} s (--index-timeout)")
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="koembed-index")
        loop, started = asyncio.get_running_loop(), asyncio.Event()

        def run() -> Any:
            loop.call_soon_threadsafe(started.set)
            return fn(*args)

        future: Future = self._executor.submit(run)
        try:  # the timeout counts from the start: waiting behind earlier calls (a burst of searches) is not a hang
            await asyncio.wait_for(started.wait(), self.queue_timeout_s)
        except TimeoutError:
            if future.cancel():
                raise self._unavailable(f"earlier index calls did not finish within {self.queue_timeout_s:g} s") \
                    from None
        try:
            result = await asyncio.wait_for(asyncio.wrap_future(future), self.timeout_s)
        except TimeoutError:
            if not future.cancel():  # running: count it until it returns
                self._count_stuck(future)
            self._record(False, f"no answer within {self.timeout_s:g} s")
            raise self._unavailable(f"the index did not answer within {self.timeout_s:g} s (--index-timeout)") \
                from None
        except Exception as exc:
            if not backend_failure(exc):  # a bad request (SpecError) or a bug: says nothing of the backend
                raise
            self._record(False, f"{type(exc).__name__}: {exc}")
            log.warning("the index backend failed: %r", exc)
            raise self._unavailable(f"the index backend failed ({type(exc).__name__}: {exc})") from exc
        self._record(True)
        return result

    def _count_stuck(self, future: Future) -> None:
        with self._lock:
            self._stuck += 1

        def returned(_: Future) -> None:
            with self._lock:
                self._stuck -= 1
        future.add_done_callback(returned)

    def _unavailable(self, why: str) -> ApiError:
        return ApiError(503, f"{why}: {self.where} is unavailable; /search answers again once it does "
                             "(/health shows its state)", code="index_unavailable", headers={"Retry-After": "5"})

    def _record(self, ok: bool, error: str | None = None) -> None:
        if ok != self._ok:
            self._since = _now()
            (log.info if ok else log.error)("the index is %s%s", "available again" if ok else "unavailable",
                                            f": {error}" if error else "")
        self._ok, self._error, self._checked = ok, error, time.monotonic()

    def state(self, probe: Callable[[], Any] | None = None) -> dict[str, Any]:
        """``{"state": "ok" | "unavailable", "since", "error"}`` as the last call found it. With ``probe`` (a cheap
        index call) an index not checked for :data:`PROBE_INTERVAL_S` is checked again in the background, so
        the answer never waits for the backend and a backend that went away while idle shows up at the next
        ``/health``."""
        if self._stuck:
            self._record(False, f"a call has not returned after more than {self.timeout_s:g} s")
        elif (probe is not None and time.monotonic() - self._checked > PROBE_INTERVAL_S
              and (self._probe is None or self._probe.done())):
            with contextlib.suppress(RuntimeError):  # no running event loop (a direct call): report only
                self._probe = asyncio.get_running_loop().create_task(self._run_probe(probe))
        return {"state": "ok" if self._ok else "unavailable", "since": self._since, "error": self._error}

    async def _run_probe(self, probe: Callable[[], Any]) -> None:
        with contextlib.suppress(Exception):  # recorded by the call
            await self(probe)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=False, cancel_futures=True)
            self._executor = None


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")
