"""Kiwi's analysis speed per model type and worker count, on long and short Korean passages, with the quality
(bm25-phrase accuracy@1) of each model type, and what koembed's Ray engine adds.

    python bench/kiwi_speed.py --out out/kiwi_speed.json

Model types: every one kiwipiepy accepts (``none``, ``largest``, ``knlm``, ``sbg``, ``cong``, ``cong-global``) is
tried; one whose model files the installed kiwipiepy_model does not ship is reported as unavailable, and ``none``
/ ``largest`` are reported as the type they resolve to. Workers: ``Kiwi(num_workers=N)`` for each of
``--workers`` (-1 = every core, koembed's setting). Each (type, workers) runs in a fresh process: ``load_s`` =
constructing Kiwi and analysing one sentence (Kiwi loads its model lazily), then ``--long`` KorQuAD 1.0 dev
paragraphs (mean ~540 characters) and ``--short`` MS MARCO-ko passages (mean ~180) are analysed with
``Kiwi.tokenize`` (koembed's call): passages per wall second, and passages per CPU second (process CPU time, every
thread: the per-core speed, steady on a shared machine where wall time is not).

Quality, per available model type (fresh process each): koembed's ``bm25-phrase`` (Kiwi at that model type) on
KorQuAD's 40 held-out articles and MS MARCO-ko's test half, accuracy@1 and ndcg@10. Ray: koembed's
``tokenize_ray`` (``index build --engine ray``) with ``--ray-workers`` actors against the local KiwiTokenizer on
the same short passages, wall time including Ray's start, in fresh processes.
"""

from __future__ import annotations

import json
import sys
import time
import warnings

import common

TYPES = ("none", "largest", "knlm", "sbg", "cong", "cong-global")


def _kiwi(model_type: str, workers: int):
    from kiwipiepy import Kiwi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # knlm/sbg: "excluded from the default model files"
        return Kiwi(model_type=model_type, num_workers=workers)


def texts(n_long: int, n_short: int) -> tuple[list[str], list[str]]:
    """The first ``n_long`` distinct KorQuAD dev paragraphs and ``n_short`` MS MARCO-ko passages, in file order."""
    from koembed.data import load_retrieval_set

    long = list(load_retrieval_set(common.KORQUAD).corpus.values())[:n_long]
    short = list(load_retrieval_set(common.MSMARCO).corpus.values())[:n_short]
    return long, short


def timed(analyse, batch: list[str]) -> dict[str, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    analyse(batch)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return {"passages": len(batch), "per_s": round(len(batch) / wall, 1), "per_cpu_s": round(len(batch) / cpu, 1)}


def one_speed(model_type: str, workers: int, n_long: int, n_short: int) -> dict:
    long, short = texts(n_long, n_short)
    start = time.perf_counter()
    try:
        kiwi = _kiwi(model_type, workers)
        kiwi.tokenize("전세 보증금을 어떻게 돌려받나요?")
    except OSError as exc:
        return {"model_type": model_type, "workers": workers, "unavailable": str(exc)}
    load_s = round(time.perf_counter() - start, 2)

    def analyse(batch):
        return list(kiwi.tokenize(batch))

    return {"model_type": model_type, "resolved": kiwi.model_type, "workers": workers, "load_s": load_s,
            "long": timed(analyse, long), "short": timed(analyse, short)}


def one_quality(model_type: str) -> dict:
    from koembed.evaluation.runner import run_bench
    from koembed.lexical import kiwi as kiwi_module

    kiwi_module._kiwi = lambda workers: _kiwi(model_type, workers)  # every KiwiTokenizer of this process
    out = {"model_type": model_type}
    for name, rs in common.load_sets({k: common.HELD_OUT_SETS[k] for k in ("korquad-test", "msmarco-ko-test")}
                                     ).items():
        ir = run_bench(rs, ["bm25-phrase"], top_k=(10,))[0].ir
        out[name] = {"accuracy@1": round(ir["accuracy@1"], 4), "ndcg@10": round(ir["ndcg@10"], 4)}
    return out


def one_ray(engine: str, workers: int, n_short: int) -> dict:
    _, short = texts(0, n_short)
    wall = time.perf_counter()
    if engine == "ray":
        from koembed.encoding.ray_engine import RayOptions, tokenize_ray

        tokens = tokenize_ray(short, RayOptions(None, workers), show_progress=False)
    else:
        from koembed.lexical import KiwiTokenizer

        tokens = KiwiTokenizer()(short)
    wall = time.perf_counter() - wall
    return {"engine": engine, "workers": workers, "passages": len(short), "seconds": round(wall, 2),
            "per_s": round(len(short) / wall, 1), "tokens": sum(map(len, tokens))}


def main() -> None:
    parser = common.isolating(common.parser(__doc__))
    parser.add_argument("--types", default=",".join(TYPES))
    parser.add_argument("--workers", type=lambda t: [int(v) for v in t.split(",")], default=[1, 2, -1])
    parser.add_argument("--long", type=int, default=300, help="KorQuAD paragraphs timed")
    parser.add_argument("--short", type=int, default=2000, help="MS MARCO-ko passages timed")
    parser.add_argument("--ray-workers", type=int, default=2)
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    if args.one:
        kind, *rest = args.one.split(":")
        if kind == "speed":
            result = one_speed(rest[0], int(rest[1]), args.long, args.short)
        elif kind == "quality":
            result = one_quality(rest[0])
        else:
            result = one_ray(rest[0], int(rest[1]), args.short)
        print(json.dumps(result, ensure_ascii=False))
        return
    me = [sys.executable, __file__, "--long", str(args.long), "--short", str(args.short)]
    speed, quality, ray = [], [], []
    for model_type in args.types.split(","):
        for workers in args.workers:
            speed.append(common.isolated([*me, "--one", f"speed:{model_type}:{workers}"],
                                         {"model_type": model_type, "workers": workers}))
            print(json.dumps(speed[-1]), file=sys.stderr, flush=True)
            if "unavailable" in speed[-1]:
                break
    available = [s["model_type"] for s in speed if "resolved" in s and s["model_type"] == s["resolved"]]
    if not args.no_quality:
        for model_type in dict.fromkeys(available):
            quality.append(common.isolated([*me, "--one", f"quality:{model_type}"], {"model_type": model_type}))
            print(json.dumps(quality[-1]), file=sys.stderr, flush=True)
    if not args.no_ray:
        for engine, workers in (("local", 0), ("ray", args.ray_workers)):
            ray.append(common.isolated([*me, "--one", f"ray:{engine}:{workers}"], {"engine": engine}))
            print(json.dumps(ray[-1]), file=sys.stderr, flush=True)
    common.save(args.out, {"speed": speed, "quality": quality, "ray": ray})
    rows = []
    for s in speed:
        if "unavailable" in s or "error" in s:
            rows.append([s["model_type"], s["workers"], s.get("unavailable", s.get("error", ""))[:60], *[""] * 5])
            continue
        rows.append([f"{s['model_type']} ({s['resolved']})", s["workers"], s["load_s"], s["long"]["per_s"],
                     s["long"]["per_cpu_s"], s["short"]["per_s"], s["short"]["per_cpu_s"], ""])
    common.print_markdown(["model type", "workers", "load s", "long p/s", "long p/CPU-s", "short p/s",
                           "short p/CPU-s", ""], rows)
    if quality:
        common.print_markdown(["model type", "KorQuAD acc@1", "KorQuAD ndcg@10", "MS MARCO-ko acc@1",
                               "MS MARCO-ko ndcg@10"],
                              [[q["model_type"], *(q.get(n, {}).get(m, "") for n in ("korquad-test", "msmarco-ko-test")
                                                   for m in ("accuracy@1", "ndcg@10"))] for q in quality])
    if ray:
        common.print_markdown(["engine", "workers", "passages", "seconds", "p/s"],
                              [[r.get("engine"), r.get("workers", ""), r.get("passages", ""), r.get("seconds", ""),
                                r.get("per_s", r.get("error", ""))] for r in ray])


if __name__ == "__main__":
    main()
