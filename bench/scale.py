"""Scale-out engines: Ray Data vs single-process encoding, the Qdrant store vs FAISS + BM25, term-id collisions.

    python bench/scale.py encode --docs 30000 --repeats 2 --out out/scale_encode.json
    python bench/scale.py encode --docs 200000 --repeats 2 --engines single-1-thread,ray --out out/scale_encode_200k.json
    python bench/scale.py search --sizes 10000,200000 --queries 50 --out out/scale_search.json
    python bench/scale.py collisions --out out/scale_collisions.json      # needs ../shared/data
    python bench/scale.py agreement --model minilm --every 4 --out out/scale_agreement.json  # ../shared/data

``encode``: the tiny XLM-R of the tests (bge-m3's classes, 32 dimensions) on synthetic Korean passages
(``dense_memory.synthetic_corpus``: words of the bundled sample): a single process with torch on one thread, Ray
Data with one 1-CPU (1-thread) actor per core, and a single process with torch's default threads, interleaved
A, B, C, A, B, C in one run; throughput = passages / wall seconds
(Ray's includes starting its actors and loading the model in each, not ``ray.init``); peak memory = the
process's RSS (single) or the sum over the driver and every Ray process (Ray), sampled every 0.2 s.
``search``: per size, the corpus is analysed (Kiwi) and encoded once, then each store in a fresh process is built
from those embeddings and tokens (``build_index_from_embeddings``: the store's own work only), then one query
at a time, p50/p99 latency for dense, bm25 and hybrid; peak RSS of that process (build and search), disk size.
Preparation is cheap (:func:`prepare_search`): the embeddings are the bundled static-ko's (the store comparison
does not depend on the model), Kiwi analyses each distinct word of the random word sequences once, and both
are cached in ``/tmp/koembed-scale-cache`` keyed by the corpus's hash, so reruns prepare nothing again.
Each store's libraries (faiss; qdrant_client and qdrant_edge) are imported before its build is timed and the
import is reported apart (``import_s``: qdrant_client's pydantic models take seconds, once per process). Build
and queries also report CPU seconds of the process (``build_cpu_s``, ``cpu_ms_per_query``), which a shared,
loaded machine disturbs far less than wall time.
``collisions``: distinct terms of each lexical field on KorQuAD dev + MS MARCO-ko, and how many share a
blake2b-32 id (within morphemes; over all fields, which share one sparse vector).
``agreement``: KorQuAD held-out articles, Qdrant store vs koembed's in-memory retrievers: same top 10, ndcg@10.
"""

from __future__ import annotations

import contextlib
import json
import resource
import shutil
import statistics
import tempfile
import threading
import time
from pathlib import Path

import common
from dense_memory import synthetic_corpus


class PeakRss:
    """Largest RSS of this process, or sum over it and its descendants (Ray's raylet and workers), sampled."""

    def __init__(self, children: bool = True) -> None:
        import psutil

        self.me, self.peak, self._stop = psutil.Process(), 0, threading.Event()
        self.children = children
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        import psutil

        while not self._stop.is_set():
            total = 0
            for proc in [self.me, *(self.me.children(recursive=True) if self.children else [])]:
                with contextlib.suppress(psutil.Error):
                    total += proc.memory_info().rss
            self.peak = max(self.peak, total)
            self._stop.wait(0.2)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def bench_encode(n_docs: int, repeats: int, chunk_size: int, engines: list[str]) -> dict:
    import os

    import ray
    import torch

    from koembed.encoding.job import encode_corpus
    from koembed.encoding.ray_engine import RayOptions, encode_corpus_ray
    from koembed.models import EncodeOptions
    from koembed.models.testing import make_tiny_xlmr

    cores, threads = os.cpu_count() or 1, torch.get_num_threads()
    ids, texts, _, _ = synthetic_corpus(n_docs, 1)
    work = Path(tempfile.mkdtemp(prefix="scale-encode-"))
    model = str(make_tiny_xlmr(work / "tiny"))
    options = EncodeOptions(batch_size=64, show_progress=False)
    started = time.perf_counter()
    ray.init(num_cpus=cores, include_dashboard=False, log_to_driver=False, configure_logging=False)
    ray_init_s = time.perf_counter() - started
    rows = []
    try:
        for r in range(repeats):
            for engine in engines:
                out = work / f"{engine}-{r}"
                torch.set_num_threads(1 if engine == "single-1-thread" else threads)
                with PeakRss(children=engine == "ray") as rss:
                    start = time.perf_counter()
                    if engine.startswith("single"):
                        encode_corpus(model, ids, texts, out, chunk_size=chunk_size, options=options)
                    else:
                        encode_corpus_ray(model, ids, texts, out, chunk_size=chunk_size, options=options,
                                          ray_options=RayOptions(workers=cores))
                    seconds = time.perf_counter() - start
                    ended = time.time()
                rows.append({"engine": engine, "repeat": r, "seconds": round(seconds, 1),
                             "passages_per_s": round(n_docs / seconds, 1), "peak_rss_mb": round(rss.peak / 2**20),
                             **_chunk_times(out, ended - seconds)})
                print(json.dumps(rows[-1]), flush=True)
                shutil.rmtree(out)
    finally:
        ray.shutdown()
        shutil.rmtree(work, ignore_errors=True)
    speed = {(row["engine"], row["repeat"]): row["passages_per_s"] for row in rows}
    out = {"docs": n_docs, "cores": cores, "torch_threads": threads, "chunk_size": chunk_size,
           "ray_init_s": round(ray_init_s, 1), "runs": rows}
    if {"ray", "single-1-thread"} <= set(engines):
        out["ray_per_core_over_single_1_thread"] = [round(speed["ray", r] / cores / speed["single-1-thread", r], 3)
                                                    for r in range(repeats)]
    if {"ray", "single"} <= set(engines):
        out["ray_over_single_all_threads"] = [round(speed["ray", r] / speed["single", r], 3) for r in range(repeats)]
    return out


def _chunk_times(out: Path, started: float) -> dict:
    """When the first chunk landed (start-up: Ray actors, model loads) and the rate after it, from the chunk
    files' modification times."""
    import numpy as np

    files = sorted(out.glob("shard-*/chunk-*.npy"), key=lambda f: f.stat().st_mtime)
    times = [f.stat().st_mtime for f in files]
    rows = [len(np.load(f, mmap_mode="r")) for f in files]
    steady = sum(rows[1:]) / (times[-1] - times[0]) if len(files) > 1 and times[-1] > times[0] else None
    return {"first_chunk_s": round(times[0] - started, 1),
            "after_first_chunk_per_s": round(steady, 1) if steady else None}


def _latencies(search, queries, k: int = 10) -> dict:
    times = []
    for q in queries:
        start = time.perf_counter()
        search([q], k)
        times.append((time.perf_counter() - start) * 1000)
    times.sort()
    return {"p50_ms": round(statistics.median(times), 2), "p99_ms": round(times[min(len(times) - 1,
                                                                                  int(0.99 * len(times)))], 2)}


CACHE = Path(tempfile.gettempdir()) / "koembed-scale-cache"
SEARCH_MODEL = "static-ko"  # the bundled static model: the store comparison does not depend on the model


def prepare_search(n_docs: int, n_queries: int, work: Path) -> None:
    """What both stores are built from, made once: the synthetic corpus's Kiwi tokens (``tokens.json``) and its
    embeddings by the bundled static-ko (``emb/``, ``koembed encode``'s store), so a store's build time is its own.

    Made cheap, since a first 200k run did not finish preparing in 25 minutes (Kiwi on every passage and the
    tiny XLM-R): the passages are random sequences of the bundled sample's words, with no sentence context, so
    Kiwi analyses each distinct word once and a passage's tokens are its words' tokens in order (both stores
    get the same tokens; queries are still analysed whole at search time); static-ko encodes 200,000 passages
    in seconds. Both are cached in :data:`CACHE` (``/tmp``), keyed by the corpus's sha256 and Kiwi's version,
    so a rerun prepares nothing again."""
    import hashlib

    import kiwipiepy

    from koembed.encoding.job import encode_corpus
    from koembed.lexical import KiwiTokenizer
    from koembed.models import EncodeOptions, load_model

    ids, texts, _, _ = synthetic_corpus(n_docs, n_queries)
    key = hashlib.sha256("\n".join(texts).encode("utf-8")).hexdigest()[:16]
    CACHE.mkdir(exist_ok=True)
    tokens = CACHE / f"kiwi-words-{kiwipiepy.__version__}-{key}.json"
    if not tokens.is_file():
        words = sorted({w for text in texts for w in text.split()})
        analysed = dict(zip(words, KiwiTokenizer()(words)))
        partial = tokens.with_suffix(".partial")
        partial.write_text(json.dumps([[t for w in text.split() for t in analysed[w]] for text in texts]),
                           encoding="utf-8")
        partial.replace(tokens)
    shutil.copyfile(tokens, work / "tokens.json")
    emb = CACHE / f"emb-{SEARCH_MODEL}-{key}"  # encode_corpus resumes: a complete cache encodes nothing
    encode_corpus(SEARCH_MODEL, ids, texts, emb, encoder=load_model(SEARCH_MODEL),
                  options=EncodeOptions(batch_size=256, show_progress=False))
    (work / "emb").symlink_to(emb)


def bench_search(store: str, n_docs: int, n_queries: int, work: Path) -> dict:
    """One store, in its own process: build from the prepared embeddings and tokens (:func:`prepare_search`),
    then one query at a time per mode."""
    import torch

    from koembed.index import QdrantTarget, build_index_from_embeddings, load_index
    from koembed.models import load_model

    torch.set_num_threads(1)  # both stores alike (the query encoder)
    ids, texts, queries, _ = synthetic_corpus(n_docs, n_queries)
    model_dir = SEARCH_MODEL
    encoder = load_model(model_dir)
    tokens = json.loads((work / "tokens.json").read_text(encoding="utf-8"))
    target = QdrantTarget() if store == "qdrant" else None
    out = work / f"idx-{store}"
    start = time.perf_counter()
    if store == "qdrant":  # the store's libraries, imported before the build's clock starts (as torch is)
        import qdrant_client  # noqa: F401
        import qdrant_edge  # noqa: F401
    import faiss  # noqa: F401 (both stores' index packages import it)
    import_s = time.perf_counter() - start
    start, cpu = time.perf_counter(), time.process_time()
    build_index_from_embeddings(model_dir, [work / "emb"], ids, texts, out, target=target, encoder=encoder,
                                tokens=tokens, show_progress=False)
    build_s, build_cpu_s = time.perf_counter() - start, time.process_time() - cpu
    row = {"store": store, "docs": n_docs, "queries": n_queries, "import_s": round(import_s, 2),
           "build_s": round(build_s, 1), "build_cpu_s": round(build_cpu_s, 1)}
    del tokens
    start = time.perf_counter()
    index = load_index(out, encoder=encoder)
    row["load_s"] = round(time.perf_counter() - start, 2)
    try:
        for mode in ("dense", "bm25", "hybrid"):
            index.search(queries[:1], 10, mode)  # first call: BM25 statistics (FAISS store), Kiwi
            cpu = time.process_time()
            row[mode] = _latencies(lambda q, k, m=mode: index.search(q, k, m), queries)
            row[mode]["cpu_ms_per_query"] = round((time.process_time() - cpu) * 1000 / len(queries), 2)
    finally:
        getattr(index, "close", lambda: None)()
    row["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    row["disk_mb"] = round(sum(f.stat().st_size for f in out.rglob("*") if f.is_file()) / 2**20)
    shutil.rmtree(out, ignore_errors=True)
    return row


def bench_collisions() -> dict:
    """Distinct terms of every lexical field on KorQuAD dev + MS MARCO-ko (passages and queries), and how many
    share a term id: within the morphemes, and over all fields together (they share the one sparse vector)."""
    from koembed.data import load_retrieval_set
    from koembed.index.qdrant_sparse import collisions
    from koembed.lexical import FIELDS, KiwiTokenizer
    from koembed.lexical.fields import field_tokens

    root = Path(__file__).resolve().parents[1].parent / "shared" / "data"
    texts, passages = [], []
    for path in (root / "korquad-v1-dev" / "KorQuAD_v1.0_dev.json", root / "msmarco-ko" / "msmarco_kor.json"):
        rs = load_retrieval_set(path)
        passages += range(len(texts), len(texts) + len(rs.corpus))
        texts += list(rs.corpus.values()) + list(rs.queries.values())
    tokens = KiwiTokenizer()(texts)
    per_passage = {f: sum(len(set(field_tokens(f, tokens[i], texts[i]))) for i in passages) / len(passages)
                   for f in FIELDS}
    vocab = {f: {t for tok, text in zip(tokens, texts) for t in field_tokens(f, tok, text)} for f in FIELDS}
    keys = {t if f == "unigram" else f"{f}\x1f{t}" for f in FIELDS for t in vocab[f]}
    out = {"texts": len(texts), "passages": len(passages), "terms": {f: len(v) for f, v in vocab.items()},
           "distinct_terms_per_passage": {f: round(v, 1) for f, v in per_passage.items()}}
    for name, terms in (("unigram", vocab["unigram"]), ("all_fields", keys)):
        n = len(terms)
        groups = collisions(terms)
        out[name] = {"keys": n, "colliding_groups": len(groups), "groups": [list(g) for g in groups[:20]],
                     "expected_pairs_if_uniform": round(n * (n - 1) / 2 / 2**32, 1)}
    return out


def bench_agreement(model_name: str, split: str, every: int, data: str = "korquad") -> dict:
    """KorQuAD (``split`` articles) or MS MARCO-ko (``split`` half): per mode, how many queries get the same top
    10 from the Qdrant store as from koembed's in-memory retrievers, and ndcg@10 of both. ``model_name``
    ``tiny``: the tests' tiny XLM-R."""
    from koembed.data import load_retrieval_set
    from koembed.evaluation.metrics.ir import ir_metrics
    from koembed.index import QdrantTarget, build_index, load_index
    from koembed.lexical import DEFAULT, BM25Retriever, KiwiTokenizer
    from koembed.models import EncodeOptions, load_model
    from koembed.models.testing import make_tiny_xlmr
    from koembed.retrieval.dense import DenseRetriever
    from koembed.retrieval.hybrid import HybridRetriever

    path = common.KORQUAD if data == "korquad" else common.MSMARCO
    rs = load_retrieval_set(path, split=split)
    work = Path(tempfile.mkdtemp(prefix="scale-agree-"))
    if model_name == "tiny":
        model_name = str(make_tiny_xlmr(work / "tiny"))
    ids, texts, qids = list(rs.corpus), list(rs.corpus.values()), list(rs.queries)[::every]
    queries = [rs.queries[q] for q in qids]
    relevant = {q: {d for group in rs.relevant[q] for d in group} for q in qids}
    encoder = load_model(model_name)
    options = EncodeOptions(batch_size=32, show_progress=False)
    tokens = KiwiTokenizer()(texts)
    bm25 = BM25Retriever(DEFAULT, show_progress=False)
    bm25.fit_analysed(ids, texts, tokens)
    dense = DenseRetriever(encoder, "dense", options=options)
    dense.fit(ids, texts)
    koembed = {"bm25": bm25, "dense": dense, "hybrid": HybridRetriever([dense, bm25]),
               "hybrid-cc": HybridRetriever([dense, bm25], fusion="cc", weights=[0.4, 0.6])}
    build_index(model_name, ids, texts, work / "idx", target=QdrantTarget(), encoder=encoder, options=options,
                tokens=tokens)
    out = {"data": f"{data} {split}", "model": model_name, "passages": len(ids),
           "queries": len(qids)}
    try:
        with load_index(work / "idx", encoder=encoder) as index:
            for mode, retriever in koembed.items():
                weights = [0.4, 0.6] if mode == "hybrid-cc" else None
                mine = retriever.search(queries, 10)
                theirs = index.search(queries, 10, mode.split("-")[0], weights=weights)
                same = sum([d for d, _ in a] == [d for d, _ in b] for a, b in zip(mine, theirs))
                ndcg = [ir_metrics({q: [d for d, _ in hits] for q, hits in zip(qids, run)}, relevant)["ndcg@10"]
                        for run in (mine, theirs)]
                out[mode] = {"same_top10": same, "ndcg@10_koembed": round(ndcg[0], 4),
                             "ndcg@10_qdrant": round(ndcg[1], 4)}
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return out


def main() -> None:
    import sys

    parser = common.isolating(common.parser(__doc__))
    parser.add_argument("what", choices=["encode", "search", "collisions", "agreement"])
    parser.add_argument("--model", default="minilm", help="agreement: the dense model")
    parser.add_argument("--data", default="korquad", choices=["korquad", "msmarco"], help="agreement: the set")
    parser.add_argument("--split", default="test", help="agreement: KorQuAD articles (test = the 40 held out)")
    parser.add_argument("--every", type=int, default=1, help="agreement: every n-th query")
    parser.add_argument("--docs", type=int, default=200_000)
    parser.add_argument("--sizes", default=None, help="search: corpus sizes, one after the other (10000,200000)")
    parser.add_argument("--queries", type=int, default=50)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--chunk-size", type=int, default=4096)
    parser.add_argument("--engines", default="single-1-thread,ray,single",
                        help="encode: which settings, in the interleaving order")
    args = parser.parse_args()
    if args.one:  # one store's search bench in a fresh process: "STORE:DOCS:WORK"
        store, docs, work = args.one.split(":", 2)
        print(json.dumps(bench_search(store, int(docs), args.queries, Path(work))))
        return
    if args.what == "encode":
        result = bench_encode(args.docs, args.repeats, args.chunk_size, args.engines.split(","))
    elif args.what == "collisions":
        result = bench_collisions()
    elif args.what == "agreement":
        result = bench_agreement(args.model, args.split, args.every, args.data)
    else:
        result = {"runs": []}
        for docs in common.int_list(args.sizes) if args.sizes else [args.docs]:
            work = Path(tempfile.mkdtemp(prefix="scale-search-"))
            try:
                start = time.perf_counter()
                prepare_search(docs, args.queries, work)
                result.setdefault("prepare_s", {})[docs] = round(time.perf_counter() - start, 1)
                for store in ("faiss", "qdrant"):
                    cmd = [sys.executable, __file__, "search", "--queries", str(args.queries),
                           "--one", f"{store}:{docs}:{work}"]
                    result["runs"].append(common.isolated(cmd, {"store": store, "docs": docs}))
                    print(json.dumps(result["runs"][-1]), flush=True)
            finally:
                shutil.rmtree(work, ignore_errors=True)
    print(json.dumps(result)[:2000])
    common.save(args.out, result)


if __name__ == "__main__":
    main()
