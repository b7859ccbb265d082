"""Time and peak memory of ``dense:`` retrieval on synthetic Korean corpora of growing size.

Each configuration runs in a fresh process so its peak RSS (ru_maxrss) is its own. The synthetic passages
are random word sequences drawn from the bundled sample's vocabulary (our own text), so no licensed data
is involved. Each query is a shuffled handful of words from one passage, whose id is the query's target;
recall@10 of that target is printed as a sanity check that the search works at scale.

    python bench/dense_memory.py --model minilm --sizes 50000,100000,200000 --queries 5000 --out out/dense_memory.json
"""

from __future__ import annotations

import json
import random
import resource
import sys
import time
from pathlib import Path

import common


def synthetic_corpus(n_docs: int, n_queries: int, seed: int = 0, words_per_doc: int = 24):
    from koembed.data import load_retrieval_set

    sample = load_retrieval_set()
    vocab = sorted({w for text in sample.corpus.values() for w in text.split()})
    rng = random.Random(seed)
    docs = [" ".join(rng.choices(vocab, k=words_per_doc)) for _ in range(n_docs)]
    targets = rng.sample(range(n_docs), n_queries)
    queries = []
    for t in targets:
        words = docs[t].split()
        queries.append(" ".join(rng.sample(words, 6)))
    return [f"doc-{i}" for i in range(n_docs)], docs, queries, [f"doc-{t}" for t in targets]


def run_one(model_name: str, n_docs: int, n_queries: int, max_seq_length: int, batch_size: int) -> dict:
    import torch

    from koembed.models import EncodeOptions, load_model
    from koembed.retrieval.dense import DenseRetriever

    doc_ids, docs, queries, targets = synthetic_corpus(n_docs, n_queries)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if model_name == "tiny-384":  # XLM-R classes, MiniLM's width (384), one layer: fast to encode on a CPU
        import tempfile

        from koembed.models.testing import make_tiny_xlmr

        model_dir = make_tiny_xlmr(Path(tempfile.mkdtemp()) / "tiny", hidden_size=384, layers=1)
        model = load_model(str(model_dir), max_seq_length=max_seq_length)
    else:
        model = load_model(model_name, max_seq_length=max_seq_length)
    options = EncodeOptions(batch_size=batch_size, show_progress=False)
    dense = DenseRetriever(model, f"dense:{model_name}", options=options)
    start = time.perf_counter()
    dense.fit(doc_ids, docs)
    encode_s = time.perf_counter() - start
    start = time.perf_counter()
    hits = dense.search(queries, 100)
    search_s = time.perf_counter() - start
    recall10 = sum(t in {d for d, _ in h[:10]} for t, h in zip(targets, hits)) / len(targets)
    dim = model.get_embedding_dimension()
    return {
        "model": model_name, "docs": n_docs, "queries": n_queries, "dim": dim, "max_seq_length": max_seq_length,
        "threads": torch.get_num_threads(),
        "encode_corpus_s": round(encode_s, 1), "docs_per_s": round(n_docs / encode_s, 1),
        "search_s": round(search_s, 2), "recall@10": round(recall10, 4),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "rss_after_data_mb": round(rss_before),
        "corpus_embeddings_mb": round(n_docs * dim * 4 / 2**20),
        "full_score_matrix_mb": round(n_docs * n_queries * 4 / 2**20),
    }


def main() -> None:
    parser = common.isolating(common.parser(__doc__))
    parser.add_argument("--model", default="minilm")
    parser.add_argument("--sizes", type=common.int_list, default="50000,100000,200000")
    parser.add_argument("--queries", type=int, default=5000)
    parser.add_argument("--max-seq-length", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=128)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.model, int(args.one), args.queries, args.max_seq_length, args.batch_size)))
        return
    rows = []
    for size in args.sizes:
        cmd = [sys.executable, __file__, "--model", args.model, "--queries", str(args.queries), "--max-seq-length",
               str(args.max_seq_length), "--batch-size", str(args.batch_size), "--one", str(size)]
        rows.append(common.isolated(cmd, {"docs": size}))
        print(json.dumps(rows[-1]), flush=True)
    common.save(args.out, rows)


if __name__ == "__main__":
    main()
