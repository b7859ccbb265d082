"""Encoding speed of a static model against koembed's fastest MiniLM setting on this CPU (torch bf16), interleaved.

    python bench/static_speed.py --out out/static_speed.json

Texts: the 961 distinct paragraphs of KorQuAD 1.0 dev (mean 541 characters). Settings, each through koembed's
``encode`` (what bench, index and encode run): the bundled MiniLM in bf16 at batch 32 (the fastest MiniLM setting
measured in docs/BENCHMARKS.md; 1.5x its fp32 here too), the static model (encoded a whole chunk of 2,048 texts per
forward pass), with the Rust tokenizer's own threads off (``TOKENIZERS_PARALLELISM=false``, what the koembed CLI
sets) and on. Rounds run the settings in turn
(A, B, C, A, B, C...), so a neighbour's job on a shared machine slows all of them alike; the static settings encode
the paragraphs ``--static-loops`` times per round so that each timing lasts long enough to measure. Reported: the
median passages per second over rounds (wall clock) and the CPU seconds per 1,000 passages (user + system of this
process, all threads), whose ratio is not disturbed by other processes waiting for the same cores.
"""

from __future__ import annotations

import json
import os
import statistics
import time

import common


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--static", default="static-ko")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--static-loops", type=int, default=10)
    args = parser.parse_args()

    from koembed.data import load_retrieval_set
    from koembed.models import encode, load_model

    texts = list(load_retrieval_set(common.KORQUAD).corpus.values())
    minilm = load_model("minilm", precision="bf16")
    static = load_model(args.static)
    settings = {
        "MiniLM torch bf16, batch 32": (minilm, 32, 1, "false"),
        "static, tokenizer threads off": (static, 32, args.static_loops, "false"),
        "static, tokenizer threads on": (static, 32, args.static_loops, "true"),
    }
    for model, batch, _, _ in settings.values():
        encode(model, texts[:64], batch_size=batch, show_progress=False)  # warm-up
    timings: dict[str, list[tuple[float, float, int]]] = {name: [] for name in settings}
    for round_ in range(args.rounds):
        for name, (model, batch, loops, parallel) in settings.items():
            os.environ["TOKENIZERS_PARALLELISM"] = parallel
            wall, cpu = time.perf_counter(), time.process_time()
            for _ in range(loops):
                encode(model, texts, batch_size=batch, show_progress=False)
            timings[name].append((time.perf_counter() - wall, time.process_time() - cpu, loops * len(texts)))
            print(json.dumps({"round": round_, "setting": name, "wall_s": round(timings[name][-1][0], 3),
                              "cpu_s": round(timings[name][-1][1], 3)}), flush=True)
    rows = []
    for name, runs in timings.items():
        rows.append({"setting": name, "passages_per_s": round(statistics.median(n / w for w, _, n in runs), 1),
                     "cpu_s_per_1000": round(statistics.median(1000 * c / n for _, c, n in runs), 3)})
    base = rows[0]
    for row in rows:
        row["speed_vs_minilm_bf16"] = round(row["passages_per_s"] / base["passages_per_s"], 1)
        row["cpu_vs_minilm_bf16"] = round(base["cpu_s_per_1000"] / row["cpu_s_per_1000"], 1)
    common.save(args.out, {"texts": len(texts), "rounds": args.rounds, "rows": rows, "timings": timings,
                           "cores": os.cpu_count()})
    common.print_markdown(["setting", "passages/s", "vs MiniLM bf16", "CPU s / 1,000 passages", "CPU ratio"],
                          [[r["setting"], f"{r['passages_per_s']:.1f}", f"{r['speed_vs_minilm_bf16']}x",
                            f"{r['cpu_s_per_1000']:.3f}", f"{r['cpu_vs_minilm_bf16']}x"] for r in rows])

if __name__ == "__main__":
    main()
