"""Throughput and latency of ``POST /v1/embeddings`` under concurrent load, with and without dynamic batching.

The real server (``koembed serve``) runs in a subprocess bound to 127.0.0.1, so its CPU use is separate from
the load generator's; it is started once with dynamic batching and once with ``--no-batching``. After a short
warm-up, each concurrency level runs that many asyncio clients (one httpx connection each) that send
requests until ``--requests`` requests have been sent or ``--duration`` seconds have passed; requests in
flight at the deadline are finished and counted, and the wall time includes them. Each request holds 1-16
distinct passages drawn at random (seeded) from the bundled Korean sample (``--texts queries``: its short
queries instead); both servers get the same requests at each level. The sample's passages (282-493 tokens)
are longer than the bundled MiniLM's 256-token limit, so requests send ``"truncate": true`` (koembed's
extension) and every passage is encoded at 256 tokens; responses are asked in base64, as the official
``openai`` client asks for them.

Per level: completed requests and texts, errors, wall time, requests/s, texts/s, client-side latency
percentiles, server and client CPU seconds (from /proc), and the encode calls and mean texts per encode call,
read from the server's ``/metrics`` (``koembed_embedding_batch_size``) before and after the level.
All traffic goes to 127.0.0.1; every level is bounded in request count and in time.

    python bench/server_load.py --model minilm --concurrency 1,8,32 --requests 200 --duration 60 --out /tmp/bench-out/server_load.json
    python bench/server_load.py --model minilm --texts queries --out /tmp/bench-out/server_load_queries.json
"""

from __future__ import annotations

import asyncio
import base64
import os
import platform
import random
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import common
import httpx
import numpy as np

HOST = "127.0.0.1"  # loopback only: this script never binds or sends anywhere else
MODES = {"batching": [], "no-batching": ["--no-batching"]}  # mode -> extra `koembed serve` options
BATCH_METRIC = "koembed_embedding_batch_size"


@dataclass
class LevelResult:
    """One concurrency level against one server mode."""

    mode: str
    concurrency: int
    requests: int
    texts: int
    errors: int
    wall_s: float
    requests_per_s: float
    texts_per_s: float
    p50_ms: float | None
    p99_ms: float | None
    mean_ms: float | None
    encode_calls: int
    mean_batch_texts: float | None
    server_cpu_s: float | None
    client_cpu_s: float
    first_error: str | None = None


# --------------------------------------------------------------------------- the server subprocess


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (the OS picks it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def server_env() -> dict[str, str]:
    """The server's environment: ours, offline (the bundled model needs no hub), torch threads left at default."""
    return {**os.environ, "HF_HUB_OFFLINE": "1"}


def torch_threads(env: dict[str, str]) -> int:
    """``torch.get_num_threads()`` of a fresh interpreter with ``env``: what the server process gets by default."""
    out = subprocess.run([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], env=env,
                         check=True, capture_output=True, text=True, timeout=120)
    return int(out.stdout.strip().splitlines()[-1])


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of process ``pid`` (all its threads), or None where /proc is unavailable."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime


@dataclass
class Server:
    """A running ``koembed serve`` subprocess."""

    process: subprocess.Popen
    base_url: str
    log_path: Path

    def cpu_seconds(self) -> float | None:
        return process_cpu_seconds(self.process.pid)

    def log_tail(self, lines: int = 30) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def running_server(model: str, extra_args: Sequence[str], start_timeout: float, log_dir: Path) -> Iterator[Server]:
    """Start ``koembed serve`` on a free loopback port, wait (bounded) for ``/health``, stop it on exit."""
    port = free_port()
    cmd = [sys.executable, "-m", "koembed.cli", "serve", "--model", model, "--host", HOST, "--port", str(port),
           *extra_args]
    log_path = log_dir / f"server-{port}.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=server_env())
    server = Server(process, f"http://{HOST}:{port}", log_path)
    try:
        deadline = time.monotonic() + start_timeout
        with httpx.Client(trust_env=False, timeout=5) as client:
            while True:
                if process.poll() is not None:
                    raise RuntimeError(f"the server exited with code {process.returncode}:\n{server.log_tail()}")
                try:
                    if client.get(f"{server.base_url}/health").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError(f"no /health within {start_timeout:.0f} s:\n{server.log_tail()}")
                time.sleep(0.5)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=30)


# --------------------------------------------------------------------------- load


def workload(texts: Sequence[str], n_requests: int, seed: int, max_texts: int = 16) -> list[list[str]]:
    """``n_requests`` requests of 1..``max_texts`` distinct texts each, drawn with ``seed``."""
    rng = random.Random(seed)
    return [rng.sample(texts, rng.randint(1, min(max_texts, len(texts)))) for _ in range(n_requests)]


def batch_counters(client: httpx.Client, base_url: str) -> tuple[float, float]:
    """(texts encoded, encode calls) so far, from the server's ``koembed_embedding_batch_size`` histogram."""
    from prometheus_client.parser import text_string_to_metric_families

    total = calls = 0.0
    for family in text_string_to_metric_families(client.get(f"{base_url}/metrics").text):
        if family.name == BATCH_METRIC:
            for sample in family.samples:
                if sample.name == f"{BATCH_METRIC}_sum":
                    total = sample.value
                elif sample.name == f"{BATCH_METRIC}_count":
                    calls = sample.value
    return total, calls


def check_response(response: httpx.Response, n_texts: int) -> str | None:
    """None for a 200 answer with ``n_texts`` non-empty base64 embeddings, else what is wrong with it."""
    if response.status_code != 200:
        return f"HTTP {response.status_code}: {response.text[:200]}"
    rows = response.json()["data"]
    if len(rows) != n_texts or not all(base64.b64decode(row["embedding"]) for row in rows):
        return f"{len(rows)} embeddings for {n_texts} texts"
    return None


async def send_load(base_url: str, requests: Sequence[list[str]], concurrency: int, duration: float,
                    timeout: float) -> tuple[list[float], int, int, str | None, float]:
    """Run ``concurrency`` clients over ``requests`` until all are sent or ``duration`` seconds have passed.

    Returns (latencies in s of successful requests, texts they carried, errors, first error, wall seconds).
    A request succeeds when the server answers 200 with one embedding per input text.
    """
    url = f"{base_url}/v1/embeddings"
    latencies: list[float] = []
    texts_done = errors = 0
    first_error: str | None = None
    next_request = 0
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)

    async with httpx.AsyncClient(trust_env=False, limits=limits, timeout=timeout) as client:
        started = time.perf_counter()
        deadline = started + duration

        async def client_loop() -> None:
            nonlocal next_request, texts_done, errors, first_error
            while next_request < len(requests) and time.perf_counter() < deadline:
                texts = requests[next_request]
                next_request += 1  # one event loop: no lock needed
                sent = time.perf_counter()
                try:
                    response = await client.post(url, json={"input": texts, "truncate": True,
                                                            "encoding_format": "base64"})
                    problem = check_response(response, len(texts))
                except httpx.HTTPError as exc:
                    problem = f"{type(exc).__name__}: {exc}"
                if problem is None:
                    latencies.append(time.perf_counter() - sent)
                    texts_done += len(texts)
                else:
                    errors += 1
                    first_error = first_error or problem

        await asyncio.gather(*(client_loop() for _ in range(concurrency)))
        wall = time.perf_counter() - started
    return latencies, texts_done, errors, first_error, wall


def percentile_ms(values: Sequence[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)) * 1000, 1) if values else None


def run_level(server: Server, mode: str, requests: Sequence[list[str]], concurrency: int, duration: float,
              timeout: float) -> LevelResult:
    """One measured level: load, plus the server's CPU time and encode batches over exactly that load."""
    with httpx.Client(trust_env=False, timeout=30) as client:
        texts_before, calls_before = batch_counters(client, server.base_url)
        cpu_before, client_before = server.cpu_seconds(), time.process_time()
        latencies, texts, errors, first_error, wall = asyncio.run(
            send_load(server.base_url, requests, concurrency, duration, timeout))
        cpu_after, client_after = server.cpu_seconds(), time.process_time()
        texts_after, calls_after = batch_counters(client, server.base_url)
    calls = int(calls_after - calls_before)
    return LevelResult(
        mode=mode, concurrency=concurrency, requests=len(latencies), texts=texts, errors=errors,
        wall_s=round(wall, 2), requests_per_s=round(len(latencies) / wall, 2), texts_per_s=round(texts / wall, 1),
        p50_ms=percentile_ms(latencies, 50), p99_ms=percentile_ms(latencies, 99),
        mean_ms=round(1000 * float(np.mean(latencies)), 1) if latencies else None,
        encode_calls=calls, mean_batch_texts=round((texts_after - texts_before) / calls, 2) if calls else None,
        server_cpu_s=round(cpu_after - cpu_before, 1) if cpu_before is not None and cpu_after is not None else None,
        client_cpu_s=round(client_after - client_before, 1), first_error=first_error)


# --------------------------------------------------------------------------- report


def markdown_table(rows: Sequence[LevelResult]) -> str:
    head = ("| mode | clients | requests | texts | errors | wall s | req/s | texts/s | p50 ms | p99 ms | "
            "texts/encode | server CPU s | client CPU s |")
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r.mode} | {r.concurrency} | {r.requests} | {r.texts} | {r.errors} | {r.wall_s} | "
                     f"{r.requests_per_s} | {r.texts_per_s} | {r.p50_ms} | {r.p99_ms} | {r.mean_batch_texts} | "
                     f"{r.server_cpu_s} | {r.client_cpu_s} |")
    return "\n".join(lines)


def speedups(rows: Sequence[LevelResult]) -> list[dict[str, Any]]:
    """Batching over no-batching throughput per concurrency level."""
    by_key = {(r.mode, r.concurrency): r for r in rows}
    out = []
    for c in sorted({r.concurrency for r in rows}):
        on, off = by_key.get(("batching", c)), by_key.get(("no-batching", c))
        if on and off and off.texts_per_s and off.requests_per_s:
            out.append({"concurrency": c, "texts_per_s_ratio": round(on.texts_per_s / off.texts_per_s, 2),
                        "requests_per_s_ratio": round(on.requests_per_s / off.requests_per_s, 2)})
    return out


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated client counts")
    parser.add_argument("--requests", type=int, default=200, help="most requests per level")
    parser.add_argument("--duration", type=float, default=60.0, help="most seconds of sending per level")
    parser.add_argument("--warmup", type=int, default=8, help="unmeasured requests after each server start")
    parser.add_argument("--modes", default=",".join(MODES), help="batching, no-batching or both")
    parser.add_argument("--texts", choices=("passages", "queries"), default="passages",
                        help="what the requests embed: the sample's passages or its (short) queries")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--request-timeout", type=float, default=120.0, help="seconds per request")
    parser.add_argument("--start-timeout", type=float, default=180.0, help="seconds to wait for /health")
    args = parser.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        parser.error(f"unknown mode(s) {', '.join(unknown)}: use {', '.join(MODES)}")

    from koembed.data import load_retrieval_set

    sample = load_retrieval_set()
    texts = sorted((sample.corpus if args.texts == "passages" else sample.queries).values())
    requests = {c: workload(texts, args.requests, seed=args.seed * 1000 + c) for c in levels}
    warmup = workload(texts, args.warmup, seed=args.seed * 1000 + 999)
    machine = {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
               "server_torch_threads": torch_threads(server_env())}
    print(f"machine: {machine}", flush=True)
    rows: list[LevelResult] = []
    health: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="koembed-server-load-") as log_dir:
        for mode in modes:
            with running_server(args.model, MODES[mode], args.start_timeout, Path(log_dir)) as server:
                health[mode] = httpx.get(f"{server.base_url}/health", trust_env=False, timeout=10).json()
                asyncio.run(send_load(server.base_url, warmup, 2, args.duration, args.request_timeout))
                for c in levels:
                    rows.append(run_level(server, mode, requests[c], c, args.duration, args.request_timeout))
                    print(asdict(rows[-1]), flush=True)
    print()
    print(markdown_table(rows))
    ratios = speedups(rows)
    for s in ratios:
        print(f"concurrency {s['concurrency']}: batching / no-batching = {s['texts_per_s_ratio']}x texts/s, "
              f"{s['requests_per_s_ratio']}x requests/s")
    common.save(args.out, {
            "command": [Path(sys.executable).name, *sys.argv], "machine": machine, "health": health,
            "settings": {"model": args.model, "concurrency": levels, "requests_per_level": args.requests,
                         "duration_s_per_level": args.duration, "warmup_requests": args.warmup, "seed": args.seed,
                         "texts": f"sample {args.texts}", "distinct_texts": len(texts),
                         "texts_per_request": "1-16, distinct", "truncate": True, "encoding_format": "base64"},
            "levels": [asdict(r) for r in rows], "speedup": ratios})


if __name__ == "__main__":
    main()
