"""Encoding speed: plain sentence-transformers versus koembed, fp32 and bf16, with the quality cost.

    python bench/encode_speed.py --model minilm --out out/encode_speed.json

Encodes the 354 paragraphs of the held-out KorQuAD articles (max length 256) with
1. plain ``SentenceTransformer.encode`` (fp32, batch 32), the baseline;
2. koembed's ``encode`` fp32; 3. koembed's ``encode`` with bf16 weights (``--precision bf16``),
each twice, reporting the faster run's passages/s, then ndcg@10 of the held-out questions against those
paragraphs for every setting (exact search), so a speed-up is never reported without its quality change.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--token-budget", type=int, default=0,
                        help="also time koembed fp32 with this max_batch_tokens, on paragraphs and questions mixed")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import numpy as np
    import torch

    from koembed.bench import score_run
    from koembed.data import load_retrieval_set
    from koembed.models import encode, load_model
    from koembed.retrieve import DenseRetriever

    rs = load_retrieval_set(SHARED / "korquad-v1-dev" / "KorQuAD_v1.0_dev.json", split="test")
    texts = list(rs.corpus.values())
    queries = [rs.queries[q] for q in rs.query_ids]

    def plain(model):
        return np.asarray(model.encode(texts, batch_size=32, show_progress_bar=False, convert_to_numpy=True))

    def ours(model):
        return encode(model, texts, batch_size=32, show_progress=False)

    settings = [("sentence-transformers encode, fp32", "fp32", plain), ("koembed encode, fp32", "fp32", ours),
                ("koembed encode, bf16", "bf16", ours)]
    rows = []
    for label, precision, fn in settings:
        model = load_model(args.model, max_seq_length=args.max_seq_length, precision=precision)
        fn(model)  # warm-up
        best = float("inf")
        for _ in range(args.repeats):
            start = time.perf_counter()
            emb = fn(model)
            best = min(best, time.perf_counter() - start)
        dense = DenseRetriever(model, label, show_progress=False)
        dense.fit_embeddings(rs.doc_ids, emb)  # the ranking uses exactly the embeddings that were timed
        ir, _ = score_run(rs, dict(zip(rs.query_ids, dense.search(queries, 100))), ())
        rows.append({"setting": label, "precision": precision, "passages": len(texts),
                     "seconds": round(best, 2), "passages_per_s": round(len(texts) / best, 1),
                     "ndcg@10": round(ir["ndcg@10"], 4), "threads": torch.get_num_threads()})
        print(json.dumps(rows[-1]), flush=True)
    if args.token_budget:
        mixed = texts + queries  # short questions and long paragraphs: where padding and batch size matter
        model = load_model(args.model, max_seq_length=args.max_seq_length)
        for label, kwargs in [("koembed fp32, batch 32, mixed texts", {"batch_size": 32}),
                              (f"koembed fp32, {args.token_budget} tokens per batch, mixed texts",
                               {"max_batch_tokens": args.token_budget})]:
            encode(model, mixed[:64], show_progress=False, **kwargs)  # warm-up
            best = float("inf")
            for _ in range(args.repeats):
                start = time.perf_counter()
                encode(model, mixed, show_progress=False, **kwargs)
                best = min(best, time.perf_counter() - start)
            rows.append({"setting": label, "precision": "fp32", "passages": len(mixed), "seconds": round(best, 2),
                         "passages_per_s": round(len(mixed) / best, 1), "threads": torch.get_num_threads()})
            print(json.dumps(rows[-1]), flush=True)
    base = rows[0]["passages_per_s"]
    print("| setting | passages/s | speed-up | ndcg@10 | change |\n|---|---|---|---|---|")
    for r in rows:
        if "ndcg@10" in r:
            print(f"| {r['setting']} | {r['passages_per_s']} | {r['passages_per_s'] / base:.2f}x | {r['ndcg@10']:.4f} "
                  f"| {r['ndcg@10'] - rows[0]['ndcg@10']:+.4f} |")
        else:
            print(f"| {r['setting']} | {r['passages_per_s']} | (mixed texts) | | |")
    if args.out:
        from koembed.files import write_json

        write_json(args.out, rows)


if __name__ == "__main__":
    main()
