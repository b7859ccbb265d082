"""Peak memory and step time of cached MNRL (GradCache) versus plain MNRL as the batch grows.

    python bench/loss_memory.py --batches 64,256,1024 --steps 3 --out out/loss_memory.json

Each (loss, batch) runs `koembed train` on the bundled MiniLM in a fresh process, on synthetic Korean pairs
(random words from the bundled sample, query 8 words, passage 40 words, max length 128 tokens), fp32,
mini-batch 32 for the cached loss. Peak RSS is the process's ru_maxrss; step time is the mean of the steps
after the first (which includes warm-up).
"""

from __future__ import annotations

import json
import random
import resource
import sys
import tempfile
import time
from pathlib import Path

import common


def write_pairs(path: Path, n: int, seed: int = 0) -> None:
    from koembed.data import load_retrieval_set

    vocab = sorted({w for t in load_retrieval_set().corpus.values() for w in t.split()})
    rng = random.Random(seed)
    with path.open("w", encoding="utf-8") as handle:
        for _ in range(n):
            handle.write(json.dumps({"query": " ".join(rng.choices(vocab, k=8)),
                                     "positive": " ".join(rng.choices(vocab, k=40))}, ensure_ascii=False) + "\n")


def run_one(loss: str, batch: int, steps: int, max_seq_length: int) -> dict:
    from transformers import TrainerCallback

    from koembed.training import load_config, train

    work = Path(tempfile.mkdtemp())
    pairs = work / "pairs.jsonl"
    write_pairs(pairs, batch * steps)
    config = work / "c.yaml"
    config.write_text(json.dumps({
        "model": {"base": "minilm", "max_seq_length": max_seq_length},
        "data": {"train": [{"type": "pairs", "path": str(pairs)}]},
        "loss": {"name": loss, "mini_batch_size": 32},
        "train": {"batch_size": batch, "max_steps": steps, "save_steps": 10**6, "logging_steps": 10**6,
                  "precision": "fp32"},
        "output_dir": str(work / "out")}), encoding="utf-8")
    stamps: list[float] = []

    class Timer(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            stamps.append(time.perf_counter())

    start = time.perf_counter()
    train(load_config(config), show_progress=False, report=lambda _: None, callbacks=[Timer()])
    times = [b - a for a, b in zip([start] + stamps, stamps)]
    return {"loss": loss, "batch": batch, "steps": steps, "max_seq_length": max_seq_length,
            "first_step_s": round(times[0], 1), "step_s": round(sum(times[1:]) / max(1, len(times) - 1), 1),
            "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main() -> None:
    parser = common.isolating(common.parser(__doc__))
    parser.add_argument("--batches", type=common.int_list, default="64,256,1024")
    parser.add_argument("--losses", default="mnrl,cached_mnrl")
    parser.add_argument("--steps", type=int, default=3)
    parser.add_argument("--max-seq-length", type=int, default=128)
    args = parser.parse_args()
    if args.one:
        loss, batch = args.one.split(":")
        print(json.dumps(run_one(loss, int(batch), args.steps, args.max_seq_length)))
        return
    rows = []
    for batch in args.batches:
        for loss in args.losses.split(","):
            cmd = [sys.executable, __file__, "--steps", str(args.steps), "--max-seq-length", str(args.max_seq_length),
                   "--one", f"{loss}:{batch}"]
            rows.append(common.isolated(cmd, {"loss": loss, "batch": batch}))  # killed for memory: recorded
            print(json.dumps(rows[-1]), flush=True)
    common.save(args.out, rows)


if __name__ == "__main__":
    main()
