"""Dynamic batching of embedding requests onto one encoding thread. No FastAPI here: testable on its own.

Requests put their texts on one queue; a worker takes requests in arrival order until their tokens reach
``max_batch_tokens`` or the oldest has waited ``max_wait_ms``, runs one encode call on a worker thread (the
event loop keeps serving), and hands each request back its own rows. A request larger than the budget is
encoded alone, never split. Every use of the model (embedding batches and an index's query embedding) runs on
that one thread, because the model is not safe to call concurrently (encode changes ``max_seq_length`` for the
duration of a call) and two parallel forward passes would only compete for the same cores.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
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
