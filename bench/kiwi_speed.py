"""Kiwi's analysis speed per model type, constructor option and worker count, on long and short Korean passages,
with the quality (bm25-phrase accuracy@1) of each, and what koembed's Ray engine adds.

    python bench/kiwi_speed.py --out out/kiwi_speed.json
    python bench/kiwi_speed.py --types cong --workers -1 --options default,no-multi,no-typo,no-both --repeats 5 \
        --no-ray --out out/kiwi_options.json

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

Options (``--options``, names of :data:`OPTIONS`): Kiwi's constructor switches, each timed as above (``init_s`` is
``Kiwi(...)`` alone, ``load_s`` adds the first analysis of one short query: a fresh ``koembed search``'s Kiwi cost),
``--repeats`` times interleaved; quality is then measured on the development sets too, with ``bm25`` next to
``bm25-phrase``, and a ``diff`` run per option counts the passages and queries of KorQuAD dev and MS MARCO-ko whose
koembed token lists (``KiwiTokenizer``) differ from the default's, with the most frequent changes and examples.
"""

from __future__ import annotations

import difflib
import json
import statistics
import sys
import time
import warnings

import common

TYPES = ("none", "largest", "knlm", "sbg", "cong", "cong-global")
# Kiwi constructor options compared (koembed's is ``default``): the multi-word proper-noun (WikiData) and typo
# dictionaries are loaded by default and cost start time.
OPTIONS: dict[str, dict[str, bool]] = {
    "default": {}, "no-multi": {"load_multi_dict": False}, "no-typo": {"load_typo_dict": False},
    "no-both": {"load_multi_dict": False, "load_typo_dict": False}}
QUERY = "전세 보증금을 어떻게 돌려받나요?"


def _kiwi(model_type: str, workers: int, option: str = "default"):
    from kiwipiepy import Kiwi

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # knlm/sbg: "excluded from the default model files"
        return Kiwi(model_type=model_type, num_workers=workers, **OPTIONS[option])


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


def one_speed(model_type: str, workers: int, n_long: int, n_short: int, option: str = "default") -> dict:
    long, short = texts(n_long, n_short)
    what = {"model_type": model_type, "workers": workers, "option": option}
    start = time.perf_counter()
    try:
        kiwi = _kiwi(model_type, workers, option)
        init_s = round(time.perf_counter() - start, 3)
        kiwi.tokenize(QUERY)
    except OSError as exc:
        return {**what, "unavailable": str(exc)}
    load_s = round(time.perf_counter() - start, 3)

    def analyse(batch):
        return list(kiwi.tokenize(batch))

    return {**what, "resolved": kiwi.model_type, "init_s": init_s, "load_s": load_s,
            "long": timed(analyse, long), "short": timed(analyse, short)}


def _patch_kiwi(model_type: str, option: str) -> None:
    """Make every KiwiTokenizer of this process use Kiwi at ``model_type`` with ``option``."""
    from koembed.lexical import kiwi as kiwi_module

    kiwi_module._kiwi = lambda workers: _kiwi(model_type, workers, option)


def one_quality(model_type: str, option: str = "default", dev: bool = False) -> dict:
    from koembed.evaluation.runner import run_bench

    _patch_kiwi(model_type, option)
    sets = {**(common.DEV_SETS if dev else {}),
            **{k: common.HELD_OUT_SETS[k] for k in ("korquad-test", "msmarco-ko-test")}}
    specs = ["bm25", "bm25-phrase"] if dev else ["bm25-phrase"]
    out: dict = {"model_type": model_type, "option": option}
    for name, rs in common.load_sets(sets).items():
        for result in run_bench(rs, specs, top_k=(10,)):
            key = name if result.retriever == "bm25-phrase" else f"{name} {result.retriever}"
            out[key] = {m: round(result.ir[m], 4) for m in ("accuracy@1", "ndcg@10")}
            if result.retriever == "bm25-phrase":  # which queries miss at rank 1: options compare query by query
                out[key]["misses@1"] = sorted(q for q, hits in result.hits.items()
                                              if not any(hits[:1] and hits[0][0] in g for g in rs.relevant[q]))
    return out


def one_diff(model_type: str, option: str, n_examples: int = 5) -> dict:
    """How many KorQuAD dev and MS MARCO-ko passages and queries get other koembed tokens with ``option`` than with
    the default, the most frequent changes (default tokens -> option's) and the first ``n_examples`` queries of each
    set whose tokens differ in a way not shown yet."""
    from collections import Counter

    from koembed.data import load_retrieval_set
    from koembed.lexical import KiwiTokenizer

    tokenizers = []
    for opt in ("default", option):
        tokenizer = KiwiTokenizer()
        tokenizer.kiwi = _kiwi(model_type, -1, opt)
        tokenizers.append(tokenizer)
    out: dict = {"model_type": model_type, "option": option}
    changes: Counter[str] = Counter()
    examples = []
    seen: set[str] = set()
    for name, path in (("korquad", common.KORQUAD), ("msmarco-ko", common.MSMARCO)):
        rs = load_retrieval_set(path)
        for kind, items in (("passages", list(rs.corpus.values())), ("queries", list(rs.queries.values()))):
            before, after = (tokenizer(items) for tokenizer in tokenizers)
            changed = 0
            for text, a, b in zip(items, before, after):
                if a == b:
                    continue
                changed += 1
                ops = [f"{' '.join(a[i1:i2])} -> {' '.join(b[j1:j2])}"
                       for op, i1, i2, j1, j2 in difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
                       if op != "equal"]
                changes.update(ops)
                if kind == "queries" and sum(e["set"] == name for e in examples) < n_examples and not set(ops) <= seen:
                    seen.update(ops)
                    examples.append({"set": name, "text": text, "default": a, option: b, "changes": ops})
            out[f"{name} {kind}"] = {"texts": len(items), "changed": changed}
    out["top_changes"] = changes.most_common(15)
    out["examples"] = examples
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
    parser.add_argument("--options", default="default", help=f"Kiwi options compared: {', '.join(OPTIONS)}")
    parser.add_argument("--repeats", type=int, default=1, help="speed runs per setting, interleaved")
    parser.add_argument("--no-quality", action="store_true")
    parser.add_argument("--no-ray", action="store_true")
    args = parser.parse_args()
    options = args.options.split(",")
    unknown = [o for o in options if o not in OPTIONS]
    if unknown:
        parser.error(f"--options: unknown {', '.join(unknown)} (known: {', '.join(OPTIONS)})")
    if args.one:
        kind, *rest = args.one.split(":")
        if kind == "speed":
            result = one_speed(rest[0], int(rest[1]), args.long, args.short, *rest[2:])
        elif kind == "quality":
            result = one_quality(rest[0], *rest[1:2], dev=len(rest) > 1)
        elif kind == "diff":
            result = one_diff(rest[0], rest[1])
        else:
            result = one_ray(rest[0], int(rest[1]), args.short)
        print(json.dumps(result, ensure_ascii=False))
        return
    me = [sys.executable, __file__, "--long", str(args.long), "--short", str(args.short)]
    speed, quality, ray, diff = [], [], [], []
    unavailable: set[str] = set()
    for _ in range(args.repeats):  # repeats interleaved: a burst of load on the shared machine hits every setting
        for model_type in args.types.split(","):
            for option in options:
                for workers in args.workers:
                    if model_type in unavailable:
                        break
                    what = {"model_type": model_type, "workers": workers, "option": option}
                    speed.append(common.isolated([*me, "--one", f"speed:{model_type}:{workers}:{option}"], what))
                    print(json.dumps(speed[-1]), file=sys.stderr, flush=True)
                    if "unavailable" in speed[-1]:
                        unavailable.add(model_type)
    available = [s["model_type"] for s in speed if "resolved" in s and s["model_type"] == s["resolved"]]
    if not args.no_quality:
        for model_type in dict.fromkeys(available):
            for option in options:
                one = f"quality:{model_type}" + (f":{option}" if options != ["default"] else "")
                quality.append(common.isolated([*me, "--one", one], {"model_type": model_type, "option": option}))
                print(json.dumps(quality[-1]), file=sys.stderr, flush=True)
                if option != "default":
                    diff.append(common.isolated([*me, "--one", f"diff:{model_type}:{option}"],
                                                {"model_type": model_type, "option": option}))
                    print(json.dumps(diff[-1], ensure_ascii=False), file=sys.stderr, flush=True)
    if not args.no_ray:
        for engine, workers in (("local", 0), ("ray", args.ray_workers)):
            ray.append(common.isolated([*me, "--one", f"ray:{engine}:{workers}"], {"engine": engine}))
            print(json.dumps(ray[-1]), file=sys.stderr, flush=True)
    common.save(args.out, {"speed": speed, "quality": quality, "diff": diff, "ray": ray})
    print_tables(speed, quality, diff)
    if ray:
        common.print_markdown(["engine", "workers", "passages", "seconds", "p/s"],
                              [[r.get("engine"), r.get("workers", ""), r.get("passages", ""), r.get("seconds", ""),
                                r.get("per_s", r.get("error", ""))] for r in ray])


def print_tables(speed: list[dict], quality: list[dict], diff: list[dict]) -> None:
    """The Markdown tables of docs/BENCHMARKS.md: per setting, the median (and min) over repeats."""
    groups: dict[tuple, list[dict]] = {}
    for s in speed:
        groups.setdefault((s["model_type"], s.get("option", "default"), s["workers"]), []).append(s)
    rows = []
    for (model_type, option, workers), runs in groups.items():
        ok = [s for s in runs if "resolved" in s]
        if not ok:
            rows.append([model_type, option, workers, (runs[0].get("unavailable") or runs[0].get("error", ""))[:60],
                         *[""] * 6])
            continue

        def med(get, digits: int = 1) -> str:
            return f"{statistics.median(get(s) for s in ok):.{digits}f}"

        rows.append([f"{model_type} ({ok[0]['resolved']})", option, workers, len(ok), med(lambda s: s["init_s"], 2),
                     f"{med(lambda s: s['load_s'], 2)} / {min(s['load_s'] for s in ok):.2f}",
                     med(lambda s: s["long"]["per_s"]), med(lambda s: s["long"]["per_cpu_s"]),
                     med(lambda s: s["short"]["per_s"]), med(lambda s: s["short"]["per_cpu_s"])])
    common.print_markdown(["model type", "option", "workers", "runs", "init s", "load s median / min", "long p/s",
                           "long p/CPU-s", "short p/s", "short p/CPU-s"], rows)
    if quality:
        names = [n for n in ("korquad-train", "msmarco-ko-train", "korquad-test", "msmarco-ko-test",
                             "korquad-train bm25", "msmarco-ko-train bm25", "korquad-test bm25",
                             "msmarco-ko-test bm25") if any(n in q for q in quality)]
        common.print_markdown(["model type", "option", *(f"{n} acc@1 / ndcg@10" for n in names)],
                              [[q["model_type"], q.get("option", "default"),
                                *(f"{q[n]['accuracy@1']:.4f} / {q[n]['ndcg@10']:.4f}" if n in q else q.get("error", "")
                                  for n in names)] for q in quality])
        base = next((q for q in quality if q.get("option", "default") == "default"), {})
        paired = [n for n in names if "misses@1" in base.get(n, {})]
        others = [q for q in quality if q is not base and all(n in q for n in paired)]
        if paired and others:
            print("\nbm25-phrase queries right at rank 1 that the default misses (+) / wrong that it gets right (-):")
            common.print_markdown(["option", *paired], [[q["option"], *(
                f"+{len(set(base[n]['misses@1']) - set(q[n]['misses@1']))} "
                f"-{len(set(q[n]['misses@1']) - set(base[n]['misses@1']))}" for n in paired)] for q in others])
    for d in diff:
        print(json.dumps(d, ensure_ascii=False, indent=1))


if __name__ == "__main__":
    main()
