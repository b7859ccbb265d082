"""``koembed serve`` and ``koembed version``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

import koembed.server as server
from koembed.cli.common import (
    BackendOpt,
    DeviceOpt,
    ModelOpt,
    PrecisionOpt,
    RerankDepthOpt,
    console,
    err_console,
    fail,
    model_spec,
    quiet_libraries,
)
from koembed.errors import KoembedError
from koembed.server import API_KEY_ENV, ServerLimits, check_exposure, is_loopback
from koembed.version import __version__


def serve(
    model: ModelOpt,
    index: Annotated[Optional[Path], typer.Option(
        "--index", "-i", help="Index folder for POST /search (built with this model by koembed index build).")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind; anything but loopback exposes the API and needs an "
                                      "API key (or --insecure-no-auth).")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    api_key: Annotated[Optional[str], typer.Option(
        help="Require 'Authorization: Bearer KEY' (all routes but /health). Default: $KOEMBED_API_KEY, which "
        "keeps the key out of the process list.")] = None,
    max_batch_tokens: Annotated[int, typer.Option(min=1, help="Token budget of one dynamic batch.")] = 8192,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="Longest wait for a batch to fill, in ms.")] = 5.0,
    max_inputs: Annotated[int, typer.Option(min=1, help="Most texts per embeddings request.")] = 256,
    max_input_tokens: Annotated[Optional[int], typer.Option(
        min=1, help="Most tokens per text (default: the model's max_seq_length).")] = None,
    max_queue_tokens: Annotated[int, typer.Option(
        min=1, help="Most tokens waiting to be encoded; a request that does not fit gets 503 with Retry-After.")
    ] = 65536,
    request_timeout: Annotated[float, typer.Option(
        min=0.001, help="Seconds a request may wait for the model before it gets 503.")] = 60.0,
    allowed_host: Annotated[Optional[list[str]], typer.Option(
        "--allowed-host", help="Without an API key, also answer requests addressed to this Host name (repeatable; "
        "'*' for any). Loopback names are always allowed.")] = None,
    insecure_no_auth: Annotated[bool, typer.Option(
        "--insecure-no-auth", help="Allow a non-loopback --host without an API key (anyone who reaches it can "
        "use the API).")] = False,
    truncate: Annotated[bool, typer.Option(help="Embed the first max-input-tokens tokens of longer inputs instead "
                                           "of refusing them (413).")] = False,
    no_batching: Annotated[bool, typer.Option("--no-batching", help="One encode call per request (for "
                                              "comparison).")] = False,
    device: DeviceOpt = None,
    precision: PrecisionOpt = "auto",
    backend: BackendOpt = "auto",
    reranker: Annotated[Optional[str], typer.Option(
        help="Cross-encoder (hub id or folder) for POST /v1/rerank and /search with \"rerank\": true.")] = None,
    rerank_depth: RerankDepthOpt = 50,
) -> None:
    """Serve the model over HTTP: OpenAI-compatible /v1/embeddings, /v1/rerank, /search, /health, /metrics."""
    quiet_libraries()
    try:
        keyed = bool(api_key or os.environ.get(API_KEY_ENV))
        check_exposure(host, api_key or os.environ.get(API_KEY_ENV), insecure_no_auth)
        if not is_loopback(host):
            err_console.print(f"[bold yellow]warning:[/] binding to {host} makes the API reachable from other machines"
                              + ("" if keyed else " without an API key (--insecure-no-auth)"), highlight=False)
        limits = ServerLimits(max_inputs=max_inputs, max_input_tokens=max_input_tokens,
                              max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms, truncate=truncate,
                              batching=not no_batching, max_queue_tokens=max_queue_tokens,
                              request_timeout_s=request_timeout)
        server.serve(model_spec(model, precision, backend, device), index, host=host, port=port, api_key=api_key,
                     limits=limits, allowed_hosts=tuple(allowed_host or ()), insecure_no_auth=insecure_no_auth,
                     reranker=model_spec(reranker, precision, "torch", device) if reranker else None,
                     rerank_depth=rerank_depth)
    except (KoembedError, ValueError) as exc:
        fail(exc)


def version() -> None:
    """Print koembed's version."""
    console.print(__version__)
