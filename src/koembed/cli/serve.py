"""``koembed serve`` and ``koembed version``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

import koembed.server as server
from koembed.cli.common import (
    RerankDepthOpt,
    console,
    err_console,
    exits_on_error,
    quiet_libraries,
    with_model_options,
)
from koembed.models import ModelSpec
from koembed.server import API_KEY_ENV, ServerLimits, check_exposure, is_loopback
from koembed.version import __version__


@exits_on_error(ValueError)
@with_model_options("model", "device", "precision", "backend", precision="auto", backend="auto")
def serve(
    model: ModelSpec,
    index: Annotated[Path | None, typer.Option(
        "--index", "-i", help="Index folder for POST /search (built with this model by koembed index build).",
        metavar="DIR")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind; anything but loopback exposes the API and needs an "
                                      "API key (or --insecure-no-auth).", metavar="HOST")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.", metavar="PORT")] = 8000,
    api_key: Annotated[str | None, typer.Option(
        help="Require 'Authorization: Bearer KEY' (all routes but /health). Default: $KOEMBED_API_KEY, which "
        "keeps the key out of the process list.", metavar="KEY")] = None,
    max_batch_tokens: Annotated[int, typer.Option(min=1, help="Token budget of one dynamic batch.",
                                                  metavar="N")] = 8192,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="Longest wait for a batch to fill, in ms.",
                                               metavar="MS")] = 5.0,
    max_inputs: Annotated[int, typer.Option(min=1, help="Most texts per embeddings request.", metavar="N")] = 256,
    max_input_tokens: Annotated[int | None, typer.Option(
        min=1, help="Most tokens per text (default: the model's max_seq_length).", metavar="N")] = None,
    max_queue_tokens: Annotated[int, typer.Option(
        min=1, help="Most tokens waiting to be encoded; a request that does not fit gets 503 with Retry-After.",
        metavar="N")
    ] = 65536,
    request_timeout: Annotated[float, typer.Option(
        min=0.001, help="Seconds a request may wait for the model before it gets 503.", metavar="SECONDS")] = 60.0,
    index_timeout: Annotated[float, typer.Option(
        min=0.001, help="Seconds a search may wait for the index (a Qdrant server) before it gets 503 "
        "index_unavailable.", metavar="SECONDS")] = 30.0,
    allowed_host: Annotated[list[str] | None, typer.Option(
        "--allowed-host", help="Without an API key, also answer requests addressed to this Host name (repeatable; "
        "'*' for any). Loopback names are always allowed.", metavar="HOST")] = None,
    insecure_no_auth: Annotated[bool, typer.Option(
        "--insecure-no-auth", help="Allow a non-loopback --host without an API key (anyone who reaches it can "
        "use the API).")] = False,
    truncate: Annotated[bool, typer.Option(help="Embed the first max-input-tokens tokens of longer inputs instead "
                                           "of refusing them (413).")] = False,
    no_batching: Annotated[bool, typer.Option("--no-batching", help="One encode call per request (for "
                                              "comparison).")] = False,
    reranker: Annotated[str | None, typer.Option(
        help="Cross-encoder (hub id or folder) for POST /v1/rerank and /search with \"rerank\": true.",
        metavar="MODEL")] = None,
    rerank_depth: RerankDepthOpt = 50,
) -> None:
    """Serve the model over HTTP: OpenAI-compatible /v1/embeddings, /v1/rerank, /search, /health, /metrics."""
    quiet_libraries()
    keyed = bool(api_key or os.environ.get(API_KEY_ENV))
    check_exposure(host, api_key or os.environ.get(API_KEY_ENV), insecure_no_auth)
    if not is_loopback(host):
        err_console.print(f"[bold yellow]warning:[/] binding to {host} makes the API reachable from other machines"
                          + ("" if keyed else " without an API key (--insecure-no-auth)"), highlight=False)
    limits = ServerLimits(max_inputs=max_inputs, max_input_tokens=max_input_tokens,
                          max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms, truncate=truncate,
                          batching=not no_batching, max_queue_tokens=max_queue_tokens,
                          request_timeout_s=request_timeout, index_timeout_s=index_timeout)
    server.serve(model, index, host=host, port=port, api_key=api_key, limits=limits,
                 allowed_hosts=tuple(allowed_host or ()), insecure_no_auth=insecure_no_auth,
                 reranker=ModelSpec(reranker, model.settings, backend="torch") if reranker else None,
                 rerank_depth=rerank_depth)


def version() -> None:
    """Print koembed's version."""
    console.print(__version__)
