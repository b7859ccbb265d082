"""Compare BM25 token choices on a retrieval set: koembed's content-morpheme filter vs every morpheme.

    python bench/bm25_tokenizers.py --data ../shared/data/korquad-v1-dev/KorQuAD_v1.0_dev.json

Prints accuracy@1, ndcg@10 and mrr@10 (the card's IR suite) and the time to index and search.
"""

from __future__ import annotations

import json
import time

import common

from koembed.data import load_retrieval_set
from koembed.evaluation.runner import score_run
from koembed.lexical import BM25Retriever

VARIANTS = {
    "content morphemes (default), k1=1.2": {},
    "every morpheme (AutoRAG ko_kiwi), k1=1.2": {"keep_all_morphemes": True},
    "content morphemes, k1=1.5 (bm25s default)": {"k1": 1.5},
}


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--data", default=None, help="retrieval set (default: the bundled sample)")
    parser.add_argument("--split", default=None)
    args = parser.parse_args()
    rs = load_retrieval_set(args.data, split=args.split)
    qids = rs.query_ids
    texts = [rs.queries[q] for q in qids]
    print(f"{rs.name}: {len(qids)} queries, {len(rs.corpus)} passages")
    for name, kwargs in VARIANTS.items():
        start = time.perf_counter()
        bm25 = BM25Retriever(show_progress=False, **kwargs)
        bm25.fit(rs.doc_ids, list(rs.corpus.values()))
        hits = dict(zip(qids, bm25.search(texts, 100)))
        seconds = time.perf_counter() - start
        ir, _ = score_run(rs, hits, ())
        row = {k: round(ir[k], 4) for k in ("accuracy@1", "ndcg@10", "mrr@10")}
        print(json.dumps({"variant": name, **row, "seconds": round(seconds, 1)}, ensure_ascii=False))


if __name__ == "__main__":
    main()
