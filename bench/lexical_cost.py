"""What phrase-aware BM25 costs: build time, memory and vocabulary per lexical field, and query latency, against
plain Kiwi BM25 (unigrams), on a large synthetic Korean corpus.

    python bench/lexical_cost.py --docs 200000 --queries 1000 --out out/lexical_cost.json

Passages are ``--words`` random words of the bundled sample's vocabulary (bench/dense_memory.py); each query is six
words of one passage. Kiwi analyses each distinct word once and a passage's morphemes are its words' morphemes in
order (the words are separate eojeols, so this is what analysing the passage gives, up to Kiwi's context effects),
which keeps a 200k-passage run short; Kiwi's own speed is timed on ``--kiwi-sample`` whole passages and reported
as passages per second (every Kiwi field shares that one analysis). Then each field's terms are derived and
indexed with bm25s (its build time, vocabulary and in-memory index size). An index stores only the
analysis and the text, so a field adds nothing on disk: its terms and BM25 statistics are rebuilt on load, which
costs the per-field build time. Latency: single-query ``search(k=10)`` calls of ``bm25`` and of the other presets,
in one run, interleaved query by query, p50 and p99 over the queries.
"""

from __future__ import annotations

import statistics
import time

import common
from dense_memory import synthetic_corpus

from koembed.lexical import FIELDS, PRESETS, BM25Retriever, KiwiTokenizer
from koembed.lexical.bm25 import _FieldIndex
from koembed.lexical.fields import field_tokens


def index_bytes(index: _FieldIndex) -> int:
    """Bytes of the arrays of bm25s's sparse score matrix."""
    scores = index.bm25.scores
    return sum(v.nbytes for v in scores.values() if hasattr(v, "nbytes"))


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--words", type=int, default=80, help="words per passage (~4.5 characters each)")
    parser.add_argument("--kiwi-sample", type=int, default=2000, help="passages Kiwi's speed is timed on")
    args = parser.parse_args()
    ids, docs, queries, _ = synthetic_corpus(args.docs, args.queries, words_per_doc=args.words)
    kiwi = KiwiTokenizer()
    start = time.perf_counter()
    kiwi(docs[: args.kiwi_sample])
    kiwi_per_s = args.kiwi_sample / (time.perf_counter() - start)
    words = sorted({w for doc in docs for w in doc.split()})
    by_word = dict(zip(words, kiwi(words)))
    tokens = [[t for w in doc.split() for t in by_word[w]] for doc in docs]
    print(f"{len(docs)} passages, {sum(map(len, docs)) / len(docs):.0f} chars each; Kiwi {kiwi_per_s:.0f} "
          "passages/s", flush=True)
    fields = []
    for field in FIELDS:
        start = time.perf_counter()
        terms = [field_tokens(field, tok, text) for tok, text in zip(tokens, docs)]
        derive_s = time.perf_counter() - start
        index = _FieldIndex(terms, 1.2, 0.75)
        fields.append({"field": field, "derive_s": round(derive_s, 1),
                       "index_s": round(time.perf_counter() - start - derive_s, 1), "vocabulary": len(index.vocab),
                       "terms_per_passage": round(sum(map(len, terms)) / len(terms), 1),
                       "index_mb": round(index_bytes(index) / 2**20, 1)})
        print(fields[-1], flush=True)
        del terms, index
    retrievers = {}
    for name in ("bm25", "bm25-char", "bm25-phrase"):
        retriever = BM25Retriever(PRESETS[name], show_progress=False)
        retriever.fit_analysed(ids, docs, tokens)
        retrievers[name] = retriever
    latencies: dict[str, list[float]] = {name: [] for name in retrievers}
    for query in queries:
        for name, retriever in retrievers.items():
            start = time.perf_counter()
            retriever.search([query], 10)
            latencies[name].append((time.perf_counter() - start) * 1000)
    latency = {name: {"p50_ms": round(statistics.median(ms), 2), "p99_ms": round(sorted(ms)[int(len(ms) * 0.99)], 2)}
               for name, ms in latencies.items()}
    print(latency, flush=True)
    configs = {name: PRESETS[name].to_dict() for name in retrievers}
    common.save(args.out, {"docs": len(docs), "queries": len(queries), "kiwi_passages_per_s": round(kiwi_per_s, 1),
                           "fields": fields,
                           "latency": latency, "configs": configs})


if __name__ == "__main__":
    main()
