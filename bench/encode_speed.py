"""Encoding speed: plain sentence-transformers versus koembed's backends and precisions, with the quality cost.

    python bench/encode_speed.py --model out/minilm-ko-cpu/final --out out/encode_speed.json
    python bench/encode_speed.py --model tiny-xlmr --corpus synthetic --docs 50000 --repeats 1

Corpora: ``korquad`` = the 354 paragraphs of the held-out KorQuAD articles (questions: the held-out questions);
``synthetic`` = ``--docs`` random-word Korean passages from the bundled sample's vocabulary (bench/dense_memory.py),
each query six words of its one relevant passage. Settings, all at max length 256, batch 32:
1. plain ``SentenceTransformer.encode`` fp32 (the baseline); 2. koembed ``encode`` torch fp32; 3. torch bf16;
4. ``--backend onnx`` (onnxruntime, fp32); 5. ``--backend onnx-int8`` (int8 MatMul weights, per channel).
Each is warmed up on 64 texts, then timed ``--repeats`` times (the fastest run counts); ndcg@10 of the queries
(exact search) is computed from exactly the timed embeddings, so no speed-up is reported without its quality
change. ``--model tiny-xlmr`` builds a randomly initialised XLM-RoBERTa (the bge-m3 classes) 384 wide, 2 layers.
The one-off ONNX export time is reported separately (``export_s``).
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import common

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SETTINGS = [("sentence-transformers encode, fp32", "torch", "fp32", "plain"),
            ("koembed torch fp32", "torch", "fp32", "ours"), ("koembed torch bf16", "torch", "bf16", "ours"),
            ("koembed onnx (fp32)", "onnx", "fp32", "ours"), ("koembed onnx-int8", "onnx-int8", "fp32", "ours")]


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--model", default="minilm", help="model name or folder, or tiny-xlmr")
    parser.add_argument("--corpus", choices=["korquad", "synthetic"], default="korquad")
    parser.add_argument("--docs", type=int, default=50_000, help="synthetic corpus size")
    parser.add_argument("--queries", type=int, default=1000, help="synthetic queries")
    parser.add_argument("--only", help="comma-separated backends to run (torch,onnx,onnx-int8); default all")
    parser.add_argument("--max-seq-length", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--token-budget", type=int, default=0,
                        help="also time koembed fp32 with this max_batch_tokens, on paragraphs and questions mixed")
    args = parser.parse_args()

    import numpy as np
    import torch

    from koembed.bench import score_run
    from koembed.data import RetrievalSet, load_retrieval_set
    from koembed.models import EncodeOptions, encode, load_model
    from koembed.models.onnx import CACHE_ENV
    from koembed.models.testing import make_tiny_xlmr
    from koembed.retrieve import DenseRetriever

    if args.corpus == "korquad":
        rs = load_retrieval_set(SHARED / "korquad-v1-dev" / "KorQuAD_v1.0_dev.json", split="test")
    else:
        from dense_memory import synthetic_corpus  # same folder

        ids, docs, queries, targets = synthetic_corpus(args.docs, args.queries)
        rs = RetrievalSet(name=f"synthetic-{args.docs}", queries={f"q{i}": q for i, q in enumerate(queries)},
                          corpus=dict(zip(ids, docs)), relevant={f"q{i}": [[t]] for i, t in enumerate(targets)})
    texts = list(rs.corpus.values())
    queries = [rs.queries[q] for q in rs.query_ids]
    scratch = tempfile.TemporaryDirectory()
    import os

    os.environ.setdefault(CACHE_ENV, str(Path(scratch.name) / "cache"))  # a fresh export, timed below
    model_name = args.model
    if model_name == "tiny-xlmr":
        model_name = str(make_tiny_xlmr(Path(scratch.name) / "tiny", hidden_size=384, layers=2,
                                        max_length=args.max_seq_length))

    def plain(model, items):
        return np.asarray(model.encode(items, batch_size=32, show_progress_bar=False, convert_to_numpy=True))

    def ours(model, items):
        return encode(model, items, batch_size=32, show_progress=False)

    rows = []
    for label, backend, precision, how in SETTINGS:
        if args.only and backend not in args.only.split(","):
            continue
        fn = plain if how == "plain" else ours
        start = time.perf_counter()
        model = load_model(model_name, max_seq_length=args.max_seq_length, precision=precision, backend=backend)
        load_s = time.perf_counter() - start
        fn(model, texts[:64])  # warm-up
        best, emb = common.best_of(args.repeats, lambda: fn(model, texts))
        dense = DenseRetriever(model, label, options=EncodeOptions(show_progress=False))
        dense.fit_embeddings(rs.doc_ids, emb)  # the ranking uses exactly the embeddings that were timed
        ir, _ = score_run(rs, dict(zip(rs.query_ids, dense.search(queries, 100))), ())
        rows.append({"setting": label, "backend": backend, "precision": precision, "corpus": rs.name,
                     "passages": len(texts), "seconds": round(best, 2), "passages_per_s": round(len(texts) / best, 1),
                     "ndcg@10": round(ir["ndcg@10"], 4), "threads": torch.get_num_threads(),
                     **({"export_s": round(load_s, 1)} if backend != "torch" else {})})
        print(json.dumps(rows[-1]), flush=True)
        del model, dense
    if args.token_budget:
        mixed = texts + queries  # short questions and long paragraphs: where padding and batch size matter
        model = load_model(model_name, max_seq_length=args.max_seq_length)
        for label, kwargs in [("koembed fp32, batch 32, mixed texts", {"batch_size": 32}),
                              (f"koembed fp32, {args.token_budget} tokens per batch, mixed texts",
                               {"max_batch_tokens": args.token_budget})]:
            encode(model, mixed[:64], show_progress=False, **kwargs)  # warm-up
            best, _ = common.best_of(args.repeats, lambda: encode(model, mixed, show_progress=False, **kwargs))
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
    common.save(args.out, rows)


if __name__ == "__main__":
    main()
