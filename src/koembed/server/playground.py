"""The search playground: one page at ``/`` to try an index by hand and to read ``koembed bench`` results.

The page is plain HTML, JavaScript and CSS in ``koembed/server/static`` (package data: no build step, nothing
from a CDN; the bench plot is inline SVG drawn from the numbers). Its Search tab sends the query to ``/search``
once per mode (bm25, dense, hybrid, and hybrid reranked when the server has a reranker) with ``"highlight":
true`` and shows the results side by side; the server adds, per hit, the character spans of the query's Kiwi
content morphemes in the passage (:func:`highlight_rows`: the page cannot run Kiwi). Its Bench tab reads a
``results.json`` chosen in the browser (it never leaves the browser) and shows the AutoRAG table of each top-k,
the IR table and recall@k / NDCG@k plots.

Security: the three files hold no data, so they are served without the API key (a browser opening a page cannot
send one) but, like every route, only under an allowed ``Host`` (:class:`koembed.server.gate.Gate`); the key
typed into the page is sent to ``/search`` as ``Authorization: Bearer KEY`` and kept only in the page's memory.
Passage text goes into the page as text nodes, never as HTML, and a strict Content-Security-Policy (scripts
from this server only, no inline script, no framing) limits the damage of any mistake there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from importlib import resources
from pathlib import PurePath
from typing import TYPE_CHECKING, Any

from koembed.lexical import DEFAULT_ANALYZER, Analyzer, LexicalConfig, get_analyzer, lexical_spec
from koembed.server.config import PLAYGROUND_FILES

if TYPE_CHECKING:
    from fastapi import FastAPI
    from fastapi.responses import Response

    from koembed.index import SearchIndex

MEDIA_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
               ".css": "text/css; charset=utf-8"}
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self'; "
                           "img-src 'self'; form-action 'none'; base-uri 'none'; frame-ancestors 'none'")
HEADERS = {"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff",
           "Referrer-Policy": "no-referrer", "Cache-Control": "no-cache"}


def add_playground(app: FastAPI) -> None:
    """Serve the playground's files (:data:`koembed.server.config.PLAYGROUND_FILES`) from package data."""
    static = resources.files("koembed.server") / "static"
    for route, name in PLAYGROUND_FILES.items():
        app.add_api_route(route, _file_route((static / name).read_bytes(), MEDIA_TYPES[PurePath(name).suffix]),
                          methods=["GET"], include_in_schema=False)


def _file_route(body: bytes, media_type: str) -> Callable[[], Awaitable[Response]]:
    from fastapi.responses import Response

    async def serve_file() -> Response:
        return Response(body, media_type=media_type, headers=HEADERS)

    return serve_file


def highlight_rows(query: str, rows: list[dict[str, Any]], analyzer: Analyzer | None = None
                   ) -> tuple[list[str], list[dict[str, Any]]]:
    """The query's content morphemes (``보증금/N``, as BM25 matches them, by the index's ``analyzer``, else the
    default analyzer) and ``rows`` (``/search`` hit rows)
    each with ``matches``: the ``[start, end)`` spans of those morphemes in the row's ``text``, sorted and
    non-overlapping, in Unicode code points (Python string indices; JavaScript must slice ``Array.from(text)``,
    not the UTF-16 string). The server runs it on the model thread, which also analyses BM25 queries: one
    analyzer object is never used from two threads at once."""
    tokenizer = analyzer or get_analyzer()
    spans = tokenizer.matched_spans(query, [row["text"] for row in rows])
    rows = [{**row, "matches": [list(span) for span in found]} for row, found in zip(rows, spans)]
    return tokenizer([query])[0], rows


def index_search_info(index: SearchIndex | None) -> dict[str, Any]:
    """What ``/health`` tells the page about the loaded index's search: ``lexical`` (the BM25 half's fields as a
    retriever spec, e.g. ``bm25-phrase``), ``analyzer`` (``mecab`` or ``kiwi``) and ``fusion`` (how ``hybrid``
    fuses: ``{"fusion": "rrf", "weights", "rrf_k"}``, as the manifest records it; a Qdrant index fuses with Qdrant's
    RRF). All None without an index."""
    if index is None:
        return {"lexical": None, "analyzer": None, "fusion": None}
    manifest = index.manifest
    fusion = getattr(manifest, "fusion", None) or {"fusion": "rrf", "weights": None, "rrf_k": 60}
    config = LexicalConfig.from_dict(manifest.bm25)
    return {"lexical": lexical_spec(config.with_analyzer(DEFAULT_ANALYZER)), "analyzer": config.analyzer,
            "fusion": dict(fusion)}
