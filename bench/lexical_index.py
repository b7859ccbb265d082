"""How to persist the bm25-phrase fields: koembed's stored segments against bm25s's saved score matrices and
tantivy, on the same corpus in one run; and what koembed's index then costs at scale.

    python bench/lexical_index.py agreement                      # top-10 vs the in-memory fields, held-out sets
    python bench/lexical_index.py scale --docs 100000 --out out/lexical_index.json

``agreement``: on KorQuAD held-out articles and MS MARCO-ko's test half, the top-10 of each persisted form
against today's in-memory bm25-phrase (bm25s fitted per field, summed with the weights): identical lists (ids
and order), and top-1 agreement.

``scale``: a synthetic corpus of ``--docs`` passages made from MS MARCO-ko's passages with their sentences
rotated (passage i = base passage i mod B rotated by i div B sentences). Kiwi analyses each distinct sentence
once (cached in ``--cache``, never committed) and a passage's tokens are its sentences' tokens in order, so the
run measures the index, not Kiwi; Kiwi's own rate is timed on whole passages and its time for the corpus
extrapolated from it. Measured, each in a fresh process where it is about load: load to first result, peak RSS,
query p50/p99 (single bm25-phrase queries, k=10); build time and size on disk; adding 1,000 passages.
tantivy (PyPI ``tantivy``, the ``bench-tantivy`` extra): four pre-tokenized text fields with term frequencies,
a boolean query of boosted term queries (its BM25 has k1=1.2, b=0.75 and a one-byte length norm).
"""

from __future__ import annotations

import json
import os
import re
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import common

from koembed.lexical import DEFAULT, BM25Retriever, KiwiTokenizer
from koembed.lexical.fields import field_tokens

FIELDS = DEFAULT.fields
SENTENCE = re.compile(r"(?<=[.?!])\s+")


def rss_mb() -> float:
    """Peak resident memory of this process (VmHWM: ru_maxrss would keep the forking parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def folder_mb(path: Path) -> float:
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()) / 2 ** 20


def query_terms(tokens: list[str], text: str) -> dict[str, list[str]]:
    return {f: field_tokens(f, tokens, text) for f in FIELDS}


class Bm25sField:
    """One field's in-memory bm25s index (Lucene variant), as ``BM25Retriever.fit_analysed`` builds it, kept here
    so that its score matrix can be saved (option (a)); ``BM25Retriever.use_fields`` searches it."""

    def __init__(self, docs: list[list[str]], k1: float, b: float):
        import bm25s

        vocab: dict[str, int] = {}
        ids = [[vocab.setdefault(term, len(vocab)) for term in doc] for doc in docs]
        self.vocab, self.n = vocab, len(docs)
        self.bm25 = bm25s.BM25(k1=k1, b=b, method="lucene")
        self.bm25.index(bm25s.tokenization.Tokenized(ids=ids, vocab=vocab), show_progress=False)

    def scores(self, terms: list[str]):
        import numpy as np

        known = [self.vocab[t] for t in terms if t in self.vocab]
        return self.bm25.get_scores(known) if known else np.zeros(self.n, dtype=np.float32)


# --------------------------------------------------------------------------- tantivy
def tantivy_module():
    """tantivy from the ``bench-tantivy`` extra, or from ``pip install --target /tmp/tantivy-pkg tantivy==0.27.0``."""
    try:
        import tantivy
    except ImportError:
        sys.path.insert(0, "/tmp/tantivy-pkg")
        import tantivy
    return tantivy


def tantivy_build(folder: Path, tokens: list[list[str]], texts: list[str]) -> None:
    tantivy = tantivy_module()
    builder = tantivy.SchemaBuilder()
    builder.add_unsigned_field("row", stored=True)
    for f in FIELDS:
        builder.add_text_field(f, stored=False, tokenizer_name="ws", index_option="freq")
    folder.mkdir(parents=True)
    index = tantivy.Index(builder.build(), path=str(folder))
    index.register_tokenizer("ws", tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build())
    writer = index.writer(heap_size=400_000_000, num_threads=1)
    for row, (toks, text) in enumerate(zip(tokens, texts)):
        doc = tantivy.Document(row=row)
        for f, terms in query_terms(toks, text).items():
            doc.add_text(f, " ".join(t.replace(" ", "+") for t in terms))
        writer.add_document(doc)
    writer.commit()
    writer.wait_merging_threads()


class TantivySearch:
    def __init__(self, folder: Path):
        tantivy = self.t = tantivy_module()
        self.index = tantivy.Index.open(str(folder))
        self.index.register_tokenizer("ws", tantivy.TextAnalyzerBuilder(tantivy.Tokenizer.whitespace()).build())
        self.schema = self.index.schema
        self.searcher = self.index.searcher()

    def search(self, tokens: list[str], text: str, k: int = 10) -> list[int]:
        t = self.t
        clauses = [(t.Occur.Should, t.Query.boost_query(t.Query.term_query(self.schema, f, term.replace(" ", "+")),
                                                        DEFAULT.weights[f]))
                   for f, terms in query_terms(tokens, text).items() for term in terms]
        if not clauses:
            return []
        hits = self.searcher.search(t.Query.boolean_query(clauses), k).hits
        return [self.searcher.doc(address)["row"][0] for _, address in hits]


# --------------------------------------------------------------------------- agreement on held-out sets
def agreement() -> dict:
    import tempfile

    from koembed.lexical.segments import StoredFields, write_segment

    out = {}
    kiwi = KiwiTokenizer()
    for name, rs in common.load_sets({k: common.HELD_OUT_SETS[k] for k in ("korquad-test", "msmarco-ko-test")}
                                     ).items():
        doc_ids, texts = list(rs.corpus), list(rs.corpus.values())
        tokens = kiwi(texts)
        queries = list(rs.queries.values())
        q_tokens = kiwi(queries)
        memory = BM25Retriever(DEFAULT, show_progress=False)
        memory.fit_analysed(doc_ids, texts, tokens)
        with tempfile.TemporaryDirectory() as tmp:
            write_segment(Path(tmp), "s000001", list(range(len(texts))), tokens, texts, FIELDS)
            stored = BM25Retriever(DEFAULT, show_progress=False)
            stored.use_fields(doc_ids, StoredFields(Path(tmp), ["s000001"], FIELDS, range(len(texts)), DEFAULT.k1,
                                                    DEFAULT.b).fields)
            tantivy_build(Path(tmp) / "tantivy", tokens, texts)
            tv = TantivySearch(Path(tmp) / "tantivy")
            want = [[d for d, _ in hits] for hits in memory.search(queries, 10)]
            got = [[d for d, _ in hits] for hits in stored.search(queries, 10)]
            tv_got = [[doc_ids[r] for r in tv.search(t, q)] for t, q in zip(q_tokens, queries)]
        out[name] = {"queries": len(queries), "passages": len(texts),
                     "stored_top10_identical": sum(a == b for a, b in zip(got, want)),
                     "tantivy_top10_identical": sum(a == b for a, b in zip(tv_got, want)),
                     "tantivy_top1_agree": sum(a[:1] == b[:1] for a, b in zip(tv_got, want)),
                     "tantivy_top10_same_set": sum(set(a) == set(b) for a, b in zip(tv_got, want))}
        print(name, out[name], flush=True)
    return out


# --------------------------------------------------------------------------- the synthetic corpus
def synthetic(n: int, cache: Path) -> tuple[list[str], list[list[str]], list[str], list[list[str]]]:
    """(texts, tokens, queries, query tokens) of ``n`` rotated MS MARCO-ko passages."""
    from koembed.data import load_retrieval_set

    rs = load_retrieval_set(common.MSMARCO)
    base = [SENTENCE.split(t.strip()) for t in rs.corpus.values()]
    queries = list(rs.queries.values())[:300]
    cache.mkdir(parents=True, exist_ok=True)
    path = cache / "sentences.json"
    if not path.exists():
        unique = sorted({s for p in base for s in p} | set(queries))
        path.write_text(json.dumps(dict(zip(unique, KiwiTokenizer()(unique))), ensure_ascii=False))
    analysed = json.loads(path.read_text())
    texts, tokens = [], []
    for i in range(n):
        sentences = base[i % len(base)]
        r = (i // len(base)) % len(sentences)
        rotated = sentences[r:] + sentences[:r]
        texts.append(" ".join(rotated))
        tokens.append([t for s in rotated for t in analysed[s]])
    return texts, tokens, queries, [analysed[q] for q in queries]


def latencies(search, queries) -> dict:
    times = []
    for q in queries:
        start = time.perf_counter()
        search(q)
        times.append(time.perf_counter() - start)
    times.sort()
    return {"p50_ms": 1000 * statistics.median(times), "p99_ms": 1000 * times[int(0.99 * (len(times) - 1))]}


def one(what: str, folder: Path, n: int, cache: Path) -> dict:
    """One fresh-process measurement (the parent passes the corpus through the cache)."""
    start = time.perf_counter()
    if what == "koembed":
        from koembed.index import load_index

        index = load_index(folder)
        loaded = time.perf_counter() - start
        queries = json.loads((cache / "queries.json").read_text())
        first = index.search([queries[0]], 10, mode="bm25")
        result = {"load_s": loaded, "first_result_s": time.perf_counter() - start, "hits": len(first[0])}
        result |= latencies(lambda q: index.search([q], 10, mode="bm25"), queries[1:])
    elif what == "memory":  # today's load: derive and index the four fields from the stored analysis
        from koembed.index.versions import read_state

        state = read_state(folder)
        loaded = time.perf_counter() - start
        fields = {f: Bm25sField([field_tokens(f, tok, text) for tok, text in zip(state.tokens, state.texts)],
                                DEFAULT.k1, DEFAULT.b) for f in FIELDS}
        bm25 = BM25Retriever(DEFAULT, show_progress=False)
        bm25.use_fields(state.doc_ids, fields)
        queries = json.loads((cache / "queries.json").read_text())
        bm25.search([queries[0]], 10)
        result = {"read_s": loaded, "first_result_s": time.perf_counter() - start}
        result |= latencies(lambda q: bm25.search([q], 10), queries[1:])
        save = time.perf_counter()  # option (a): bm25s's own score matrices, saved per field
        for f, field_index in fields.items():
            field_index.bm25.save(str(cache / "bm25s" / f))
        result["bm25s_save_s"] = time.perf_counter() - save
    elif what == "bm25s":
        import bm25s

        fields = {f: bm25s.BM25.load(str(cache / "bm25s" / f), mmap=True) for f in FIELDS}
        loaded = time.perf_counter() - start
        queries = json.loads((cache / "query_terms.json").read_text())

        def search(terms):
            import numpy as np

            total = sum(DEFAULT.weights[f] * (m.get_scores([m.vocab_dict[t] for t in terms[f] if t in m.vocab_dict])
                                              if any(t in m.vocab_dict for t in terms[f]) else 0)
                        for f, m in fields.items())
            return np.argsort(-total)[:10] if hasattr(total, "shape") else []

        search(queries[0])
        result = {"load_s": loaded, "first_result_s": time.perf_counter() - start}
        result |= latencies(search, queries[1:])
    elif what == "segments":  # koembed's stored fields alone, fed the cached query terms as bm25s and tantivy are
        import numpy as np

        from koembed.lexical.segments import StoredFields

        manifest = json.loads((folder / "manifest.json").read_text())
        version = folder / manifest["version_dir"]
        names = [seg["name"] for seg in manifest["lexical"]["segments"]]
        live = np.concatenate([np.load(version / f"lex.{name}.pids.npy") for name in names])  # none deleted
        stored = StoredFields(version, names, FIELDS, live, DEFAULT.k1, DEFAULT.b)
        loaded = time.perf_counter() - start
        queries = json.loads((cache / "query_terms.json").read_text())

        def search(terms):
            total = sum(DEFAULT.weights[f] * stored.fields[f].scores(terms[f]) for f in FIELDS)
            top = np.argpartition(-total, 10)[:10]
            return top[np.argsort(-total[top])]

        search(queries[0])
        result = {"load_s": loaded, "first_result_s": time.perf_counter() - start}
        result |= latencies(search, queries[1:])
    elif what == "kiwi":  # what the query's analysis costs a fresh process: Kiwi's model load and first call
        KiwiTokenizer()(["전세 보증금 반환 절차"])
        result = {"kiwi_first_analysis_s": time.perf_counter() - start}
    else:  # tantivy
        tv = TantivySearch(folder)
        loaded = time.perf_counter() - start
        queries = json.loads((cache / "query_tokens.json").read_text())
        tv.search(*queries[0])
        result = {"load_s": loaded, "first_result_s": time.perf_counter() - start}
        result |= latencies(lambda q: tv.search(*q), queries[1:])
    return {"what": what, **result, "peak_rss_mb": rss_mb()}


def fresh(what: str, folder: Path, n: int, cache: Path) -> dict:
    start = time.perf_counter()
    result = common.isolated([sys.executable, __file__, "one", what, str(folder), str(n), str(cache)], {"what": what})
    return {**result, "process_s": time.perf_counter() - start}


def scale(n: int, cache: Path, work: Path, reuse: str | None = None) -> dict:
    import koembed.index.bm25_store as store
    from koembed.index import add_documents, build_index
    from koembed.models import load_model

    if reuse == "segments":
        return {"segments_load": fresh("segments", work / "index", n, cache),
                "tantivy_load": fresh("tantivy", work / "tantivy", n, cache),
                "bm25s_load": fresh("bm25s", cache / "bm25s", n, cache)}
    if reuse:  # the koembed index and bm25s folders of an earlier run: measure their loads, and tantivy again
        texts, tokens, _, _ = synthetic(n, cache)
        shutil.rmtree(work / "tantivy", ignore_errors=True)
        start = time.perf_counter()
        tantivy_build(work / "tantivy", tokens, texts)
        out = {"docs": n, "tantivy_build": {"total_s": time.perf_counter() - start, "mb": folder_mb(work / "tantivy")}}
        print(out, flush=True)
        del texts, tokens
        return {**out, "tantivy_load": fresh("tantivy", work / "tantivy", n, cache),
                "koembed_load": fresh("koembed", work / "index", n, cache),
                "bm25s_load": fresh("bm25s", cache / "bm25s", n, cache)}
    texts, tokens, queries, q_tokens = synthetic(n + 1000, cache)
    (cache / "queries.json").write_text(json.dumps(queries, ensure_ascii=False))
    (cache / "query_tokens.json").write_text(json.dumps(list(zip(q_tokens, queries)), ensure_ascii=False))
    (cache / "query_terms.json").write_text(json.dumps([query_terms(t, q) for t, q in zip(q_tokens, queries)],
                                                       ensure_ascii=False))
    shutil.rmtree(work, ignore_errors=True)
    work.mkdir(parents=True)
    out: dict = {"docs": n}
    sample = texts[:1000]
    start = time.perf_counter()
    KiwiTokenizer()(sample)
    rate = len(sample) / (time.perf_counter() - start)
    out["kiwi"] = {"passages_per_s": rate, "estimated_s": n / rate}

    seconds = {"segments": 0.0}
    real = store.write_segments

    def timed(*args, **kwargs):
        start = time.perf_counter()
        try:
            return real(*args, **kwargs)
        finally:
            seconds["segments"] += time.perf_counter() - start

    store.write_segments = timed
    import koembed.index.versions as versions

    versions.write_segments = timed
    model = load_model("static-ko")
    ids = [f"p{i}" for i in range(n + 1000)]
    start = time.perf_counter()
    build_index("static-ko", ids[:n], texts[:n], work / "index", encoder=model, tokens=tokens[:n])
    out["koembed_build"] = {"total_s": time.perf_counter() - start, "bm25_segments_s": seconds["segments"],
                            "lexical_mb": sum(p.stat().st_size for p in (work / "index").rglob("lex.*")) / 2 ** 20,
                            "index_mb": folder_mb(work / "index")}
    print(out, flush=True)
    out["koembed_load"] = fresh("koembed", work / "index", n, cache)
    print(out["koembed_load"], flush=True)
    seconds["segments"] = 0.0
    start = time.perf_counter()
    add_documents(work / "index", ids[n:], texts[n:], encoder=model)
    out["koembed_add_1000"] = {"total_s": time.perf_counter() - start, "bm25_segment_s": seconds["segments"],
                               "note": "includes Kiwi on the 1,000 new passages and rewriting passages.jsonl"}
    print(out["koembed_add_1000"], flush=True)

    (cache / "bm25s").mkdir(exist_ok=True)
    out["memory_and_bm25s_build"] = fresh("memory", work / "index", n, cache)
    out["bm25s_mb"] = folder_mb(cache / "bm25s")
    print(out["memory_and_bm25s_build"], flush=True)
    out["bm25s_load"] = fresh("bm25s", cache / "bm25s", n, cache)
    print(out["bm25s_load"], flush=True)
    start = time.perf_counter()
    tantivy_build(work / "tantivy", tokens[:n], texts[:n])
    out["tantivy_build"] = {"total_s": time.perf_counter() - start, "mb": folder_mb(work / "tantivy")}
    out["tantivy_load"] = fresh("tantivy", work / "tantivy", n, cache)
    print(out["tantivy_build"], out["tantivy_load"], flush=True)
    return out


def product(cache: Path, work: Path, before_src: Path) -> dict:
    """The product path (``load_index`` + bm25 search) in fresh processes, side by side: the koembed at
    ``before_src`` on the index an earlier ``scale`` run built (no row table), and this koembed on that index and
    on a copy converted by one update (deleting one passage writes the row table)."""
    from koembed.index import delete_documents

    old, new = work / "index", work / "index-rows"
    if not new.exists():
        shutil.copytree(old, new)
        start = time.perf_counter()
        last = None
        manifest = json.loads((old / "manifest.json").read_text())
        with open(old / manifest["version_dir"] / "passages.jsonl", "rb") as handle:
            for line in handle:
                last = json.loads(line)["id"]
        delete_documents(new, [last])
        print({"converted_s": time.perf_counter() - start}, flush=True)
    n = json.loads((old / "manifest.json").read_text())["counts"]["passages"]
    cmd = [sys.executable, __file__, "one", "koembed", "", str(n), str(cache)]

    def run(folder: Path, src: Path | None, what: str = "koembed") -> dict:
        env = {**os.environ, "PYTHONPATH": str(src or Path(__file__).resolve().parents[1] / "src")}
        start = time.perf_counter()
        done = subprocess.run([*cmd[:3], what, str(folder), *cmd[5:]], capture_output=True, text=True, env=env)
        if done.returncode:
            return {"error": done.returncode, "stderr_tail": done.stderr[-300:]}
        return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_s": time.perf_counter() - start}

    out = {"docs": n, "kiwi": run(old, None, "kiwi"),
           "before_on_old_index": run(old, before_src), "after_on_old_index": run(old, None),
           "after_on_index_with_row_table": run(new, None)}
    for name, value in out.items():
        print(name, value, flush=True)
    return out


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "one":
        print(json.dumps(one(sys.argv[2], Path(sys.argv[3]), int(sys.argv[4]), Path(sys.argv[5]))))
        return
    parser = common.parser(__doc__)
    parser.add_argument("part", choices=("agreement", "scale", "product"))
    parser.add_argument("--before-src", type=Path, help="product: the src/ folder of the koembed to compare with")
    parser.add_argument("--docs", type=int, default=100_000)
    parser.add_argument("--cache", type=Path, default=Path("/tmp/koembed-lexical-bench"))
    parser.add_argument("--reuse", choices=("all", "segments"), help="measure only the loads of an earlier run's "
                        "folders (segments: koembed's stored fields without Kiwi, beside bm25s and tantivy)")
    args = parser.parse_args()
    if args.part == "agreement":
        result = agreement()
    elif args.part == "product":
        result = product(args.cache, args.cache / f"work-{args.docs}", args.before_src)
    else:
        result = scale(args.docs, args.cache, args.cache / f"work-{args.docs}", args.reuse)
    print(json.dumps(result, indent=1))
    common.save(args.out, result)


if __name__ == "__main__":
    main()
