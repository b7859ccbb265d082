"""Fault injection for the index backend (docs/RELIABILITY.md): a backend that hangs or is gone costs /search a
fast 503 index_unavailable and shows in /health, while /v1/embeddings keeps answering.

The backend is stood in for on 127.0.0.1 only: a TCP socket that accepts connections and never answers, reached
by the real Qdrant client, and a port where nothing listens (a stopped Qdrant). The stand-in index calls it
before each search, then answers as the real FAISS index does.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor

import httpx
import numpy as np
import pytest

from koembed.index import SearchIndex
from koembed.models import encode
from koembed.server import ServerLimits, create_app
from tests.helpers import running

INDEX_TIMEOUT_S = 2.0


class SilentServer:
    """A TCP server on 127.0.0.1 that accepts connections and never answers, until :meth:`stop`."""

    def __init__(self) -> None:
        self._socket = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        self._connections: list[socket.socket] = []
        self._thread = threading.Thread(target=self._accept, daemon=True)
        self._thread.start()

    def _accept(self) -> None:
        while True:
            try:
                connection, _ = self._socket.accept()
            except OSError:  # closed by stop()
                return
            self._connections.append(connection)

    def stop(self) -> None:
        self._socket.close()
        for connection in self._connections:
            connection.close()
        self._thread.join(timeout=5)


def closed_port_url() -> str:
    """The URL of a 127.0.0.1 port where nothing listens (bound, then closed)."""
    with socket.create_server(("127.0.0.1", 0)) as s:
        return f"http://127.0.0.1:{s.getsockname()[1]}"


def qdrant_ping(url: str) -> Callable[[], None]:
    """What a Qdrant index does first on every call: a request to its server (the real client, 30 s timeout)."""
    from qdrant_client import QdrantClient

    def ping() -> None:
        client = QdrantClient(url=url, timeout=30, check_compatibility=False)
        try:
            client.get_collections()
        finally:
            client.close()
    return ping


class StandIn:
    """A SearchIndex that calls ``backend`` before each search or text lookup, then answers as ``index``."""

    def __init__(self, index: SearchIndex, backend: Callable[[], None] | None = None):
        self._index, self.backend = index, backend
        self.path, self.manifest = index.path, index.manifest
        self.inside = threading.Event()  # a search is waiting for the backend now

    def __len__(self) -> int:
        return len(self._index)

    @property
    def doc_ids(self) -> list[str]:
        return self._index.doc_ids

    @property
    def passages(self) -> Mapping[str, str]:
        return self._index.passages

    @property
    def encoder(self):
        return self._index.encoder

    @property
    def analyzer(self):
        return self._index.analyzer

    def _call_backend(self) -> None:
        if self.backend is not None:
            self.inside.set()
            try:
                self.backend()
            finally:
                self.inside.clear()

    def text(self, doc_id: str) -> str:
        self._call_backend()
        return self._index.text(doc_id)

    def search(self, queries: Sequence[str], k: int = 10, mode: str = "dense"):
        self._call_backend()
        return self._index.search(queries, k, mode)


@pytest.fixture
def served(model, index) -> Iterator[tuple[httpx.Client, StandIn]]:
    stand_in = StandIn(index)
    assert isinstance(stand_in, SearchIndex)
    limits = ServerLimits(index_timeout_s=INDEX_TIMEOUT_S, request_timeout_s=30)
    with running(create_app(model, "tiny", index=stand_in, limits=limits)) as base, \
            httpx.Client(base_url=base, timeout=60) as client:
        yield client, stand_in


def _unavailable(response: httpx.Response) -> str:
    assert response.status_code == 503, response.text
    error = response.json()["error"]
    assert error["code"] == "index_unavailable" and response.headers["retry-after"], error
    return error["message"]


def test_hung_backend_is_a_fast_503_while_embeddings_keep_answering(served, model, index, queries):
    client, stand_in = served
    query = queries[0]
    assert client.post("/search", json={"query": query, "k": 3}).status_code == 200
    assert client.get("/health").json()["index"]["state"] == "ok"
    silent = SilentServer()
    try:
        stand_in.backend = qdrant_ping(silent.url)
        with ThreadPoolExecutor(1) as pool:
            started = time.monotonic()
            search = pool.submit(client.post, "/search", json={"query": query, "k": 3})
            assert stand_in.inside.wait(30), "the search never reached the backend"
            response = client.post("/v1/embeddings", json={"input": queries[1:4]})
            embedding_s = time.monotonic() - started
            assert stand_in.inside.is_set(), "the backend answered: the test proves nothing"
            assert response.status_code == 200, response.text  # answered while the search hangs
            np.testing.assert_allclose([d["embedding"] for d in response.json()["data"]],
                                       encode(model, queries[1:4], show_progress=False), atol=1e-5)
            message = _unavailable(search.result(timeout=60))
            search_s = time.monotonic() - started
        assert f"within {INDEX_TIMEOUT_S:g} s" in message and str(index.path) in message
        assert "overloaded" not in message
        again = client.post("/search", json={"query": query})  # the call is still stuck: refused at once
        assert "has not returned" in _unavailable(again)
        health = client.get("/health")
        assert health.status_code == 200 and health.json()["status"] == "degraded"
        assert health.json()["index"]["state"] == "unavailable"
        assert client.post("/v1/embeddings", json={"input": query}).status_code == 200
        print(f"\nwhile the backend hung: embeddings answered {embedding_s:.2f} s after the search started; "
              f"the search got its 503 after {search_s:.2f} s")
    finally:
        stand_in.backend = None
        silent.stop()  # the stuck client call fails now, and the index thread is free again
    deadline = time.monotonic() + 30
    while client.post("/search", json={"query": query, "k": 3}).status_code != 200:
        assert time.monotonic() < deadline, "the index never came back"
        time.sleep(0.2)
    assert client.get("/health").json()["index"]["state"] == "ok"


def test_stopped_backend_is_503_not_500(served, queries):
    client, stand_in = served
    stand_in.backend = qdrant_ping(closed_port_url())
    for body in ({"query": queries[0]}, {"query": queries[0], "mode": "bm25", "highlight": True}):
        message = _unavailable(client.post("/search", json=body))
        assert "backend failed" in message and "ResponseHandlingException" in message
    health = client.get("/health").json()
    assert (health["status"], health["index"]["state"]) == ("degraded", "unavailable")
    assert "ResponseHandlingException" in health["index"]["error"]
    assert client.post("/v1/embeddings", json={"input": queries[0]}).status_code == 200
    stand_in.backend = None
    assert client.post("/search", json={"query": queries[0]}).status_code == 200
    assert client.get("/health").json()["status"] == "ok"


def test_index_calls_time_out_refuse_while_stuck_and_recover():
    """IndexCalls alone (no server): a call past its timeout is a 503, further calls are refused at once while it
    is stuck, a backend exception is a 503, a bad request passes through, and the state follows."""
    import asyncio

    from koembed.errors import SpecError
    from koembed.server.errors import ApiError
    from koembed.server.index_calls import IndexCalls

    release = threading.Event()

    def refuse() -> None:
        raise ConnectionRefusedError("nothing listens")

    def bad_mode() -> None:
        raise SpecError("unknown search mode")

    async def scenario() -> list[str]:
        calls = IndexCalls(0.2, "the stand-in")
        seen = []
        for fn in (lambda: release.wait(30), lambda: 1):
            try:
                await calls(fn)
            except ApiError as exc:
                assert (exc.status, exc.code) == (503, "index_unavailable")
                seen.append(exc.message.split(":")[0])
        seen.append(calls.state()["state"])
        release.set()
        while calls._stuck:  # the stuck call returns
            await asyncio.sleep(0.01)
        assert await calls(lambda: 7) == 7 and calls.state()["state"] == "ok"
        with pytest.raises(SpecError):
            await calls(bad_mode)
        assert calls.state()["state"] == "ok"  # a bad request says nothing of the backend
        with pytest.raises(ApiError, match="ConnectionRefusedError"):
            await calls(refuse)
        seen.append(calls.state()["state"])
        calls.close()
        return seen

    assert asyncio.run(scenario()) == ["the index did not answer within 0.2 s (--index-timeout)",
                                       "an earlier call to the index has not returned after more than 0.2 s "
                                       "(--index-timeout)", "unavailable", "unavailable"]
