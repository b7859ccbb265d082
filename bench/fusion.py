"""Hybrid fusion that never loses: fit a fusion of BM25 and a static model on development sets, report it on
held-out sets next to each part alone and the untuned fusions.

    python bench/fusion.py --out out/fusion.json                      # dense part: the bundled static-ko
    python bench/fusion.py --dense dense:out/static-ko-shared/final   # another model (see the caveat below)

Development (fitting) sets: KorQuAD 1.0 dev, the 100 train-side articles; MS MARCO-ko, the train half of the queries.
Held-out sets: KorQuAD's 40 test-side articles, MS MARCO-ko's test half, the bundled sample. For each lexical
retriever (``bm25``, ``bm25-phrase``) the fusion with the dense model is fitted exactly as ``koembed tune-fusion``
fits it (koembed.evaluation.tuning.fit_fusion: z-score, DBSF, min-max and RRF with k in 10..100, weights on a grid, objective
= the worst dev set's ndcg@10 gain over its best single retriever). The dense model must not have been trained on
the development sets (static-ko is trained on KorSTS, KorNLI and KLUE only): a model that has seen the dev queries
scores them too well, and the fit would give it too much weight.

Every row is a real retriever run (koembed.evaluation.runner.run_bench) on the held-out set; ``top-1 vs best part`` is the
difference in queries answered at rank 1 between the fusion and its best single part on that set (the goal: never
below -1).
"""

from __future__ import annotations

import json

import common

from koembed.evaluation.runner import run_bench
from koembed.evaluation.tuning import fit_fusion, fusion_problem
from koembed.ranking import FUSIONS, RRF_K
from koembed.retrieval.specs import hybrid_spec

DEV, HELD_OUT = common.DEV_SETS, common.HELD_OUT_SETS
GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)  # koembed tune-fusion's default grid
SCALES = [(f, k) for f in FUSIONS for k in ((10, 20, 40, 60, 100) if f == "rrf" else (RRF_K,))]
METRICS = ("accuracy@1", "ndcg@10", "mrr@10", "recall@10")


def top1(rs, hits) -> int:
    return sum(bool(hits[q]) and hits[q][0][0] in rs.relevant_ids(q) for q in rs.query_ids)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--dense", default="dense:static-ko")
    parser.add_argument("--lexical", default="bm25,bm25-phrase")
    args = parser.parse_args()
    lexical = args.lexical.split(",")
    sets = common.load_sets({**DEV, **HELD_OUT})
    quiet = common_options()
    dev_runs = {name: {r.retriever: r.hits for r in run_bench(sets[name], [*lexical, args.dense], (1,), **quiet)}
                for name in DEV}
    fits, specs = {}, {}
    for lex in lexical:
        problems = [fusion_problem(sets[name], {s: dev_runs[name][s] for s in (lex, args.dense)}, SCALES)
                    for name in DEV]
        fit = fit_fusion(problems, SCALES, GRID)
        weights = [fit["weights"].get(s, 0.0) for s in (lex, args.dense)]
        specs[lex] = (hybrid_spec([lex, args.dense], fit["fusion"], weights, fit["rrf_k"])
                      if all(w > 0 for w in weights) else lex)
        fits[lex] = fit
        print(json.dumps({"lexical": lex, "spec": specs[lex], **{k: fit[k] for k in ("objective", "mean_gain", "dev",
                                                                                   "all")}}), flush=True)
    rows = []
    for name in HELD_OUT:
        rs = sets[name]
        untuned = [f"hybrid:{lex}+{args.dense}" for lex in lexical] + [f"hybrid-cc:{lex}+{args.dense}" for lex in lexical]
        results = {r.retriever: r for r in run_bench(rs, [*lexical, args.dense, *specs.values(), *untuned], (1,),
                                                     **quiet)}
        singles = {s: top1(rs, results[s].hits) for s in [*lexical, args.dense]}
        for spec, result in results.items():
            parts = [p for p in singles if p != spec and p in spec.split(":", 1)[-1].split("+")]
            best_part = max((singles[p] for p in parts), default=None)
            hits = top1(rs, result.hits)
            rows.append({"set": name, "retriever": spec, **{m: round(result.ir[m], 4) for m in METRICS},
                         "top1_hits": hits, "top1_vs_best_part": None if best_part is None else hits - best_part})
            print(json.dumps(rows[-1]), flush=True)
    common.save(args.out, {"dense": args.dense, "specs": specs, "fits": fits, "rows": rows})
    common.print_markdown(["set", "retriever", "acc@1", "ndcg@10", "top-1 hits", "vs best part"],
                          [[r["set"], f"`{r['retriever']}`", r["accuracy@1"], r["ndcg@10"], r["top1_hits"],
                            "" if r["top1_vs_best_part"] is None else f"{r['top1_vs_best_part']:+d}"] for r in rows])

def common_options() -> dict:
    from koembed.models import EncodeOptions

    return {"options": EncodeOptions(batch_size=256, show_progress=False)}


if __name__ == "__main__":
    main()
