"""koembed's lexical retrievers against Lucene BM25 (nori, and Anserini's CJK bigrams), side by side in one run, on
the same corpora and queries: quality, build time, index size, load time, query latency and memory.

    make nori             # Debian's liblucene8-java + default-jdk-headless, bench/nori/NoriBench.java compiled
    make peers            # make nori, pyjnius, then this script
    python bench/peers.py --out out/peers.json --synthetic 100000,1000000
    python bench/peers.py --out out/peers-variants.json --synthetic '' --query-variants none,nospace,swap

Systems (bench/peer_systems.py): ``nori`` = Lucene 8.8.1 (Debian's liblucene8-java) BM25 k1=1.2, b=0.75 with
nori's ``KoreanAnalyzer`` at its defaults (Elasticsearch's ``nori`` analyzer) and Elasticsearch's ``match`` query,
through ``bench/nori/NoriBench.java`` (compiled into ``--cache``/nori); every run first prints nori's tokens of
one sentence. ``lucene-cjk`` (``lucene`` is an alias) = Anserini 0.22.1 (the fat jar inside the pyserini 0.22.1
wheel, cached in ``--cache``, outside the repository) with ``-language ko`` and BM25 k1=1.2, b=0.75: in Anserini
0.22.1 ``-language ko`` is Lucene's CJKAnalyzer (character bigrams), not nori, which the jar does not hold; the
tables label it so. ``bm25-phrase``, ``bm25`` (MeCab-ko, the default analyzer) and ``bm25-phrase@kiwi``, ``bm25@kiwi`` (Kiwi) = koembed
indexes (``koembed index build --lexical SPEC``; the dense half
is the bundled static-ko, which every koembed index needs) searched with ``--mode bm25``. Whatever koembed is
on ``PYTHONPATH`` is measured, through its own CLI and API in fresh processes.

Corpora: KorQuAD 1.0 dev's 40 held-out articles (``--split test`` of koembed's SQuAD reader: 1,814 questions,
354 paragraphs), MS MARCO-ko's test half (3,490 queries over all 7,279 passages), and synthetic corpora of
``--synthetic`` sizes built in ``--work`` (never in the repository) from real Korean passages: MS MARCO-ko's
7,279 passages repeated, copy r with its sentences rotated by r (so copies are not byte-identical), queried with
the MS MARCO-ko test queries (timing only: copies make quality meaningless there).

Per system and corpus: accuracy@1 and ndcg@10 (koembed's metrics on every system's top 10), build seconds and
peak RSS (the build command), index bytes on disk, load = the system's own command line in a fresh process with
one query, to its first result (koembed: ``koembed search --mode bm25 --json``; lucene-cjk: ``SearchCollection``;
nori: ``NoriBench load``),
first result in the worker (a fresh process: start, open the index, first query), query p50/p99 (queries after
the first, each alone, k=10) and the worker's peak RSS (its ``VmHWM``). Build and load RSS are the peak of the
process tree's resident memory, sampled every 0.1 s.

``--query-variants none,nospace,...`` (``none``: as written; the others koembed.evaluation.variants's seeded
kinds, ``--variant-seed``, the strings ``koembed bench --query-variants`` scores) runs every system on each query
form: each index is built and loaded once, and one search worker answers every form's queries in turn, so each
form is only searched; quality is reported per form, latency on the first form's queries. ``--skip SYSTEM@CORPUS`` leaves a cell out (printed as skipped);
a step over ``--cap-mb`` resident or ``--timeout-s`` is killed and printed as over.
"""

from __future__ import annotations

import json
import re
import shutil
import statistics
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import common
from peer_systems import (
    LABELS,
    NORI_SENTENCE,
    Koembed,
    Lucene,
    Nori,
    anserini_jar,
    folder_bytes,
    measure,
    nori_classpath,
    nori_tokens,
)

from koembed.data import load_retrieval_set
from koembed.evaluation.runner import score_run
from koembed.evaluation.variants import KINDS, make_variants

SYSTEMS = ("nori", "lucene-cjk", "bm25-phrase", "bm25", "bm25-phrase@kiwi", "bm25@kiwi")
ALIASES = {"lucene": "lucene-cjk"}  # the name before nori was added (older commands in docs/BENCHMARKS.md)
ADDED = 1000  # passages added (then deleted) on the synthetic corpora: koembed's incremental update
SENTENCE_END = re.compile(r"(?<=[.?!])\s+")
AS_WRITTEN = "none"
FORMS = (AS_WRITTEN, *KINDS)
FORM_SEP = "|"  # worker query id = FORM|QID: one worker searches every form


def parse_forms(text: str) -> list[str]:
    """``none,nospace`` -> ``["none", "nospace"]`` (``none``: the queries as written), checked, duplicates dropped."""
    forms = list(dict.fromkeys(f.strip() for f in text.split(",") if f.strip()))
    unknown = [f for f in forms if f not in FORMS]
    if unknown or not forms:
        raise ValueError(f"unknown query variant(s) {unknown or [text]}: use {', '.join(FORMS)}")
    return forms


def query_forms(queries: list[tuple[str, str]], forms: list[str], seed: int) -> list[tuple[str, str]]:
    """The worker's query list: every form's queries in turn, ids ``FORM|QID``; the strings are
    :func:`koembed.evaluation.variants.make_variants`'s (the same as ``koembed bench --query-variants``)."""
    qids, texts = [q for q, _ in queries], [t for _, t in queries]
    out = []
    for form in forms:
        changed = texts if form == AS_WRITTEN else make_variants(texts, form, seed)
        out.extend((f"{form}{FORM_SEP}{qid}", text) for qid, text in zip(qids, changed))
    return out


def split_forms(hits: dict[str, Any]) -> dict[str, dict[str, list[tuple[str, float]]]]:
    """The worker's hits keyed ``FORM|QID`` -> ``{form: {qid: [(doc, score)]}}``."""
    out: dict[str, dict[str, list[tuple[str, float]]]] = {}
    for key, found in hits.items():
        form, _, qid = key.partition(FORM_SEP)
        out.setdefault(form, {})[qid] = [(doc, score) for doc, score in found]
    return out


def rotated(text: str, r: int) -> str:
    """``text`` with its sentences rotated left by ``r`` (a one-sentence passage stays as it is)."""
    sentences = SENTENCE_END.split(text)
    r %= len(sentences)
    return " ".join(sentences[r:] + sentences[:r])


def corpora(synthetic: list[int], latency_queries: int) -> Iterator[dict[str, Any]]:
    """The corpora to run, one at a time (a 1M corpus is built only when its turn comes): name, passages
    ``[(id, text)]``, queries ``[(qid, text)]`` and the retrieval set that judges them (None: synthetic)."""
    for name, (path, split) in {"korquad-test": (common.KORQUAD, "test"),
                                "msmarco-ko-test": (common.MSMARCO, "test")}.items():
        rs = load_retrieval_set(path, split=split)
        yield {"name": name, "docs": list(rs.corpus.items()), "queries": list(rs.queries.items()), "rs": rs}
    if synthetic:
        base = list(load_retrieval_set(common.MSMARCO).corpus.items())
        test_queries = list(load_retrieval_set(common.MSMARCO, split="test").queries.items())[:latency_queries]
        for size in synthetic:
            docs = [(f"{doc_id}~{i // len(base)}", rotated(text, i // len(base)))
                    for i in range(size) for doc_id, text in [base[i % len(base)]]]
            label = f"{size // 10**6}m" if size % 10**6 == 0 else f"{size // 1000}k" if size % 1000 == 0 else str(size)
            yield {"name": f"synthetic-{label}", "docs": docs, "queries": test_queries, "rs": None}
            del docs


def percentile(values: list[float], q: float) -> float:
    """The q-th percentile (0..100) of ``values``, inclusive method (statistics.quantiles)."""
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def run_cell(system, corpus: dict[str, Any], work: Path, args) -> dict[str, Any]:
    """Build, load and search one system on one corpus; every step a fresh process."""
    cell: dict[str, Any] = {"system": system.name, "corpus": corpus["name"], "passages": len(corpus["docs"]),
                            "queries": len(corpus["queries"])}
    folder = work / corpus["name"] / system.name
    forms = args.query_variants
    index = folder / "index"
    queries = folder / "queries.json"
    if args.reuse and (folder / "build-measured.json").is_file() and index.is_dir():
        cell["build"] = json.loads((folder / "build-measured.json").read_text(encoding="utf-8"))
        cell["build"]["reused"] = True
    else:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir(parents=True)
        source = system.write_corpus(corpus["docs"], folder / "corpus")
        cell["build"] = measure(system.build(source, index), folder / "build.log", args.cap_mb, args.timeout_s)
        if (folder / "build.json").is_file():  # koembed's stages
            cell["build"]["stages"] = json.loads((folder / "build.json").read_text(encoding="utf-8"))
        (folder / "build-measured.json").write_text(json.dumps(cell["build"]), encoding="utf-8")
    queries.write_text(json.dumps(query_forms(corpus["queries"], forms, args.variant_seed), ensure_ascii=False),
                       encoding="utf-8")
    if cell["build"]["returncode"] != 0:
        return cell
    cell["index_bytes"] = folder_bytes(index)
    first_query = corpus["queries"][0][1]
    cell["load"] = measure(system.load(index, first_query, folder), folder / "load.log", args.cap_mb, args.timeout_s)
    result = folder / "worker.json"
    cell["worker"] = measure(system.worker(index, queries, result, 10), folder / "worker.log", args.cap_mb,
                             args.timeout_s)
    if cell["worker"]["returncode"] != 0:
        return cell
    found = json.loads(result.read_text(encoding="utf-8"))
    first_form = found["latencies_s"][:len(corpus["queries"])]  # latency: the first form's queries
    later = [s * 1000 for s in first_form[1:]] or [first_form[0] * 1000]
    cell.update(first_result_s=found["first_result_s"], worker_peak_rss_mb=found["peak_rss_mb"],
                worker_rss_end_mb=found.get("rss_end_mb", {}),
                query_p50_ms=round(percentile(later, 50), 3), query_p99_ms=round(percentile(later, 99), 3),
                searched_with={k: v for k, v in found.items() if k not in ("hits", "latencies_s", "first_result_s",
                                                                           "peak_rss_mb", "rss_end_mb")})
    by_form = split_forms(found["hits"])
    if corpus["rs"] is None and hasattr(system, "add"):  # a synthetic corpus: add 1,000 new passages twice, delete
        new, warm_new = ([(f"{tag}~{i}", rotated(text, 3 + i)) for i, (_, text) in enumerate(corpus["docs"][:ADDED])]
                         for tag in ("added", "added-warm"))
        cell["add"] = measure(system.add(index, system.write_corpus(new, folder / "added")), folder / "add.log",
                              args.cap_mb, args.timeout_s)
        warm = measure(system.add_warm(index, system.write_corpus(warm_new, folder / "added-warm"),
                                       folder / "add-warm.json"), folder / "add-warm.log", args.cap_mb, args.timeout_s)
        if warm["returncode"] == 0:
            warm.update(json.loads((folder / "add-warm.json").read_text(encoding="utf-8")))
        cell["add_warm"] = warm
        cell["delete"] = measure(system.delete(index, [i for i, _ in new + warm_new]), folder / "delete.log",
                                 args.cap_mb, args.timeout_s)  # both adds' passages: the index is as built again
    if corpus["rs"] is not None:
        for form in forms:
            ir, _ = score_run(corpus["rs"], by_form[form], top_k=(10,))
            cell.setdefault("variants", {})[form] = {m: round(ir[m], 4) for m in ("accuracy@1", "ndcg@10")}
        cell.update(cell["variants"][forms[0]])
    if args.run_out:
        args.run_out.mkdir(parents=True, exist_ok=True)
        for form in forms:
            suffix = "" if form == AS_WRITTEN else f".{form}"
            with open(args.run_out / f"{corpus['name']}.{system.name}{suffix}.jsonl", "w", encoding="utf-8") as f:
                for qid, h in by_form[form].items():
                    for rank, (doc, score) in enumerate(h, 1):
                        f.write(json.dumps({"qid": qid, "docid": doc, "rank": rank, "score": score}) + "\n")
    if not args.keep and not args.reuse:
        shutil.rmtree(index, ignore_errors=True)
        shutil.rmtree(folder / "corpus", ignore_errors=True)
    return cell


def _analysis_s(build: dict[str, Any]) -> Any:
    """Seconds of a koembed build spent analysing (``kiwi_s`` in results written before analyzers were chosen)."""
    stages = build.get("stages", {})
    return stages.get("analysis_s", stages.get("kiwi_s", ""))


def _n(value: Any, digits: int) -> str:
    return f"{value:.{digits}f}" if isinstance(value, (int, float)) else str(value)


def _rss(cell: dict[str, Any], worker: dict[str, Any]) -> str:
    """Peak RSS, and at the end how much of it was the process's own memory and how much mapped file pages."""
    peak = _n(cell.get("worker_peak_rss_mb", worker["peak_rss_mb"]), 0)
    end = cell.get("worker_rss_end_mb") or {}
    return f"{peak} ({_n(end['anon'], 0)} own + {_n(end['file'], 0)} mapped)" if "anon" in end else peak


def table(cells: list[dict[str, Any]]) -> None:
    """The side-by-side Markdown table (docs/BENCHMARKS.md shows it)."""
    headers = ["corpus", "system", "passages", "acc@1", "ndcg@10", "build s", "of it analysis s", "build RSS MB",
               "index MB", "load s (CLI)", "first result s (worker)", "p50 ms", "p99 ms", "search RSS MB",
               f"add {ADDED:,} s (CLI)", "add s (warm)", f"delete {2 * ADDED:,} s (CLI)"]
    rows = []
    for c in cells:
        head = [c["corpus"], LABELS.get(c["system"], c["system"]), c["passages"]]
        if "skipped" in c:
            rows.append([*head, "skipped", *[""] * 13])
            continue
        b = c["build"]
        if b["returncode"] != 0:
            rows.append([*head, "", "", f"failed ({b.get('over') or 'error'}) at {b['seconds']:.0f}", "",
                         _n(b["peak_rss_mb"], 0), *[""] * 9])
            continue
        w, ld = c["worker"], c["load"]
        load = _n(ld["seconds"], 2) if ld["returncode"] == 0 else f"over ({ld.get('over')}) at {ld['seconds']:.0f}"
        first = c.get("first_result_s", f"over ({w.get('over')}) at {w['seconds']:.0f}")
        steps = [c.get(name, {}) for name in ("add", "add_warm", "delete")]
        rows.append([*head, _n(c.get("accuracy@1", "-"), 4), _n(c.get("ndcg@10", "-"), 4), _n(b["seconds"], 1),
                     _n(_analysis_s(b), 1), _n(b["peak_rss_mb"], 0),
                     _n(c["index_bytes"] / 2**20, 1), load, _n(first, 2), _n(c.get("query_p50_ms", ""), 2),
                     _n(c.get("query_p99_ms", ""), 2), _rss(c, w),
                     *[_n(step.get("add_s", step.get("seconds", "")), 2) for step in steps]])
    common.print_markdown(headers, rows)


def variants_table(cells: list[dict[str, Any]], forms: list[str]) -> None:
    """Per judged corpus and system, accuracy@1 / ndcg@10 on each query form (docs/BENCHMARKS.md shows it)."""
    rows = [[c["corpus"], LABELS.get(c["system"], c["system"]), *(f"{c['variants'][f]['accuracy@1']:.4f} / {c['variants'][f]['ndcg@10']:.4f}"
                                         for f in forms)] for c in cells if "variants" in c]
    if rows:
        common.print_markdown(["corpus", "system", *("as written" if f == AS_WRITTEN else f for f in forms)], rows)


def main() -> None:
    parser = common.parser(__doc__)
    parser.add_argument("--synthetic", type=common.int_list, default=[100_000, 1_000_000],
                        help="sizes of the synthetic corpora ('' for none)")
    parser.add_argument("--systems", default=",".join(SYSTEMS), help="comma-separated: " + ", ".join(SYSTEMS))
    parser.add_argument("--skip", action="append", default=[], help="SYSTEM@CORPUS to leave out (repeatable)")
    parser.add_argument("--query-variants", "--query-variant", default=AS_WRITTEN, type=parse_forms,
                        help="comma-separated query forms, each searched on the same indexes: " + ", ".join(FORMS))
    parser.add_argument("--variant-seed", type=int, default=0, help="seed of the query variants")
    parser.add_argument("--latency-queries", type=int, default=1000, help="queries per synthetic corpus")
    parser.add_argument("--threads", type=int, default=2, help="Lucene indexing threads, Anserini and nori (koembed's analyzer uses every core)")
    parser.add_argument("--cache", type=Path, default=Path.home() / ".cache" / "koembed-peers",
                        help="where the pyserini wheel, the Anserini jar and the compiled NoriBench are kept")
    parser.add_argument("--work", type=Path, default=Path("/tmp/koembed-peers"), help="corpora and indexes")
    parser.add_argument("--run-out", type=Path, help="write each system's top 10 per query here (JSON lines)")
    parser.add_argument("--cap-mb", type=float, default=12_000, help="kill a step over this resident memory")
    parser.add_argument("--timeout-s", type=float, default=1800, help="kill a step running longer")
    parser.add_argument("--keep", action="store_true", help="keep the indexes and corpus files")
    parser.add_argument("--reuse", action="store_true", help="reuse an index (and its build measurement) kept by an "
                        "earlier --keep or --reuse run in --work; measure only load, search, add and delete again")
    args = parser.parse_args()
    names = list(dict.fromkeys(ALIASES.get(s, s) for s in args.systems.split(",") if s))
    unknown = set(names) - set(SYSTEMS)
    if unknown:
        parser.error(f"unknown systems {sorted(unknown)}: use {', '.join(SYSTEMS)}")
    skip = {"@".join([ALIASES.get(s, s), *c]) for s, *c in (x.split("@", 1) for x in args.skip)}
    nori = None
    if "nori" in names:
        classpath = nori_classpath(args.cache)
        nori = {"sentence": NORI_SENTENCE, "tokens": nori_tokens(classpath)}
        print(f"nori (KoreanAnalyzer defaults) tokens of {NORI_SENTENCE!r}: {nori['tokens']}", flush=True)
    systems = [Nori(classpath, args.threads) if n == "nori" else Lucene(anserini_jar(args.cache), args.threads)
               if n == "lucene-cjk" else Koembed(n) for n in names]
    cells = []
    for corpus in corpora(args.synthetic, args.latency_queries):
        for system in systems:
            if f"{system.name}@{corpus['name']}" in skip:
                cells.append({"system": system.name, "corpus": corpus["name"], "passages": len(corpus["docs"]),
                              "skipped": True})
                continue
            cells.append(run_cell(system, corpus, args.work, args))
            print(json.dumps({k: v for k, v in cells[-1].items() if k != "searched_with"}, ensure_ascii=False),
                  file=sys.stderr, flush=True)
    searched = {name: next((c["searched_with"] for c in cells if c["system"] == name and "searched_with" in c),
                           None) for name in ("lucene-cjk", "nori") if name in names}
    result = {"query_variants": args.query_variants, "variant_seed": args.variant_seed, "labels": LABELS,
              "nori_tokens": nori, **searched, "cells": cells}
    common.save(args.out, result)
    print(f"query variants: {', '.join(args.query_variants)} (seed {args.variant_seed})")
    for name, info in searched.items():
        print(f"{LABELS[name]}: {info}")
    table(cells)
    variants_table(cells, args.query_variants)


if __name__ == "__main__":
    main()
