"""Dynamic batching of embedding requests onto one encoding thread. No FastAPI here: testable on its own.

Requests put their texts on one queue; a worker takes requests in arrival order until their tokens reach
``max_batch_tokens`` or the oldest has waited ``max_wait_ms``, runs one encode call on a worker thread (the
event loop keeps serving), and hands each request back its own rows. A request larger than the budget is
encoded alone, never split. Every embedding batch and rerank runs on that one thread, in queue order, because
the model is not safe to call concurrently (encode changes ``max_seq_length`` for the duration of a call) and two
parallel forward passes would only compete for the same cores. Index searches run on a thread of their own
(:mod:`koembed.server.index_calls`, so a hung index backend never holds this one); their query embedding takes
its turn on the model through :func:`koembed.models.embed.model_lock`, between batches.

Backpressure: the queue holds at most ``max_queue_tokens`` tokens (one request is always admitted into an empty
queue). A request that does not fit is refused at once with 503 and ``Retry-After`` (the queue's expected
drain time at the measured encoding speed), and a request not answered within ``request_timeout_s`` gets a
503 and leaves the queue, so memory and waiting time stay bounded under any load.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import math
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from koembed.server.errors import ApiError
from koembed.server.observability import ServerMetrics

if TYPE_CHECKING:
    import numpy as np

log = logging.getLogger(__name__)


@dataclass(eq=False)
class _Job:
    texts: list[Any]  # strings, or token-id lists: encode_rows takes both
    tokens: int
    future: asyncio.Future
    enqueued: float
    call: Callable[[], Any] | None = None  # a model call other than embedding (a rerank), run alone


@dataclass
class Batcher:
    """Dynamic batching of embedding requests onto one encoding thread (see the module docstring).

    ``encode_rows(texts) -> (len(texts), dim) array`` runs on the thread; :meth:`embed` returns the rows
    of one request, in its order. :meth:`run` runs any other model call (a rerank) on the same thread, in the
    same queue. Both raise :class:`ApiError` 503 when the queue is full or the request timed out.
    The worker task and thread start on first use in the running event loop and stop with :meth:`close`.
    """

    encode_rows: Callable[[list[Any]], np.ndarray]
    metrics: ServerMetrics
    max_batch_tokens: int = 8192
    max_wait_ms: float = 5.0
    batching: bool = True
    max_queue_tokens: int = 65536
    request_timeout_s: float = 60.0
    _jobs: collections.deque = field(default_factory=collections.deque, init=False)
    _texts: int = field(default=0, init=False)
    _tokens: int = field(default=0, init=False)
    _tokens_per_s: float | None = field(default=None, init=False)
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

    @property
    def queued_tokens(self) -> int:
        """Tokens waiting for a batch."""
        return self._tokens

    async def embed(self, texts: list[Any], tokens: int) -> np.ndarray:
        """Queue one request's texts or token-id lists (``tokens`` in all) and wait for their rows."""
        return await self._submit(texts, tokens, None)

    async def run(self, fn: Callable[..., Any], *args: Any, tokens: int = 1) -> Any:
        """Run ``fn(*args)`` on the encoding thread, between batches, queued like a request of ``tokens``."""
        return await self._submit([], tokens, functools.partial(fn, *args))

    def admit(self, tokens: int) -> None:
        """Refuse (503 ``server_busy``, with ``Retry-After``) work of ``tokens`` that the full queue has no room
        for; an empty queue admits anything. Also for model work that does not go through the queue (an index
        search's query embedding)."""
        if self._jobs and self._tokens + tokens > self.max_queue_tokens:
            self.metrics.rejected.labels("queue_full").inc()
            wait = self._retry_after(tokens)
            raise ApiError(503, f"the server is busy: {self._tokens} tokens are queued and this request has "
                                f"{tokens} (max_queue_tokens {self.max_queue_tokens}); retry in {wait} s",
                           code="server_busy", headers={"Retry-After": str(wait)})

    async def _submit(self, texts: list[Any], tokens: int, call: Callable[[], Any] | None) -> Any:
        self._start()
        self.admit(tokens)
        job = _Job(texts, tokens, asyncio.get_running_loop().create_future(), time.monotonic(), call)
        self._jobs.append(job)
        self._account(len(texts), tokens)
        self._event.set()
        try:
            return await asyncio.wait_for(asyncio.shield(job.future), self.request_timeout_s)
        except TimeoutError:
            self._drop(job)
            self.metrics.rejected.labels("timeout").inc()
            wait = self._retry_after(0)
            raise ApiError(503, f"the request was not answered within {self.request_timeout_s:g} s "
                                f"(request_timeout); the server is overloaded, retry in {wait} s",
                           code="timeout", headers={"Retry-After": str(wait)}) from None
        except asyncio.CancelledError:  # the request was abandoned: free its place
            self._drop(job)
            raise

    def _drop(self, job: _Job) -> None:
        """Take a job that nobody waits for out of the queue; if it is being encoded, its rows are dropped."""
        try:
            self._jobs.remove(job)
        except ValueError:
            pass
        else:
            self._account(-len(job.texts), -job.tokens)
        job.future.cancel()

    def _retry_after(self, tokens: int) -> int:
        """Seconds until the queue (plus ``tokens``) is likely encoded at the measured speed: 1 to 60."""
        if not self._tokens_per_s:
            return 1
        return max(1, min(60, math.ceil((self._tokens + tokens) / self._tokens_per_s)))

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
        self.metrics.queue_tokens.set(0)
        if self._executor is not None:
            self._executor.shutdown(wait=False)
            self._executor = None

    @property
    def _event(self) -> asyncio.Event:
        """The worker's wake-up event, made by :meth:`_start` before any job is queued."""
        assert self._wakeup is not None
        return self._wakeup

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
        self.metrics.queue_tokens.set(self._tokens)

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            while not self._jobs:
                self._event.clear()
                await self._event.wait()
            if self.batching and self._jobs[0].call is None:
                # Wait for more requests until the budget is full or the oldest one's wait is over.
                deadline = self._jobs[0].enqueued + self.max_wait_ms / 1000
                while self._tokens < self.max_batch_tokens and (left := deadline - time.monotonic()) > 0:
                    self._event.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._event.wait(), left)
            batch = self._take()
            if not batch:
                continue
            if batch[0].call is not None:
                await self._run_call(batch[0])
                continue
            texts = [t for job in batch for t in job.texts]
            tokens = sum(job.tokens for job in batch)
            self.metrics.batch_size.observe(len(texts))
            self.metrics.batch_tokens.observe(tokens)
            started = time.monotonic()
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
            speed = tokens / max(time.monotonic() - started, 1e-6)
            self._tokens_per_s = speed if self._tokens_per_s is None else 0.8 * self._tokens_per_s + 0.2 * speed
            start = 0
            for job in batch:
                if not job.future.done():  # a cancelled request's rows are dropped
                    job.future.set_result(rows[start: start + len(job.texts)])
                start += len(job.texts)

    async def _run_call(self, job: _Job) -> None:
        """Run one queued model call (not an embedding batch) on the encoding thread."""
        assert job.call is not None  # _work runs only a job with a call here
        try:
            result = await asyncio.get_running_loop().run_in_executor(self._executor, job.call)
        except asyncio.CancelledError:
            if not job.future.done():
                job.future.set_exception(ApiError(503, "the server is shutting down", code="shutting_down"))
            raise
        except Exception as exc:  # the request fails, the worker goes on
            if not job.future.done():
                job.future.set_exception(exc)
        else:
            if not job.future.done():
                job.future.set_result(result)

    def _take(self) -> list[_Job]:
        """Jobs from the front of the queue: one without batching or for a model call, else as many embedding
        requests as fit the token budget."""
        batch: list[_Job] = []
        tokens = 0
        while self._jobs:
            job = self._jobs[0]
            if batch and (not self.batching or batch[0].call is not None or job.call is not None
                          or tokens + job.tokens > self.max_batch_tokens):
                break
            self._jobs.popleft()
            self._account(-len(job.texts), -job.tokens)
            if job.future.done():  # cancelled while queued
                continue
            batch.append(job)
            tokens += job.tokens
        return batch
