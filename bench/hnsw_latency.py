"""Per-query search latency and recall@10 of koembed's ``hnsw`` index against exact (``flat``) search.

The corpus is synthetic: ``--n`` L2-normalised vectors of dimension ``--dim`` drawn from a mixture of
``--clusters`` Gaussians (seeded). Cluster centres are uniform on the unit sphere; a point is its cluster's
centre plus isotropic Gaussian noise of expected norm ``--spread``, then normalised (spread 1.0: cosine
~0.71 to its centre, ~0.5 to points of its own cluster, ~0 to other clusters). Queries are drawn the same
way (perturbed cluster centres). Clustered data is used because uniformly random high-dimensional vectors,
where every point is nearly equidistant from every other, are unrealistically hard for any ANN index; real
embeddings are far from uniform. Recall therefore depends on ``--spread``: state it with the numbers.

Both indexes are made by koembed's own FAISS set-up (:func:`koembed.index.faiss.faiss_index_params` and
:func:`koembed.index.faiss.new_faiss_index`: IndexIDMap2 over IndexFlatIP / IndexHNSWFlat, inner product), with
:func:`koembed.index.build_index`'s defaults (M=32, efConstruction=200, efSearch=128) unless overridden;
efSearch is set as a loaded index sets it (:func:`koembed.index.faiss.set_faiss_search_params`). Build time is
measured with FAISS's default threads. Latency is of single-query ``index.search(q, k)`` calls (k=10),
each timed alone, with 1 FAISS thread and with the default; ``batch_qps`` is one call with all queries.
Recall@10 is |HNSW top 10 ∩ exact top 10| / 10, averaged over queries. koembed's own dense search asks FAISS
for k + 16 candidates (tie handling), which costs about the same at efSearch >= 26.

    python bench/hnsw_latency.py --n 200000 --queries 1000 --ef-search 64,128,256 --out /tmp/bench-out/hnsw_latency.json
"""

from __future__ import annotations

import os
import platform
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import common
import faiss
import numpy as np

from koembed.index.faiss import IndexParams, faiss_index_params, new_faiss_index, set_faiss_search_params


@dataclass
class SearchResult:
    """One index configuration at one FAISS thread count."""

    kind: str
    ef_search: int | None
    threads: int
    queries: int
    p50_ms: float
    p99_ms: float
    mean_ms: float
    batch_qps: float
    recall_at_10: float


def build_defaults() -> dict[str, int]:
    """``build_index``'s HNSW defaults (M, efConstruction, efSearch): those of :class:`IndexParams`."""
    defaults = IndexParams()
    return {name: getattr(defaults, name) for name in ("hnsw_m", "ef_construction", "ef_search")}


def mixture_of_gaussians(centres: np.ndarray, n: int, spread: float, rng: np.random.Generator) -> np.ndarray:
    """``n`` L2-normalised float32 points: a random centre each, plus noise of expected norm ``spread``."""
    dim = centres.shape[1]
    points = centres[rng.integers(0, len(centres), size=n)]
    points += rng.standard_normal((n, dim), dtype=np.float32) * np.float32(spread / np.sqrt(dim))
    faiss.normalize_L2(points)
    return points


def synthetic_data(n: int, n_queries: int, dim: int, clusters: int, spread: float,
                   seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(corpus, queries), both drawn from the same seeded mixture (see the module docstring)."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((clusters, dim), dtype=np.float32)
    faiss.normalize_L2(centres)
    return mixture_of_gaussians(centres, n, spread, rng), mixture_of_gaussians(centres, n_queries, spread, rng)


def build(kind: str, vectors: np.ndarray, hnsw: dict[str, int]) -> tuple[Any, dict[str, Any], float]:
    """(index, params, seconds to add the vectors) with koembed's FAISS set-up; ids 0..n-1 as build_index uses."""
    params = faiss_index_params(IndexParams(kind, **hnsw), len(vectors))
    index = new_faiss_index(kind, vectors.shape[1], params, vectors)
    started = time.perf_counter()
    index.add_with_ids(vectors, np.arange(len(vectors), dtype=np.int64))
    return index, params, time.perf_counter() - started


def recall_at_k(found: np.ndarray, exact: np.ndarray) -> float:
    """Mean over queries of |found ∩ exact| / k (rows of ids, -1 for missing)."""
    k = exact.shape[1]
    return float(np.mean([len(set(f[f >= 0]) & set(e)) / k for f, e in zip(found, exact)]))


def measure(kind: str, index: Any, queries: np.ndarray, exact: np.ndarray, k: int, threads: int,
            ef_search: int | None, warmup: int = 20) -> SearchResult:
    """Single-query latencies (each call timed alone), batch throughput and recall@k at ``threads`` threads."""
    faiss.omp_set_num_threads(threads)
    for q in queries[:warmup]:
        index.search(q[None, :], k)
    latencies = np.empty(len(queries))
    found = np.empty((len(queries), k), dtype=np.int64)
    for i in range(len(queries)):
        q = queries[i: i + 1]
        started = time.perf_counter()
        _, ids = index.search(q, k)
        latencies[i] = time.perf_counter() - started
        found[i] = ids[0]
    started = time.perf_counter()
    index.search(queries, k)
    batch_s = time.perf_counter() - started
    return SearchResult(kind=kind, ef_search=ef_search, threads=threads, queries=len(queries),
                        p50_ms=round(float(np.percentile(latencies, 50)) * 1000, 3),
                        p99_ms=round(float(np.percentile(latencies, 99)) * 1000, 3),
                        mean_ms=round(float(latencies.mean()) * 1000, 3),
                        batch_qps=round(len(queries) / batch_s, 1), recall_at_10=round(recall_at_k(found, exact), 4))


def markdown_table(rows: Sequence[SearchResult]) -> str:
    head = "| index | efSearch | threads | p50 ms | p99 ms | mean ms | batch QPS | recall@10 |"
    lines = [head, "|" + "---|" * (head.count("|") - 1)]
    for r in rows:
        lines.append(f"| {r.kind} | {r.ef_search or '-'} | {r.threads} | {r.p50_ms} | {r.p99_ms} | {r.mean_ms} | "
                     f"{r.batch_qps} | {r.recall_at_10} |")
    return "\n".join(lines)


def main() -> None:
    defaults = build_defaults()
    parser = common.parser(__doc__)
    parser.add_argument("--n", type=int, default=200_000, help="corpus vectors")
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--clusters", type=int, default=1000)
    parser.add_argument("--spread", type=float, default=1.0, help="expected noise norm around a unit centre")
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--m", type=int, default=defaults["hnsw_m"], help="HNSW M")
    parser.add_argument("--ef-construction", type=int, default=defaults["ef_construction"])
    parser.add_argument("--ef-search", default=f"64,{defaults['ef_search']},256",
                        help="comma-separated efSearch values to measure")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    ef_values = [int(v) for v in args.ef_search.split(",")]
    hnsw = {"hnsw_m": args.m, "ef_construction": args.ef_construction, "ef_search": defaults["ef_search"]}
    default_threads = faiss.omp_get_max_threads()
    thread_counts = sorted({1, default_threads})
    machine = {"cpus": os.cpu_count(), "faiss_default_threads": default_threads, "faiss": faiss.__version__,
               "platform": platform.platform(), "python": platform.python_version()}
    print(f"machine: {machine}", flush=True)

    started = time.perf_counter()
    corpus, queries = synthetic_data(args.n, args.queries, args.dim, args.clusters, args.spread, args.seed)
    data_s = time.perf_counter() - started
    flat, _, flat_build_s = build("flat", corpus, hnsw)
    print(f"data {data_s:.1f} s, flat build {flat_build_s:.1f} s; building hnsw ...", flush=True)
    graph, params, hnsw_build_s = build("hnsw", corpus, hnsw)
    print(f"hnsw build {hnsw_build_s:.1f} s ({default_threads} threads)", flush=True)
    _, exact = flat.search(queries, args.k)

    rows = [measure("flat", flat, queries, exact, args.k, t, None) for t in thread_counts]
    for ef in ef_values:
        set_faiss_search_params(graph, "hnsw", {**params, "ef_search": ef})
        rows += [measure("hnsw", graph, queries, exact, args.k, t, ef) for t in thread_counts]
    faiss.omp_set_num_threads(default_threads)
    for r in rows:
        print(asdict(r), flush=True)
    print()
    print(f"{args.n} vectors x {args.dim} dims, {args.clusters} Gaussian clusters, spread {args.spread}; "
          f"{args.queries} queries, k={args.k}; HNSW M={args.m}, efConstruction={args.ef_construction}; "
          f"build: flat {flat_build_s:.1f} s, hnsw {hnsw_build_s:.1f} s ({default_threads} threads)")
    print(markdown_table(rows))
    common.save(args.out, {
            "command": [Path(sys.executable).name, *sys.argv], "machine": machine,
            "data": {"n": args.n, "queries": args.queries, "dim": args.dim, "clusters": args.clusters,
                     "spread": args.spread, "seed": args.seed, "kind": "mixture of Gaussians, L2-normalised"},
            "hnsw_params": {"M": args.m, "ef_construction": args.ef_construction},
            "k": args.k, "data_s": round(data_s, 1), "flat_build_s": round(flat_build_s, 2),
            "hnsw_build_s": round(hnsw_build_s, 1), "results": [asdict(r) for r in rows]})


if __name__ == "__main__":
    main()
