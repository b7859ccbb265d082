"""Phrase-aware Korean BM25: each lexical field alone, fields mixed in one bag, and weighted field combinations
fitted on development sets, then reported on held-out sets.

    python bench/lexical_fields.py --out out/lexical_fields.json

Development (fitting) sets: KorQuAD 1.0 dev, the 100 train-side articles of the fixed title split; MS MARCO-ko,
the train half of the queries (SHA-256 of the ids) over all positives. Held-out sets: KorQuAD's 40 test-side
articles, MS MARCO-ko's test half, the bundled sample. Nothing about a held-out set is used for fitting.

Fitting (koembed.evaluation.tuning.fit_weights): for each per-query normalisation (none, max, z), a grid of weights for
the bigram, pair and char fields with the unigram weight fixed at 1 (a ranking does not change when all weights
are scaled), each dev query's candidates being the union of every field's top 100. The objective is the
worst-off dev set's ndcg@10 gain over unigram BM25 (then the mean gain): a combination must help on paraphrased,
machine-translated queries (MS MARCO-ko) as well as on queries written from the passage (KorQuAD), not trade
one for the other. Raw weighted sums of the fields' BM25 scores are kept unless a per-query normalisation beats
them on that objective by more than 0.002 ndcg@10 (about 8 dev queries): a raw sum is what a search engine
computes in one pass (Lucene boosts, one Qdrant sparse vector with field-prefixed terms), a normalisation needs
every passage's score first. Every fitted combination is then run as a real retriever on every set.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import common

from koembed.data import load_retrieval_set
from koembed.evaluation.runner import score_run
from koembed.evaluation.tuning import fit_weights, lexical_problem
from koembed.lexical import FIELDS, BM25Retriever, LexicalConfig
from koembed.lexical.fields import bigrams

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KORQUAD = SHARED / "korquad-v1-dev" / "KorQuAD_v1.0_dev.json"
MSMARCO = SHARED / "msmarco-ko" / "msmarco_kor.json"
DEV = {"korquad-train": (KORQUAD, "train"), "msmarco-ko-train": (MSMARCO, "train")}
HELD_OUT = {"korquad-test": (KORQUAD, "test"), "msmarco-ko-test": (MSMARCO, "test"), "sample": (None, None)}
METRICS = ("accuracy@1", "ndcg@10", "mrr@10", "recall@10")
RAW_MARGIN = 0.002


class OneBag(BM25Retriever):
    """Unigrams and adjacent-morpheme bigrams mixed in one field (one IDF, one length): the trap."""

    def analyse(self, texts):
        return [tokens + bigrams(tokens) for tokens in super().analyse(texts)]


def evaluate(rs, config: LexicalConfig | None) -> dict:
    """IR metrics of BM25 with ``config`` (None: the one-bag variant) on ``rs``, and its count of top-1 hits."""
    start = time.perf_counter()
    bm25 = OneBag(show_progress=False) if config is None else BM25Retriever(config, show_progress=False)
    bm25.fit(rs.doc_ids, list(rs.corpus.values()))
    hits = dict(zip(rs.query_ids, bm25.search([rs.queries[q] for q in rs.query_ids], 100)))
    ir, _ = score_run(rs, hits, ())
    top1 = sum(bool(hits[q]) and hits[q][0][0] in rs.relevant_ids(q) for q in rs.query_ids)
    seconds = round(time.perf_counter() - start, 1)
    return {**{m: round(ir[m], 4) for m in METRICS}, "top1_hits": top1, "seconds": seconds}


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--normalizations", default="none,max,z")
    parser.add_argument("--fields", default=",".join(FIELDS), help="the fields to weigh (the first is fixed at 1)")
    parser.add_argument("--only-fitted", action="store_true", help="evaluate only the fitted combinations")
    args = parser.parse_args()
    fields = tuple(args.fields.split(","))
    sets = {name: load_retrieval_set(path, split=split) if path else load_retrieval_set()
            for name, (path, split) in {**DEV, **HELD_OUT}.items()}
    every_field = LexicalConfig({f: 1.0 for f in fields})
    started = time.perf_counter()
    problems = {name: lexical_problem(sets[name], every_field) for name in DEV}
    print(f"dev candidate scores: {time.perf_counter() - started:.0f} s", flush=True)
    fits = {}
    for normalization in args.normalizations.split(","):
        fit = fit_weights(list(problems.values()), every_field.fields, normalization)
        fits[normalization] = fit
        print(json.dumps({"normalization": normalization, **fit}, ensure_ascii=False), flush=True)
    # Raw sums unless a per-query normalisation earns its cost by more than RAW_MARGIN (about 8 dev queries).
    best = max(fits.values(), key=lambda f: (f["objective"], f["mean_gain"]))
    if "none" in fits and best["objective"] - fits["none"]["objective"] <= RAW_MARGIN:
        best = fits["none"]
    chosen = LexicalConfig(best["weights"], best["scale"])
    variants = {"unigram (bm25)": LexicalConfig(), "unigram+bigram in one bag": None,
                "bigram": LexicalConfig({"bigram": 1.0}),
                "pair": LexicalConfig({"pair": 1.0}), "char (bm25-char)": LexicalConfig({"char": 1.0}),
                "unigram+bigram, equal, z": LexicalConfig({"unigram": 1.0, "bigram": 1.0}, "z"),
                "unigram+char, equal, z": LexicalConfig({"unigram": 1.0, "char": 1.0}, "z"),
                **{f"fitted ({n})" + (" = bm25-phrase" if fit is best else ""): LexicalConfig(fit["weights"], n)
                   for n, fit in fits.items()}}
    if args.only_fitted:
        variants = {k: v for k, v in variants.items() if k.startswith("fitted")}
    rows = []
    for name, rs in sets.items():
        for label, config in variants.items():
            row = {"set": name, "variant": label, **evaluate(rs, config)}
            rows.append(row)
            print(json.dumps(row, ensure_ascii=False), flush=True)
    result = {"fits": fits, "chosen": chosen.to_dict(), "rows": rows}
    common.save(args.out, result)
    common.print_markdown(["set", "variant", "acc@1", "ndcg@10", "mrr@10", "top-1 hits"],
                          [[r[k] for k in ("set", "variant", "accuracy@1", "ndcg@10", "mrr@10", "top1_hits")]
                           for r in rows])


if __name__ == "__main__":
    main()
