"""The CPU fine-tuning demonstration (main job, part two): Korean retrieval models trained on 2 CPU cores.

    python bench/cpu_finetune.py [--only minilm|static] [--out out/cpu_finetune.json]

MiniLM (``--config``, configs/minilm-ko-cpu.yaml): evaluates the bundled MiniLM on the held-out KorQuAD articles
(IR suite) and KorSTS test (Spearman), trains it (MS MARCO-ko pairs + the 100 training-side KorQuAD articles) and
evaluates the result the same way, both at the config's max_seq_length.

Static (``--static-config``, configs/static-ko-shared.yaml): trains a static model on every shared pair that is not
held out (KorQuAD train articles, MS MARCO-ko train half, the CC BY-SA sets) and evaluates it next to its untrained
baseline (the same learned tokenizer, random vectors: what bag-of-word-piece overlap gives without training) on the
held-out KorQuAD articles, MS MARCO-ko's test half, the bundled sample and KorSTS test. Training is timed in wall
clock and in CPU seconds (user + system of this process), since the machine may be shared.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import common

KEEP = ("accuracy@1", "accuracy@10", "ndcg@10", "mrr@10", "map@100")


def evaluate(model_name: str, rs, max_seq_length: int | None = None) -> dict[str, float]:
    from koembed.evaluation.runner import evaluate_model
    from koembed.models import EncodeOptions, ModelSpec

    ir = evaluate_model(rs, ModelSpec(model_name, max_seq_length=max_seq_length), EncodeOptions(show_progress=False))
    return {k: round(ir[f"cosine_{k}"], 4) for k in KEEP}


def with_korsts(model_name: str, metrics: dict[str, float], max_seq_length: int | None = None) -> dict[str, float]:
    from koembed.models import load_model

    return {**metrics, "korsts_spearman": round(common.korsts_spearman(load_model(model_name,
                                                                                 max_seq_length=max_seq_length)), 4)}


def print_table(before: dict[str, float], after: dict[str, float], labels: tuple[str, str]) -> None:
    common.print_markdown(["metric", *labels, "change"],
                          [[k, before[k], after[k], f"{after[k] - before[k]:+.4f}"] for k in before])


def minilm_run(config: str, overrides: list[str]) -> dict:
    from koembed.data import load_retrieval_set
    from koembed.training import load_config, train

    cfg = load_config(config, overrides)
    rs = load_retrieval_set(cfg.data.eval.path, split=cfg.data.eval.split)
    length = cfg.model.max_seq_length
    start = time.perf_counter()
    before = with_korsts(cfg.model.base, evaluate(cfg.model.base, rs, length), length)
    t_before = time.perf_counter() - start
    print("before:", json.dumps(before), flush=True)
    summary = train(cfg, resume=Path(cfg.output_dir).exists())
    t_train = time.perf_counter() - start - t_before
    after = with_korsts(summary["final_model"], evaluate(summary["final_model"], rs, length), length)
    total = time.perf_counter() - start
    print("after:", json.dumps(after), flush=True)
    print_table(before, after, ("before", "after"))
    print(f"total {total / 60:.1f} min (train {t_train / 60:.1f} min)")
    return {"config": config, "overrides": overrides, "examples": summary["examples"],
            "steps": summary["global_step"], "before": before, "after": after,
            "seconds": {"evaluate_before": round(t_before, 1), "train": round(t_train, 1), "total": round(total, 1)}}


def static_run(config: str, overrides: list[str]) -> dict:
    from koembed.models import load_model
    from koembed.models.static import untrained_like
    from koembed.training import load_config, train

    cfg = load_config(config, overrides)
    if Path(cfg.output_dir).exists():
        raise SystemExit(f"{cfg.output_dir} exists: remove it, so that the training time is measured")
    wall, cpu = time.perf_counter(), time.process_time()
    summary = train(cfg, show_progress=False)
    seconds = {"train_wall": round(time.perf_counter() - wall, 1), "train_cpu": round(time.process_time() - cpu, 1)}
    print(json.dumps({"static training": seconds, "examples": summary["examples"]}), flush=True)
    trained = summary["final_model"]
    with tempfile.TemporaryDirectory() as scratch:
        untrained = str(Path(scratch) / "untrained")
        untrained_like(load_model(trained), seed=cfg.train.seed).save(untrained)
        sets = common.load_sets(common.HELD_OUT_SETS)
        rows = {label: with_korsts(name, {f"{set_name} {k}": v for set_name, rs in sets.items()
                                          for k, v in evaluate(name, rs).items() if k in ("accuracy@1", "ndcg@10")})
                for label, name in (("untrained", untrained), ("trained", trained))}
    print_table(rows["untrained"], rows["trained"], ("untrained (same tokenizer, random vectors)", "trained"))
    return {"config": config, "overrides": overrides, "examples": summary["examples"], "steps": summary["global_step"],
            "model": trained, "seconds": seconds, **rows}


def main() -> None:
    parser = common.parser(__doc__, out=Path("out/cpu_finetune.json"))
    parser.add_argument("--config", default="configs/minilm-ko-cpu.yaml")
    parser.add_argument("--static-config", default="configs/static-ko-shared.yaml")
    parser.add_argument("--only", choices=["minilm", "static"], help="run one part (default: both)")
    parser.add_argument("--set", action="append", default=[], help="MiniLM config override, as koembed train --set")
    args = parser.parse_args()
    result = {}
    if args.only in (None, "static"):
        result["static"] = static_run(args.static_config, [])
    if args.only in (None, "minilm"):
        result["minilm"] = minilm_run(args.config, args.set)
    common.save(args.out, result)


if __name__ == "__main__":
    main()
