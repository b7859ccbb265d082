"""The cost of koembed's two Korean analyzers (MeCab-ko and Kiwi), each in fresh processes, interleaved:

    python bench/analyzers.py --out out/analyzers.json --repeats 5

Per analyzer: ``start`` = a fresh Python process importing koembed's analyzer and analysing one short query, to its
tokens (what a search process pays before its first result; the interpreter's own start excluded, measured as
``python -c pass``); ``short`` = CPU and wall seconds to analyse MS MARCO-ko's 7,279 passages (one call, as an
index build makes it: Kiwi on its worker threads, MeCab-ko on a process per core), ``long`` = the 354 long
paragraphs of KorQuAD's held-out articles; and the peak RSS of the process that did both. Quality is measured by
``koembed bench`` (docs/BENCHMARKS.md, "Korean analysis v2").
"""

from __future__ import annotations

import json
import resource
import statistics
import subprocess
import sys
import time

import common

QUERY = "전세 보증금을 돌려받지 못하면 어떻게 하나요?"
ANALYZERS = ("mecab", "kiwi")


def _start(name: str) -> None:
    begin = time.perf_counter()
    from koembed.lexical import get_analyzer

    tokens = get_analyzer(name)([QUERY])[0]
    print(json.dumps({"start_s": time.perf_counter() - begin, "tokens": tokens}, ensure_ascii=False))


def _cost(name: str) -> None:
    from koembed.data import load_retrieval_set
    from koembed.lexical import get_analyzer

    analyzer = get_analyzer(name)
    analyzer([QUERY])
    out = {}
    for label, path, split in (("short", common.MSMARCO, None), ("long", common.KORQUAD, "test")):
        texts = list(load_retrieval_set(path, split=split).corpus.values())
        cpu, wall = _cpu_s(), time.perf_counter()
        tokens = analyzer(texts)
        out[label] = {"texts": len(texts), "wall_s": round(time.perf_counter() - wall, 3),
                      "cpu_s": round(_cpu_s() - cpu, 3), "tokens": sum(map(len, tokens))}
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(out))


def _cpu_s() -> float:
    """CPU seconds of this process and its finished children (MeCab-ko's pool)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _fresh(*args: str) -> tuple[float, dict]:
    begin = time.perf_counter()
    done = subprocess.run([sys.executable, *args], capture_output=True, text=True, check=True)
    return time.perf_counter() - begin, json.loads(done.stdout.strip().splitlines()[-1]) if done.stdout else {}


def main() -> None:
    made = common.isolating(common.parser(__doc__))
    made.add_argument("--repeats", type=int, default=5, help="fresh-process starts per analyzer (interleaved)")
    made.add_argument("--analyzer", choices=ANALYZERS)
    args = made.parse_args()
    if args.one:
        (_start if args.one == "start" else _cost)(args.analyzer)
        return
    python_s = statistics.median(_fresh("-c", "pass")[0] for _ in range(args.repeats))
    starts: dict[str, list[float]] = {a: [] for a in ANALYZERS}
    tokens = {}
    for _ in range(args.repeats):
        for name in ANALYZERS:
            wall, found = _fresh(__file__, "--one", "start", "--analyzer", name)
            starts[name].append(wall - python_s)
            tokens[name] = found["tokens"]
    results = {"python_start_s": round(python_s, 3)}
    for name in ANALYZERS:
        _, cost = _fresh(__file__, "--one", "cost", "--analyzer", name)
        results[name] = {"start_s": [round(s, 3) for s in starts[name]],
                         "start_median_s": round(statistics.median(starts[name]), 3), "query_tokens": tokens[name],
                         **cost}
        print(json.dumps({name: results[name]}, ensure_ascii=False), flush=True)
    common.save(args.out, results)


if __name__ == "__main__":
    main()
