"""BM25 top-k with MaxScore pruning against scoring every posting, in one process, on the same loaded index.

    python bench/bm25_pruning.py --index /tmp/w/peers-opt/synthetic-1m/bm25-phrase/index \
        --queries /tmp/w/peers-opt/synthetic-1m/bm25-phrase/queries.json
    python bench/bm25_pruning.py --sets korquad-test,msmarco-ko-test      # builds a bm25-phrase index of each

``--queries``: a JSON list of ``[id, text]`` (what ``bench/peers.py`` writes). ``--sets``: held-out sets from
``../shared``, indexed here with ``--model static-ko`` (the dense half is not searched). For each query both paths
run back to back, alternating which goes first (``Index.bm25_retriever.search`` with ``prune=True`` and
``prune=False``): wall latency per path (p50, p90, p99, mean), how many queries got identical hits and
scores, and the ratio of the medians. The queries' analysis (the index's analyzer) is in both paths' times.
"""

from __future__ import annotations

import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import common


def measure(index_dir: Path, queries: list[str], k: int) -> dict[str, Any]:
    from koembed.index import load_index

    index = load_index(index_dir)
    index.search(queries[:1], k, mode="bm25")  # Kiwi's model and the stored fields' statistics
    bm25 = index.bm25_retriever
    if not bm25.prunes:
        raise SystemExit(f"{index_dir}: its lexical config does not prune (a normalization other than none)")
    times: dict[str, list[float]] = {"pruned": [], "every": []}
    same = 0
    for i, query in enumerate(queries):
        hits = {}
        for name in (("pruned", "every") if i % 2 else ("every", "pruned")):
            start = time.perf_counter()
            hits[name] = bm25.search([query], k, prune=name == "pruned")
            times[name].append(time.perf_counter() - start)
        same += hits["pruned"] == hits["every"]

    def stats(values: list[float]) -> dict[str, float]:
        ordered = sorted(values)
        at = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1e3
        return {"p50_ms": round(at(0.5), 2), "p90_ms": round(at(0.9), 2), "p99_ms": round(at(0.99), 2),
                "mean_ms": round(statistics.fmean(values) * 1e3, 2)}

    result = {"index": str(index_dir), "passages": len(index), "queries": len(queries), "k": k,
              "identical": same, "pruned": stats(times["pruned"]), "every": stats(times["every"])}
    result["p50_ratio"] = round(result["every"]["p50_ms"] / result["pruned"]["p50_ms"], 2)
    return result


def main() -> None:
    made = common.parser(__doc__)
    made.add_argument("--index", type=Path, help="a FAISS-store koembed index")
    made.add_argument("--queries", type=Path, help="JSON list of [id, text]")
    made.add_argument("--sets", default="", help="held-out sets to index and query instead: "
                      + ",".join(common.HELD_OUT_SETS))
    made.add_argument("-k", type=int, default=10)
    args = made.parse_args()
    results = []
    if args.index:
        queries = [text for _, text in json.loads(args.queries.read_text(encoding="utf-8"))]
        results.append(measure(args.index, queries, args.k))
    for name, rs in common.load_sets({n: common.HELD_OUT_SETS[n] for n in args.sets.split(",") if n}).items():
        from koembed.index import build_index

        with tempfile.TemporaryDirectory() as tmp:
            build_index("static-ko", list(rs.corpus), list(rs.corpus.values()), Path(tmp) / "idx")
            results.append({"set": name, **measure(Path(tmp) / "idx", list(rs.queries.values()), args.k)})
        print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    common.save(args.out, results)
    common.print_markdown(
        ["index", "passages", "queries", "identical", "pruned p50 / p99 ms", "every passage p50 / p99 ms", "ratio"],
        [[r.get("set", r["index"]), r["passages"], r["queries"], r["identical"],
          f"{r['pruned']['p50_ms']} / {r['pruned']['p99_ms']}", f"{r['every']['p50_ms']} / {r['every']['p99_ms']}",
          r["p50_ratio"]] for r in results])


if __name__ == "__main__":
    main()
