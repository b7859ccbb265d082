"""``koembed serve`` and ``koembed version``."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer

from koembed import __version__, server
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
from koembed.server import API_KEY_ENV, ServerLimits, is_loopback


def serve(
    model: ModelOpt,
    index: Annotated[Optional[Path], typer.Option(
        "--index", "-i", help="Index folder for POST /search (built with this model by koembed index build).")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind; anything but loopback exposes the API.")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    api_key: Annotated[Optional[str], typer.Option(
        help="Require 'Authorization: Bearer KEY' (all routes but /health). Default: $KOEMBED_API_KEY, which "
        "keeps the key out of the process list.")] = None,
    max_batch_tokens: Annotated[int, typer.Option(min=1, help="Token budget of one dynamic batch.")] = 8192,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="Longest wait for a batch to fill, in ms.")] = 5.0,
    max_inputs: Annotated[int, typer.Option(min=1, help="Most texts per embeddings request.")] = 256,
    max_input_tokens: Annotated[Optional[int], typer.Option(
        min=1, help="Most tokens per text (default: the model's max_seq_length).")] = None,
    truncate: Annotated[bool, typer.Option(help="Embed the first max-input-tokens tokens of longer inputs instead "
                                           "of refusing them (413).")] = False,
    no_batching: Annotated[bool, typer.Option("--no-batching", help="One encode call per request (for "
                                              "comparison).")] = False,
    device: DeviceOpt = None,
    precision: PrecisionOpt = "fp32",
    backend: BackendOpt = "torch",
    reranker: Annotated[Optional[str], typer.Option(
        help="Cross-encoder (hub id or folder) for POST /v1/rerank and /search with \"rerank\": true.")] = None,
    rerank_depth: RerankDepthOpt = 50,
) -> None:
    """Serve the model over HTTP: OpenAI-compatible /v1/embeddings, /v1/rerank, /search, /health, /metrics."""
    quiet_libraries()
    if not is_loopback(host):
        keyless = not (api_key or os.environ.get(API_KEY_ENV))
        err_console.print(f"[bold yellow]warning:[/] binding to {host} makes the API reachable from other machines"
                          + (f" without an API key (set {API_KEY_ENV} or --api-key)" if keyless else ""),
                          highlight=False)
    try:
        limits = ServerLimits(max_inputs=max_inputs, max_input_tokens=max_input_tokens,
                              max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms, truncate=truncate,
                              batching=not no_batching)
        server.serve(model_spec(model, precision, backend, device), index, host=host, port=port, api_key=api_key,
                     limits=limits, reranker=model_spec(reranker, precision, "torch", device) if reranker else None,
                     rerank_depth=rerank_depth)
    except (KoembedError, ValueError) as exc:
        fail(exc)


def version() -> None:
    """Print koembed's version."""
    console.print(__version__)
