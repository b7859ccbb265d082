"""Write a synthetic Korean retrieval set in BEIR layout, of any size, for scale benchmarks.

    python bench/synthetic_set.py --docs 1000000 --queries 1000 --out /tmp/syn1m
    /usr/bin/time -v koembed bench --data /tmp/syn1m -r dense:MODEL --top-k 1,10 -q

Passages are random words from the bundled sample's vocabulary (our own text); each query is six words of one
passage, which is its one relevant passage (``bench/dense_memory.py`` builds the same kind of corpus).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--docs", type=int, default=1_000_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args()

    from dense_memory import synthetic_corpus  # same folder

    from koembed.files import atomic_open

    ids, docs, queries, targets = synthetic_corpus(args.docs, args.queries)
    with atomic_open(args.out / "corpus.jsonl") as handle:
        for doc_id, text in zip(ids, docs):
            handle.write(json.dumps({"_id": doc_id, "title": "", "text": text}, ensure_ascii=False) + "\n")
    with atomic_open(args.out / "queries.jsonl") as handle:
        for i, text in enumerate(queries):
            handle.write(json.dumps({"_id": f"q{i}", "text": text}, ensure_ascii=False) + "\n")
    with atomic_open(args.out / "qrels" / "test.tsv") as handle:
        handle.write("query-id\tcorpus-id\tscore\n")
        for i, target in enumerate(targets):
            handle.write(f"q{i}\t{target}\t1\n")
    print(f"{args.out}: {args.docs} passages, {args.queries} queries")


if __name__ == "__main__":
    main()
