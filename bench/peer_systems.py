"""The systems bench/peers.py compares, and how each is measured in fresh processes.

Every system is three commands: **build** an index from a corpus, **load** (its own command line in a fresh
process, one query, to its first result: what a user waits for) and a **search worker** (a fresh process that
opens the index and runs every query one at a time, timing each; its peak RSS is the search process's memory).

- ``lucene-cjk`` (printed "Lucene CJKAnalyzer (Anserini -language ko, character bigrams)"; ``lucene`` is kept as
  an alias on the command line): Anserini 0.22.1 (the fat jar inside the pyserini 0.22.1 wheel),
  ``IndexCollection`` and ``SearchCollection`` with ``-language ko`` and BM25 k1=1.2, b=0.75; the worker calls
  Anserini's ``SimpleSearcher`` through pyjnius, as pyserini's ``LuceneSearcher`` does. Anserini 0.22.1's
  ``-language ko`` is Lucene's ``CJKAnalyzer`` (overlapping character bigrams, ``io.anserini.analysis.AnalyzerMap``),
  not nori: the jar holds no ``lucene-analysis-nori``. The worker records the analyzer it searched with.
- ``nori``: Lucene 8.8.1 (Debian's ``liblucene8-java``, whose jars in /usr/share/java are named ``*-8.7.0.jar``)
  with ``KoreanAnalyzer()`` at its defaults (Elasticsearch's ``nori`` analyzer: no user dictionary,
  ``DecompoundMode.DISCARD``, the default stop tags, reading forms, lowercasing), ``BM25Similarity(1.2, 0.75)``,
  and the query Elasticsearch's ``match`` query builds (Lucene's ``QueryBuilder.createBooleanQuery``: one SHOULD
  ``TermQuery`` per analysed token position, repeated terms repeated). All three commands are modes of one small
  Java program kept in the repository, ``bench/nori/NoriBench.java`` (``make nori`` installs the packages and
  compiles it into ``~/.cache/koembed-peers/nori``; :func:`nori_classpath` compiles it again when the source is
  newer). Build: ``NoriBench index`` (``--threads`` indexing threads, then one segment sorted by id). Load:
  ``NoriBench load``, one query in a fresh JVM to a TREC run file, as ``SearchCollection`` is for ``lucene-cjk``.
  Worker: ``NoriBench search``, a fresh JVM that opens the index and times each query alone with
  ``System.nanoTime`` around analysis + search + reading the ids, the first result against the parent's spawn time,
  and its own ``VmHWM`` / ``RssAnon`` / ``RssFile`` from /proc/self/status: the same quantities as the Python
  worker below. It is Java alone (no Python, no pyjnius): the simplest, and what a Java service pays per query;
  the ``lucene-cjk`` worker's numbers also hold a Python interpreter and a pyjnius call per query (tens of
  microseconds, and ~30-40 MB of RSS). Ties: equal scores are ranked by ascending doc id, as koembed ranks them
  (the index is sorted by the id's UTF-8 bytes, i.e. code point order, Python's string order; see the Java file).
- ``bm25`` / ``bm25-phrase``: koembed's own CLI (``koembed index build --lexical SPEC``, ``koembed search
  --mode bm25``) and API (``koembed.index.load_index(...).search``), whichever koembed is on ``PYTHONPATH``.

Run as a script, this module is the search worker: ``python bench/peer_systems.py --worker lucene|koembed ...``.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import threading
import time
import zipfile
from pathlib import Path
from typing import Any

PYSERINI = "pyserini==0.22.1"
JAR = "anserini-0.22.1-fatjar.jar"
K1, B = 1.2, 0.75
KOEMBED_MODEL = "static-ko"  # every koembed index holds a dense part; the bundled static model is the cheapest
HERE = Path(__file__).resolve()
NORI_SOURCE = HERE.parent / "nori" / "NoriBench.java"
LUCENE_JARS = ("lucene-core", "lucene-analyzers-common", "lucene-analyzers-nori")  # Debian's liblucene8-java
NORI_SENTENCE = "전세 보증금을 돌려받지 못했어요"
LABELS = {"lucene-cjk": "Lucene CJKAnalyzer (Anserini -language ko, character bigrams)",
          "nori": "Lucene nori (KoreanAnalyzer defaults, Lucene 8.8.1)"}


def anserini_jar(cache: Path) -> Path:
    """The Anserini fat jar, unzipped once from the pyserini 0.22.1 wheel (``pip download``) into ``cache``."""
    jar = cache / JAR
    if jar.exists():
        return jar
    cache.mkdir(parents=True, exist_ok=True)
    wheels = list(cache.glob("pyserini-0.22.1-*.whl"))
    if not wheels:
        subprocess.run([sys.executable, "-m", "pip", "download", "--no-deps", "-q", PYSERINI, "-d", str(cache)],
                       check=True)
        wheels = list(cache.glob("pyserini-0.22.1-*.whl"))
    partial = jar.with_suffix(".part")
    with zipfile.ZipFile(wheels[0]) as wheel, wheel.open(f"pyserini/resources/jars/{JAR}") as src, \
            open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst)
    partial.rename(jar)
    return jar


def nori_classpath(cache: Path, jars: Path = Path("/usr/share/java")) -> str:
    """The classpath of ``NoriBench``: Debian's Lucene 8 jars and the classes compiled into ``cache/nori`` (by
    ``make nori``, or here when they are missing or older than the source)."""
    found = []
    for name in LUCENE_JARS:
        matches = sorted(jars.glob(f"{name}-[0-9]*.jar"))
        if not matches:
            raise SystemExit(f"no {name} jar in {jars}: make nori (apt-get install liblucene8-java default-jdk-headless)")
        found.append(str(matches[-1]))
    classes = cache / "nori"
    compiled = classes / "NoriBench.class"
    if not compiled.exists() or compiled.stat().st_mtime < NORI_SOURCE.stat().st_mtime:
        if shutil.which("javac") is None:
            raise SystemExit("no javac on the PATH: make nori (apt-get install default-jdk-headless)")
        classes.mkdir(parents=True, exist_ok=True)
        subprocess.run(["javac", "-d", str(classes), "-cp", ":".join(found), str(NORI_SOURCE)], check=True)
    return ":".join([*found, str(classes)])


def nori_tokens(classpath: str, text: str = NORI_SENTENCE) -> str:
    """nori's tokens of ``text`` (``NoriBench tokens``), space-separated: what the analyzer really does."""
    return subprocess.run(["java", "-cp", classpath, "NoriBench", "tokens", text], check=True, capture_output=True,
                          text=True).stdout.strip()


def java_home() -> str:
    """JAVA_HOME for pyjnius: ``$JAVA_HOME``, else the JVM behind ``java`` on the PATH (Debian's default-java)."""
    if os.environ.get("JAVA_HOME"):
        return os.environ["JAVA_HOME"]
    java = shutil.which("java")
    if java is None:
        raise SystemExit("no java on the PATH: apt-get install -y default-jre-headless (make peers does)")
    return str(Path(os.path.realpath(java)).parents[1])


def peak_rss_mb() -> float:
    """This process's peak resident memory since it started its program (``VmHWM``; ``ru_maxrss`` would count the
    forked parent's pages too, which Linux carries across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)


def rss_parts_mb() -> dict[str, float]:
    """This process's resident memory now, split: ``anon`` (its own: heaps, Kiwi's model, the JVM's heap) and
    ``file`` (mapped file pages: memory-mapped index files are page cache, shared and reclaimable; Linux maps up
    to 64 KB of cached pages around each touched one)."""
    parts = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(("RssAnon:", "RssFile:")):
            parts[line[3:7].lower()] = round(int(line.split()[1]) / 1024, 1)
    return parts


def measure(cmd: list[str], log: Path, cap_mb: float, timeout_s: float) -> dict[str, Any]:
    """Run ``cmd`` (output to ``log``): wall seconds, peak RSS of its process tree (sampled every 0.1 s), exit
    code. A tree over ``cap_mb`` resident or past ``timeout_s`` is killed and recorded as ``over`` memory / time."""
    import psutil

    start = time.perf_counter()
    over: list[str] = []
    peak = [0]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env={**os.environ,
                                                                                 "JAVA_HOME": java_home()})
        done = threading.Event()

        def watch() -> None:
            try:
                root = psutil.Process(proc.pid)
                while not done.wait(0.1):
                    rss = sum(p.memory_info().rss for p in [root, *root.children(recursive=True)])
                    peak[0] = max(peak[0], rss)
                    reason = "memory" if rss > cap_mb * 2**20 else "time" if time.perf_counter() - start > timeout_s \
                        else None
                    if reason:
                        over.append(reason)
                        for p in [*root.children(recursive=True), root]:
                            p.kill()
                        return
            except psutil.Error:
                return

        watcher = threading.Thread(target=watch, daemon=True)
        watcher.start()
        proc.wait()
        done.set()
        watcher.join()
    result = {"seconds": round(time.perf_counter() - start, 3), "peak_rss_mb": round(peak[0] / 2**20, 1),
              "returncode": proc.returncode}
    if over or proc.returncode != 0:
        result["over"] = over[0] if over else None
        result["log_tail"] = log.read_text(errors="replace")[-600:]
    return result


def folder_bytes(path: Path) -> int:
    """Bytes of every file under ``path`` (an index on disk)."""
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


class Lucene:
    """Lucene BM25 through Anserini 0.22.1, ``-language ko`` (CJKAnalyzer: see the module docstring)."""

    name = "lucene-cjk"

    def __init__(self, jar: Path, threads: int):
        self.jar, self.threads = jar, threads

    def write_corpus(self, docs: list[tuple[str, str]], folder: Path) -> Path:
        """Anserini's JsonCollection: ``{"id", "contents"}`` lines, one file per indexing thread."""
        folder.mkdir(parents=True, exist_ok=True)
        files = [open(folder / f"part{i}.jsonl", "w", encoding="utf-8") for i in range(self.threads)]  # noqa: SIM115
        for i, (doc_id, text) in enumerate(docs):
            files[i % self.threads].write(json.dumps({"id": doc_id, "contents": text}, ensure_ascii=False) + "\n")
        for f in files:
            f.close()
        return folder

    def build(self, corpus: Path, index: Path) -> list[str]:
        return ["java", "-cp", str(self.jar), "io.anserini.index.IndexCollection", "-collection", "JsonCollection",
                "-input", str(corpus), "-index", str(index), "-generator", "DefaultLuceneDocumentGenerator",
                "-threads", str(self.threads), "-language", "ko"]

    def load(self, index: Path, query: str, work: Path) -> list[str]:
        topics = work / "one-query.tsv"
        topics.write_text(f"q\t{query}\n", encoding="utf-8")
        return ["java", "-cp", str(self.jar), "io.anserini.search.SearchCollection", "-index", str(index),
                "-topics", str(topics), "-topicreader", "TsvString", "-output", str(work / "one-query.trec"),
                "-bm25", "-bm25.k1", str(K1), "-bm25.b", str(B), "-language", "ko", "-hits", "10"]

    def worker(self, index: Path, queries: Path, result: Path, k: int) -> list[str]:
        return [sys.executable, str(HERE), "--worker", "lucene", "--index", str(index), "--queries", str(queries),
                "--result", str(result), "-k", str(k), "--jar", str(self.jar), "--spawned", repr(time.time())]


class Nori(Lucene):
    """Lucene 8.8.1 BM25 with nori's ``KoreanAnalyzer`` through ``bench/nori/NoriBench.java`` (module docstring)."""

    name = "nori"

    def __init__(self, classpath: str, threads: int):
        self.classpath, self.threads = classpath, threads

    def _java(self, *args: Any) -> list[str]:
        return ["java", "-cp", self.classpath, "NoriBench", *map(str, args)]

    def build(self, corpus: Path, index: Path) -> list[str]:
        return self._java("index", corpus, index, self.threads)

    def load(self, index: Path, query: str, work: Path) -> list[str]:
        return self._java("load", index, query, work / "one-query.trec", 10)

    def worker(self, index: Path, queries: Path, result: Path, k: int) -> list[str]:
        return self._java("search", index, queries, result, k, repr(time.time()))


class Koembed:
    """A koembed FAISS index whose lexical half is ``spec`` (``bm25-phrase``, ``bm25@kiwi``: the analyzer is the
    spec's, MeCab-ko by default), searched ``--mode bm25``."""

    def __init__(self, spec: str):
        self.name = self.spec = spec

    def write_corpus(self, docs: list[tuple[str, str]], folder: Path) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "passages.jsonl"
        with open(path, "w", encoding="utf-8") as f:
            for doc_id, text in docs:
                f.write(json.dumps({"id": doc_id, "text": text}, ensure_ascii=False) + "\n")
        return path

    def build(self, corpus: Path, index: Path) -> list[str]:
        """What ``koembed index build --lexical SPEC`` runs, in a worker that times the analysis apart from the
        rest (model load, encoding, FAISS, BM25 segments, writing): ``build_index(tokens=...)`` is the API the
        CLI's ``--engine ray`` path uses for tokens analysed elsewhere. Timings go to ``build.json`` beside it."""
        return [sys.executable, str(HERE), "--worker", "koembed-build", "--index", str(index), "--queries",
                str(corpus), "--result", str(index.parent / "build.json"), "--spec", self.spec,
                "--spawned", repr(time.time())]

    def add(self, index: Path, corpus: Path) -> list[str]:
        """``koembed index add`` of the passages in ``corpus`` (a fresh process: model, analyzer and index load)."""
        return [sys.executable, "-m", "koembed.cli", "index", "add", "--index", str(index), "--docs", str(corpus),
                "-q"]

    def add_warm(self, index: Path, corpus: Path, result: Path) -> list[str]:
        """The same add in a worker that loads the model and the analyzer first and times ``add_documents`` alone:
        what an ingesting service that keeps both loaded pays per add."""
        return [sys.executable, str(HERE), "--worker", "koembed-add", "--index", str(index), "--queries",
                str(corpus), "--result", str(result), "--spawned", repr(time.time())]

    def delete(self, index: Path, ids: list[str]) -> list[str]:
        """``koembed index delete`` of ``ids``."""
        return [sys.executable, "-m", "koembed.cli", "index", "delete", "--index", str(index),
                *[a for i in ids for a in ("--id", i)]]

    def load(self, index: Path, query: str, work: Path) -> list[str]:
        return [sys.executable, "-m", "koembed.cli", "search", query, "--index", str(index), "--mode", "bm25",
                "-k", "10", "--json"]

    def worker(self, index: Path, queries: Path, result: Path, k: int) -> list[str]:
        return [sys.executable, str(HERE), "--worker", "koembed", "--index", str(index), "--queries", str(queries),
                "--result", str(result), "-k", str(k), "--spawned", repr(time.time())]


def _lucene_searcher(index: str, jar: str):
    os.environ.setdefault("JAVA_HOME", java_home())
    import jnius_config

    jnius_config.set_classpath(jar)
    from jnius import autoclass

    searcher = autoclass("io.anserini.search.SimpleSearcher")(index)
    searcher.set_language("ko")  # what IndexCollection -language ko analysed with
    searcher.set_bm25(K1, B)
    info = {"analyzer": searcher.get_analyzer().getClass().getName(), "similarity": searcher.get_similarity().toString()}
    return (lambda query, k: [(hit.docid, float(hit.score)) for hit in searcher.search(query, k)]), info


def _koembed_searcher(index: str):
    import koembed
    from koembed.index import load_index

    idx = load_index(index)
    return (lambda query, k: idx.search([query], k, mode="bm25")[0]), {"koembed": koembed.__file__}


def _koembed_build(corpus: str, index: str, spec: str, result: str, spawned: float) -> None:
    """``koembed index build`` in stages: read the passages, the analyzer's analysis (its start included), then
    everything else."""
    from koembed.data import load_documents
    from koembed.index import IndexParams, build_index
    from koembed.lexical import get_analyzer, lexical_config

    start = time.perf_counter()
    docs = load_documents(corpus)
    read = time.perf_counter()
    config = lexical_config(spec, required=True)
    tokens = get_analyzer(config.analyzer)(list(docs.values()), show_progress=False)
    analysed = time.perf_counter()
    build_index(KOEMBED_MODEL, list(docs), list(docs.values()), index, params=IndexParams(lexical=config),
                tokens=tokens)
    done = time.perf_counter()
    Path(result).write_text(json.dumps({
        "process_start_s": round(time.time() - spawned - (done - start), 3), "read_s": round(read - start, 3),
        "analyzer": config.analyzer, "analysis_s": round(analysed - read, 3), "rest_s": round(done - analysed, 3),
        "peak_rss_mb": peak_rss_mb()}))


def _koembed_add(corpus: str, index: str, result: str) -> None:
    """Load static-ko and the index's analyzer, then time ``add_documents`` of ``corpus`` alone."""
    start = time.perf_counter()
    from koembed.data import load_documents
    from koembed.index import add_documents, load_index
    from koembed.models import load_model

    docs = load_documents(corpus)
    encoder = load_model(KOEMBED_MODEL)
    load_index(index).analyzer(["워밍업"], show_progress=False)  # Kiwi's model loads at its first analysis
    loaded = time.perf_counter()
    add_documents(index, list(docs), list(docs.values()), encoder=encoder)
    done = time.perf_counter()
    Path(result).write_text(json.dumps({"load_s": round(loaded - start, 3), "add_s": round(done - loaded, 3),
                                        "peak_rss_mb": peak_rss_mb()}))


def worker_main(argv: list[str] | None = None) -> None:
    """The search worker: open the index, run each query alone, write hits, latencies and peak RSS as JSON."""
    made = argparse.ArgumentParser()
    made.add_argument("--worker", choices=("lucene", "koembed", "koembed-build", "koembed-add"), required=True)
    for name in ("--index", "--queries", "--result", "--jar", "--spec"):
        made.add_argument(name)
    made.add_argument("-k", type=int, default=10)
    made.add_argument("--spawned", type=float, required=True, help="time.time() when the parent started us")
    args = made.parse_args(argv)
    if args.worker == "koembed-build":
        _koembed_build(args.queries, args.index, args.spec, args.result, args.spawned)
        return
    if args.worker == "koembed-add":
        _koembed_add(args.queries, args.index, args.result)
        return
    queries = json.loads(Path(args.queries).read_text(encoding="utf-8"))
    search, info = (_lucene_searcher(args.index, args.jar) if args.worker == "lucene"
                    else _koembed_searcher(args.index))
    hits, latencies, first_at = {}, [], None
    for qid, text in queries:
        start = time.perf_counter()
        hits[qid] = search(text, args.k)
        latencies.append(time.perf_counter() - start)
        first_at = first_at or time.time()
    Path(args.result).write_text(json.dumps({
        "first_result_s": round(first_at - args.spawned, 3) if first_at else None, "peak_rss_mb": peak_rss_mb(),
        "rss_end_mb": rss_parts_mb(),
        "latencies_s": latencies, "hits": hits, **info}, ensure_ascii=False), encoding="utf-8")


if __name__ == "__main__":
    worker_main()
