"""Kiwi's CoNg morpheme embeddings as BM25 query expansion: does adding each query morpheme's nearest neighbours
(임산부 -> 임신부, 임부) help? An exploration; koembed keeps it only if it helps on held-out sets.

    python bench/kiwi_cong.py --out out/kiwi_cong.json

For every content morpheme of a query (nouns and verb/adjective stems, as koembed's BM25 keeps them), Kiwi's CoNg
model (``Kiwi(model_type='cong').most_similar_morphemes``) gives its ``--top-n`` nearest morphemes of the same
class with cosine at least ``--min-score``; they are scored as a second BM25 query over the same unigram index and
added with weight w: score = BM25(query) + w * BM25(expansions). (n, min score, w) are chosen on the development sets
(KorQuAD train articles, MS MARCO-ko train half) by the worst set's ndcg@10 gain over plain BM25, then reported on
the held-out sets (KorQuAD test articles, MS MARCO-ko test half, the sample).
"""

from __future__ import annotations

import functools
import itertools
import json
import time

import common
import numpy as np

from koembed.evaluation.runner import score_run
from koembed.lexical import BM25Retriever
from koembed.ranking import best_rows

DEV, HELD_OUT = common.DEV_SETS, common.HELD_OUT_SETS
TAGS = {"N": ("NNG", "NNP"), "V": ("VV", "VA")}
WEIGHTS = (0.05, 0.1, 0.2, 0.3, 0.5)


@functools.cache
def cong():
    from kiwipiepy import Kiwi

    return Kiwi(model_type="cong")


@functools.cache
def neighbours(token: str, top_n: int, min_score: float) -> tuple[str, ...]:
    """Nearest morphemes of ``form/CLASS`` (koembed's unigram tokens) of the same class, as unigram tokens."""
    form, _, cls = token.rpartition("/")
    found: list[str] = []
    for tag in TAGS.get(cls, ()):
        try:
            similar = cong().most_similar_morphemes((form, tag), top_n=top_n)
        except (ValueError, KeyError):
            continue
        found += [f"{m.form}/{cls}" for m in similar if m.score >= min_score and m.tag.split("-")[0] in TAGS[cls]
                  and m.form != form]
    return tuple(dict.fromkeys(found))[:top_n]


def score_arrays(rs, top_n: int, min_score: float):
    """Per query: BM25 scores of the query and of its expansions over the unigram index (corpus order)."""
    bm25 = BM25Retriever(show_progress=False)
    bm25.fit(rs.doc_ids, list(rs.corpus.values()))
    index = bm25._indexes["unigram"]
    queries = [rs.queries[q] for q in rs.query_ids]
    base, extra = [], []
    for tokens in bm25.analyse(queries):
        base.append(index.scores(tokens))
        expansions = [t for tok in tokens for t in neighbours(tok, top_n, min_score) if t not in tokens]
        extra.append(index.scores(expansions))
    return bm25, np.stack(base), np.stack(extra)


def run(rs, bm25, base, extra, weight: float) -> dict:
    hits = {}
    for qid, b, e in zip(rs.query_ids, base, extra):
        combined = b + weight * e
        rows = np.flatnonzero((b > 0) | (e > 0) if weight > 0 else b > 0)
        top = best_rows(combined[rows], bm25._rank, 100, rows=rows)
        hits[qid] = [(bm25._doc_ids[rows[j]], float(combined[rows[j]])) for j in top]
    ir, _ = score_run(rs, hits, ())
    top1 = sum(bool(hits[q]) and hits[q][0][0] in rs.relevant_ids(q) for q in rs.query_ids)
    return {"accuracy@1": round(ir["accuracy@1"], 4), "ndcg@10": round(ir["ndcg@10"], 4), "top1_hits": top1}


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--top-n", default="3,5")
    parser.add_argument("--min-score", default="0.7,0.8")
    args = parser.parse_args()
    sets = common.load_sets({**DEV, **HELD_OUT})
    start = time.perf_counter()
    cong()
    print(f"CoNg model loaded in {time.perf_counter() - start:.1f} s", flush=True)
    choices = list(itertools.product(common.int_list(args.top_n), [float(v) for v in args.min_score.split(",")]))
    dev = {}
    for top_n, min_score in choices:
        arrays = {name: score_arrays(sets[name], top_n, min_score) for name in DEV}
        plain = {name: run(sets[name], *arrays[name], 0.0)["ndcg@10"] for name in DEV}
        for weight in WEIGHTS:
            gains = {name: run(sets[name], *arrays[name], weight)["ndcg@10"] - plain[name] for name in DEV}
            dev[(top_n, min_score, weight)] = gains
            print(json.dumps({"top_n": top_n, "min_score": min_score, "weight": weight, "dev_gain": gains}),
                  flush=True)
    best = max(dev, key=lambda c: (round(min(dev[c].values()), 6), round(sum(dev[c].values()), 6)))
    top_n, min_score, weight = best
    print(json.dumps({"chosen": best, "dev_gain": dev[best]}), flush=True)
    rows = []
    for name in HELD_OUT:
        arrays = score_arrays(sets[name], top_n, min_score)
        for label, w in (("bm25", 0.0), (f"bm25 + CoNg expansion (n={top_n}, cos>={min_score}, w={weight})", weight)):
            rows.append({"set": name, "retriever": label, **run(sets[name], *arrays, w)})
            print(json.dumps(rows[-1], ensure_ascii=False), flush=True)
    example = {tok: neighbours(tok, top_n, min_score) for tok in ("임산부/N", "보증금/N", "돌려받/V")}
    common.save(args.out, {"dev": {str(k): v for k, v in dev.items()}, "chosen": best, "rows": rows,
                           "examples": example})
    print("examples:", json.dumps(example, ensure_ascii=False))


if __name__ == "__main__":
    main()
