"""Why a retriever wins or loses: per query, the gold passage's rank in every run, the top hits with the query's
content morphemes highlighted, which retriever wins, and failure kinds computed from the judgments alone.

:func:`failure_analysis` builds the data (``koembed bench --report`` also stores it in ``results.json`` as
``"analysis"``); :func:`write_report` writes it as one self-contained HTML page (inline script and style, no CDN,
nothing fetched; the data rides in a ``<script type="application/json">`` block and enters the page as text nodes,
never as HTML; a Content-Security-Policy allows only that one script, by its hash).

Failure kinds (``KINDS``): per run, ``missed`` (no relevant passage in the top 100), ``gold_rank_2_5`` (the best
relevant passage at rank 2 to 5: a near miss), ``top1_same_document`` (the top hit is not relevant but has the
title of a relevant one: a neighbouring paragraph of the same article; only where the set has titles, as KorQuAD
and BEIR sets do); per query, ``no_shared_morpheme`` (no content morpheme of the query occurs in any relevant
passage: lexical retrieval cannot match it) and ``long_query`` (more than :data:`LONG_QUERY_FACTOR` times the median
query length in characters).
"""

from __future__ import annotations

import base64
import hashlib
import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from koembed.data import RetrievalSet
from koembed.evaluation.runner import RetrieverResult
from koembed.files import atomic_open
from koembed.lexical import Analyzer, get_analyzer

TOP_HITS = 3
LONG_QUERY_FACTOR = 2.0
KINDS = {
    "missed": "no relevant passage in the run's top 100",
    "gold_rank_2_5": "the best relevant passage at rank 2-5 (a near miss)",
    "top1_same_document": "top hit not relevant but from the same document (title) as a relevant passage",
    "no_shared_morpheme": "no content morpheme of the query occurs in a relevant passage",
    "long_query": f"query over {LONG_QUERY_FACTOR:g} x the median query length",
}
RUN_KINDS = ("missed", "gold_rank_2_5", "top1_same_document")
QUERY_KINDS = ("no_shared_morpheme", "long_query")


def failure_analysis(rs: RetrievalSet, results: Sequence[RetrieverResult], top_hits: int = TOP_HITS,
                     analyzer: Analyzer | None = None) -> dict[str, Any]:
    """Per query and retriever: the gold rank, failure kinds and top hits (with highlight spans); per retriever:
    counts of each kind and of queries won. JSON-ready; see the module docstring for the kinds. Morphemes are
    ``analyzer``'s (default: :func:`koembed.lexical.get_analyzer`'s default analyzer)."""
    tokenizer = analyzer or get_analyzer()
    qids = [qid for qid in rs.query_ids if qid in rs.relevant]
    query_tokens = dict(zip(qids, tokenizer([rs.queries[q] for q in qids])))
    gold_docs = sorted({doc for q in qids for doc in rs.relevant_ids(q)})
    doc_tokens = dict(zip(gold_docs, tokenizer([rs.corpus[d] for d in gold_docs])))
    median_chars = statistics.median(len(rs.queries[q]) for q in qids) if qids else 0
    long_chars = LONG_QUERY_FACTOR * median_chars
    names = [r.retriever for r in results]
    summary = {name: {**dict.fromkeys((*RUN_KINDS, *QUERY_KINDS), 0), "gold_at_1": 0, "won": 0, "won_alone": 0}
               for name in names}
    passages: dict[str, str] = {}
    rows = []
    for qid in qids:
        gold = rs.relevant_ids(qid)
        gold_titles = {rs.titles[d] for d in gold if d in rs.titles}
        kinds = []
        if not any(set(query_tokens[qid]) & set(doc_tokens[d]) for d in gold):
            kinds.append("no_shared_morpheme")
        if len(rs.queries[qid]) > long_chars:
            kinds.append("long_query")
        runs = {}
        for r in results:
            hits = r.hits.get(qid, [])
            rank = next((i for i, (doc, _) in enumerate(hits, start=1) if doc in gold), None)
            run_kinds = []
            if rank is None:
                run_kinds.append("missed")
            elif 2 <= rank <= 5:
                run_kinds.append("gold_rank_2_5")
            if hits and hits[0][0] not in gold and rs.titles.get(hits[0][0]) in gold_titles:
                run_kinds.append("top1_same_document")
            top = hits[:top_hits]
            spans = tokenizer.matched_spans(rs.queries[qid], [rs.corpus[doc] for doc, _ in top]) if top else []
            runs[r.retriever] = {"gold_rank": rank, "kinds": run_kinds, "top": [
                {"docid": doc, "score": float(score), "gold": doc in gold, "matches": [list(s) for s in found]}
                for (doc, score), found in zip(top, spans)]}
            passages.update({doc: rs.corpus[doc] for doc, _ in top})
            for kind in (*run_kinds, *kinds):
                summary[r.retriever][kind] += 1
            summary[r.retriever]["gold_at_1"] += rank == 1
        ranks = {name: run["gold_rank"] for name, run in runs.items() if run["gold_rank"] is not None}
        best = min(ranks.values(), default=None)
        winners = [name for name, rank in ranks.items() if rank == best]
        for name in winners:
            summary[name]["won"] += 1
            summary[name]["won_alone"] += len(winners) == 1
        rows.append({"qid": qid, "query": rs.queries[qid], "chars": len(rs.queries[qid]), "gold": sorted(gold),
                     "kinds": kinds, "winners": winners, "runs": runs})
    return {"dataset": rs.summary(), "retrievers": names, "kinds": KINDS, "long_query_chars": long_chars,
            "summary": summary, "queries": rows, "passages": passages}


def write_report(analysis: dict[str, Any], path: str | Path) -> None:
    """The analysis as one self-contained HTML page (written atomically)."""
    data = json.dumps(analysis, ensure_ascii=False).replace("<", "\\u003c")  # no "</script>" or "<!--" in the block
    script_hash = base64.b64encode(hashlib.sha256(_SCRIPT.encode("utf-8")).digest()).decode("ascii")
    page = (_PAGE.replace("@CSP@", f"default-src 'none'; script-src 'sha256-{script_hash}'; "
                                   "style-src 'unsafe-inline'; base-uri 'none'; form-action 'none'")
            .replace("@DATA@", data).replace("@SCRIPT@", _SCRIPT))
    with atomic_open(path, "w") as handle:
        handle.write(page)


_PAGE = """<!doctype html>
<html lang="ko"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="@CSP@">
<title>koembed failure analysis</title>
<style>
body { font-family: system-ui, "Noto Sans KR", "NanumGothic", sans-serif; margin: 1rem 1.5rem; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; margin-bottom: 1rem; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.5rem; vertical-align: top; }
th[data-sort] { cursor: pointer; background: #f4f4f4; }
td.num { text-align: right; font-family: ui-monospace, monospace; }
td.win { background: #e6f4ea; font-weight: 600; }
tr:target { outline: 2px solid #1a5fb4; }
.kind { display: inline-block; background: #eee; border-radius: 3px; padding: 0 0.3rem; margin: 0 0.15rem 0.1rem 0;
        font-size: 0.75rem; }
mark { background: #ffe066; unicode-bidi: isolate; }
.hit bdi { unicode-bidi: isolate; }
.gold { color: #1b7f3b; font-weight: 600; }
#controls { display: flex; gap: 0.8rem; margin: 0.6rem 0; flex-wrap: wrap; }
</style></head>
<body>
<h1>Why a retriever wins or loses</h1>
<p id="dataset"></p>
<h2>Failure kinds per retriever</h2>
<table id="summary"></table>
<div id="controls">
  <label>filter <input id="filter" type="search" placeholder="query text or id"></label>
  <label>kind <select id="kind"><option value="">any</option></select></label>
  <label>retriever (won it, or has the kind) <select id="retriever"><option value="">any</option></select></label>
  <span id="shown"></span>
</div>
<table id="queries"><thead></thead><tbody></tbody></table>
<script type="application/json" id="data">@DATA@</script>
<script>@SCRIPT@</script>
</body></html>
"""

_SCRIPT = """
"use strict";
(() => {
  const A = JSON.parse(document.getElementById("data").textContent);
  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs = {}, ...kids) => {
    const n = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) n.setAttribute(k, String(v));
    n.append(...kids.map((c) => (c instanceof Node ? c : String(c))));
    return n;
  };
  const names = A.retrievers, kinds = Object.keys(A.kinds);
  const d = A.dataset;
  $("dataset").textContent = `${d.name}: ${d.queries} queries, ${d.corpus} passages; long query: over ` +
    `${A.long_query_chars} characters`;
  const counts = ["gold_at_1", "won", "won_alone", ...kinds];
  $("summary").append(el("tr", {}, el("th", {}, "retriever"), ...counts.map((c) => el("th", {title: A.kinds[c] || ""}, c))),
    ...names.map((n) => el("tr", {"data-retriever": n}, el("th", {}, n),
      ...counts.map((c) => el("td", {class: "num", "data-retriever": n, "data-count": c,
                                     "data-value": A.summary[n][c]}, A.summary[n][c])))));
  for (const k of kinds) $("kind").append(el("option", {value: k}, k));
  for (const n of names) $("retriever").append(el("option", {value: n}, n));

  function highlighted(text, matches) {
    const chars = Array.from(text), node = el("span", {class: "hit", dir: "auto"});
    let at = 0;
    for (const [s, e] of matches) {
      if (s > at) node.append(el("bdi", {}, chars.slice(at, s).join("")));
      node.append(el("mark", {}, chars.slice(s, e).join("")));
      at = e;
    }
    if (at < chars.length) node.append(el("bdi", {}, chars.slice(at).join("")));
    return node;
  }
  function hitsCell(run) {
    const details = el("details", {}, el("summary", {}, `top ${run.top.length}`));
    for (const h of run.top) {
      details.append(el("p", {}, el("span", {class: h.gold ? "gold" : ""}, `${h.docid}${h.gold ? " (gold)" : ""}`),
        ` ${h.score.toFixed(4)} `, highlighted(A.passages[h.docid], h.matches)));
    }
    return details;
  }
  const head = ["qid", "query", "chars", "kinds", "winners", ...names];
  $("queries").tHead.append(el("tr", {}, ...head.map((h, i) => el("th", {"data-sort": i}, h))));
  const rows = A.queries.map((q) => {
    const all = [...q.kinds, ...names.flatMap((n) => q.runs[n].kinds)];
    const tr = el("tr", {id: `q-${q.qid}`, "data-qid": q.qid},
      el("td", {}, el("a", {href: `#q-${q.qid}`}, q.qid)), el("td", {dir: "auto"}, el("bdi", {}, q.query)),
      el("td", {class: "num", "data-value": q.chars}, q.chars),
      el("td", {}, ...q.kinds.map((k) => el("span", {class: "kind"}, k))),
      el("td", {}, q.winners.join(", ")),
      ...names.map((n) => {
        const run = q.runs[n];
        return el("td", {class: q.winners.includes(n) ? "num win" : "num", "data-retriever": n,
                         "data-value": run.gold_rank === null ? "" : run.gold_rank},
          run.gold_rank === null ? "–" : run.gold_rank, " ",
          ...run.kinds.map((k) => el("span", {class: "kind"}, k)), hitsCell(run));
      }));
    tr.q = q;
    tr.kinds = new Set(all);
    tr.runKinds = Object.fromEntries(names.map((n) => [n, new Set([...q.kinds, ...q.runs[n].kinds])]));
    tr.sortKeys = [q.qid, q.query, q.chars, q.kinds.join(" "), q.winners.join(" "),
                   ...names.map((n) => q.runs[n].gold_rank ?? Infinity)];
    return tr;
  });
  $("queries").tBodies[0].append(...rows);

  function apply() {
    const text = $("filter").value.trim().toLowerCase(), kind = $("kind").value, who = $("retriever").value;
    let shown = 0;
    for (const tr of rows) {
      const q = tr.q;
      const ok = (!text || q.qid.toLowerCase().includes(text) || q.query.toLowerCase().includes(text)) &&
        (!kind || (who ? tr.runKinds[who].has(kind) : tr.kinds.has(kind))) && (!who || kind || q.winners.includes(who));
      tr.hidden = !ok;
      shown += ok;
    }
    $("shown").textContent = `${shown} of ${rows.length} queries`;
  }
  let sorted = {col: -1, dir: 1};
  $("queries").tHead.addEventListener("click", (event) => {
    const th = event.target.closest("th[data-sort]");
    if (!th) return;
    const col = Number(th.dataset.sort);
    sorted = {col, dir: sorted.col === col ? -sorted.dir : 1};
    const key = (tr) => tr.sortKeys[col];
    rows.sort((a, b) => (key(a) < key(b) ? -sorted.dir : key(a) > key(b) ? sorted.dir : 0));
    $("queries").tBodies[0].append(...rows);
  });
  for (const id of ["filter", "kind", "retriever"]) {
    for (const type of ["input", "change"]) $(id).addEventListener(type, apply);
  }
  apply();
  if (location.hash) document.getElementById(decodeURIComponent(location.hash.slice(1)))?.scrollIntoView();
  document.body.dataset.state = "done";
})();
"""
