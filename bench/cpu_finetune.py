"""The CPU fine-tuning demonstration (main job, part two): bundled MiniLM -> Korean retrieval model.

    python bench/cpu_finetune.py [--config configs/minilm-ko-cpu.yaml] [--out out/cpu_finetune.json]

1. evaluates the untrained model on the held-out KorQuAD articles (IR suite) and KorSTS test (Spearman),
2. trains with the config (MS MARCO-ko pairs + the 100 training-side KorQuAD articles),
3. evaluates the trained model the same way, and prints a before/after table with the wall times.
Both evaluations use the config's max_seq_length, so before and after see the same text.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import common

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def korsts_spearman(model_name: str, max_seq_length: int) -> float:
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    from koembed.data.sts import read_sts
    from koembed.models import load_model

    s1, s2, scores = read_sts(SHARED / "korsts" / "sts-test.tsv")
    evaluator = EmbeddingSimilarityEvaluator(s1, s2, [s / 5 for s in scores], name="korsts-test",
                                             show_progress_bar=False, write_csv=False)
    result = evaluator(load_model(model_name, max_seq_length=max_seq_length))
    return float(result["korsts-test_spearman_cosine"])


def evaluate(model_name: str, cfg) -> dict[str, float]:
    from koembed.bench import evaluate_model
    from koembed.data import load_retrieval_set
    from koembed.models import EncodeOptions, ModelSpec

    rs = load_retrieval_set(cfg.data.eval.path, split=cfg.data.eval.split)
    ir = evaluate_model(rs, ModelSpec(model_name, max_seq_length=cfg.model.max_seq_length),
                        EncodeOptions(show_progress=False))
    keep = ("accuracy@1", "accuracy@10", "ndcg@10", "mrr@10", "map@100")
    out = {k: ir[f"cosine_{k}"] for k in keep}
    out["korsts_spearman"] = korsts_spearman(model_name, cfg.model.max_seq_length)
    return out


def main() -> None:
    parser = common.parser(__doc__, out=Path("out/cpu_finetune.json"))
    parser.add_argument("--config", default="configs/minilm-ko-cpu.yaml")
    parser.add_argument("--set", action="append", default=[], help="config override, as koembed train --set")
    args = parser.parse_args()

    from koembed.training import load_config, train

    cfg = load_config(args.config, args.set)
    start = time.perf_counter()
    before = evaluate(cfg.model.base, cfg)
    t_before = time.perf_counter() - start
    print("before:", json.dumps(before), flush=True)
    summary = train(cfg, resume=Path(cfg.output_dir).exists())
    t_train = time.perf_counter() - start - t_before
    after = evaluate(summary["final_model"], cfg)
    total = time.perf_counter() - start
    print("after:", json.dumps(after), flush=True)
    result = {"config": args.config, "overrides": args.set, "examples": summary["examples"],
              "steps": summary["global_step"], "before": before, "after": after,
              "seconds": {"evaluate_before": round(t_before, 1), "train": round(t_train, 1), "total": round(total, 1)}}
    common.save(args.out, result)
    print("| metric | before | after | change |\n|---|---|---|---|")
    for k in before:
        print(f"| {k} | {before[k]:.4f} | {after[k]:.4f} | {after[k] - before[k]:+.4f} |")
    print(f"total {total / 60:.1f} min (train {t_train / 60:.1f} min)")


if __name__ == "__main__":
    main()
