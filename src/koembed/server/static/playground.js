// koembed search playground (see koembed/server/playground.py). Text from the server or from a results.json
// only ever enters the page as text nodes (append(string), textContent), never as HTML.
"use strict";

(() => {
  // Labels are set from /health (the index's real lexical retriever and fusion) in loadHealth.
  const MODES = [
    {id: "bm25", label: "Lexical (BM25)", body: {mode: "bm25"}},
    {id: "dense", label: "Dense", body: {mode: "dense"}},
    {id: "hybrid", label: "Hybrid", body: {mode: "hybrid"}},
  ];
  const RERANK = {id: "rerank", label: "Hybrid + rerank", body: {mode: "hybrid", rerank: true}};
  const PART_DEPTH = 100;  // hybrid search fuses each part's top max(k, 100): a part's rank is known that deep
  const SNIPPET = 180;     // code points shown around the first matched morpheme before "show all"
  const CONTEXT = 50;      // of which before the first match
  const AUTORAG = [["f1", "F1"], ["recall", "Recall"], ["precision", "Precision"], ["map", "mAP"],
                   ["mrr", "mRR"], ["ndcg", "NDCG"]];
  const PLOTS = [["recall", "Recall@k"], ["ndcg", "NDCG@k"]];
  const COLOURS = ["#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
                   "#bcbd22", "#17becf"];
  const SVG = "http://www.w3.org/2000/svg";
  let columns = MODES.slice();
  let searchId = 0;

  const $ = (id) => document.getElementById(id);

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    node.append(...children.map((c) => (c instanceof Node ? c : String(c))));
    return node;
  }

  function svg(tag, attrs = {}, text) {
    const node = document.createElementNS(SVG, tag);
    for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, String(value));
    if (text !== undefined) node.textContent = String(text);
    return node;
  }

  const fmt = (value) => (typeof value === "number" ? value.toFixed(4) : "–");

  // ------------------------------------------------------------------------------------------------ tabs
  function showTab(button) {
    for (const tab of document.querySelectorAll("[role=tab]")) {
      const active = tab === button;
      tab.setAttribute("aria-selected", String(active));
      $(tab.dataset.panel).hidden = !active;
    }
  }

  // ---------------------------------------------------------------------------------------------- search
  function requestHeaders() {
    const headers = {"Content-Type": "application/json"};
    const key = $("api-key").value.trim();
    if (key) headers.Authorization = "Bearer " + key;
    return headers;
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      return `${response.status}: ${body.error.message}`;
    } catch {
      return `${response.status} ${response.statusText}`;
    }
  }

  async function loadHealth() {
    try {
      const response = await fetch("/health");
      if (!response.ok) throw new Error(await errorText(response));
      const health = await response.json();
      const analyzer = {mecab: "MeCab-ko", kiwi: "Kiwi"}[health.analyzer] || health.analyzer || "MeCab-ko";
      MODES[0].label = `Lexical: ${health.lexical || "bm25"} (${analyzer})`;
      MODES[2].label = `Hybrid: ${fusionLabel(health.fusion)}`;
      columns = health.reranker ? [...MODES, RERANK] : MODES.slice();
      // The index's recorded search mode (what /search does without one) comes first, marked as the default.
      const recorded = columns.find((column) => column.id === health.search_mode);
      if (recorded) {
        columns = [{...recorded, label: `${recorded.label} (index default)`},
                   ...columns.filter((column) => column !== recorded)];
      }
      const parts = [`model ${health.model}`,
                     health.index_loaded ? `${health.index_passages} passages`
                                         : "no index: start koembed serve with --index DIR"];
      if (health.reranker) parts.push(`reranker ${health.reranker} (depth ${health.rerank_depth})`);
      $("server-info").textContent = parts.join(" · ");
    } catch (error) {
      $("server-info").textContent = `server unreachable: ${error.message}`;
    }
    $("columns").replaceChildren(...columns.map((column) => el("section",
      {class: "column", id: `col-${column.id}`, "data-mode": column.id, "data-state": "idle"},
      el("h2", {}, column.label), el("p", {class: "status"}), el("ol", {class: "hits"}))));
  }

  function fusionLabel(fusion) {
    if (!fusion) return "RRF";
    const name = {rrf: "RRF", cc: "min-max", z: "z-score", dbsf: "DBSF"}[fusion.fusion] || fusion.fusion;
    const parts = [];
    if (fusion.fusion === "rrf" && fusion.rrf_k) parts.push(`k=${fusion.rrf_k}`);
    if (Array.isArray(fusion.weights)) parts.push(`weights ${fusion.weights.join(", ")}`);
    return parts.length ? `${name} (${parts.join(", ")})` : name;
  }

  // The server's spans are Python string indices (code points): slice the code points, not UTF-16 units.
  // Every piece of passage text is its own <bdi> (and the passage dir=auto): a bidi control character in a passage
  // (U+202E RIGHT-TO-LEFT OVERRIDE...) reorders only its own piece, never a highlighted morpheme or the next hit.
  function fill(node, chars, matches, from, to) {
    let at = from;
    for (const [start, end] of matches) {
      if (end <= from || start >= to) continue;
      const s = Math.max(start, from), e = Math.min(end, to);
      if (s > at) node.append(el("bdi", {}, chars.slice(at, s).join("")));
      node.append(el("mark", {}, chars.slice(s, e).join("")));
      at = e;
    }
    if (at < to) node.append(el("bdi", {}, chars.slice(at, to).join("")));
  }

  // A snippet around the first matched morpheme (the start of the passage without matches); "show all" expands.
  function passage(text, matches) {
    const chars = Array.from(text);
    const node = el("p", {class: "passage", dir: "auto"});
    const wrap = el("div", {class: "passage-wrap"}, node);
    if (chars.length <= SNIPPET + CONTEXT) {
      fill(node, chars, matches, 0, chars.length);
      return wrap;
    }
    const first = matches.length ? matches[0][0] : 0;
    const from = Math.max(0, Math.min(first - CONTEXT, chars.length - SNIPPET));
    const to = Math.min(chars.length, from + SNIPPET);
    const shown = matches.filter(([s, e]) => s < to && e > from).length;
    const snippet = () => {
      node.replaceChildren();
      if (from > 0) node.append(el("span", {class: "ellipsis"}, "… "));
      fill(node, chars, matches, from, to);
      if (to < chars.length) node.append(el("span", {class: "ellipsis"}, " …"));
    };
    snippet();
    node.dataset.view = "snippet";
    const rest = matches.length - shown;
    const more = `show all (${chars.length} characters${rest ? `, ${rest} more highlight${rest > 1 ? "s" : ""}` : ""})`;
    const button = el("button", {type: "button", class: "expand", "aria-expanded": "false"}, more);
    button.addEventListener("click", () => {
      const open = node.dataset.view === "snippet";
      if (open) {
        node.replaceChildren();
        fill(node, chars, matches, 0, chars.length);
      } else {
        snippet();
      }
      node.dataset.view = open ? "full" : "snippet";
      button.setAttribute("aria-expanded", String(open));
      button.textContent = open ? "show less" : more;
    });
    wrap.append(button);
    return wrap;
  }

  // A score people can read: the rank; for hybrid, each part's rank (the fused value itself, e.g. an RRF sum
  // of 1/(60 + rank), only in the tooltip); cosine similarity for dense, the BM25 score, the reranker's 0..1.
  function scoreText(mode, hit, parts) {
    if (mode === "hybrid") {
      if (!parts) return "";
      const rank = (name) => (parts[name].has(hit.docid) ? `#${parts[name].get(hit.docid)}`
                                                         : `not in top ${PART_DEPTH}`);
      return `lexical ${rank("bm25")} · dense ${rank("dense")}`;
    }
    if (mode === "dense") return `cosine ${hit.score.toFixed(3)}`;
    if (mode === "bm25") return `BM25 ${hit.score.toFixed(2)}`;
    return `reranker ${hit.score.toFixed(3)}`;
  }

  function hitItem(mode, hit, parts) {
    return el("li", {class: "hit", "data-docid": hit.docid},
      el("div", {class: "hit-head"},
        el("span", {class: "rank"}, `#${hit.rank}`),
        el("bdi", {class: "docid"}, hit.docid),
        el("span", {class: "score", "data-score": String(hit.score), title: `raw score ${hit.score}`},
           scoreText(mode, hit, parts))),
      passage(hit.text, hit.matches || []));
  }

  // The parts' ranks of every passage in their top PART_DEPTH (no highlights: cheap), for the hybrid column.
  async function partRanks(query) {
    const ranks = {};
    for (const mode of ["bm25", "dense"]) {
      const response = await fetch("/search", {method: "POST", headers: requestHeaders(),
        body: JSON.stringify({query, k: PART_DEPTH, mode})});
      if (!response.ok) return null;
      ranks[mode] = new Map((await response.json()).hits.map((h) => [h.docid, h.rank]));
    }
    return ranks;
  }

  async function runColumn(column, query, k, id, parts) {
    const section = $(`col-${column.id}`);
    const status = section.querySelector(".status");
    const list = section.querySelector(".hits");
    try {
      const response = await fetch("/search", {method: "POST", headers: requestHeaders(),
        body: JSON.stringify({query, k, highlight: true, ...column.body})});
      const failure = response.ok ? null : await errorText(response);
      const body = response.ok ? await response.json() : null;
      if (id !== searchId) return; // a newer search has started
      if (failure) {
        status.textContent = failure;
        section.dataset.state = "error";
        return;
      }
      const ranks = column.id === "hybrid" ? await parts.catch(() => null) : null;
      if (id !== searchId) return;
      list.replaceChildren(...body.hits.map((hit) => hitItem(column.id, hit, ranks)));
      status.textContent = `${body.hits.length} hits`;
      if (body.morphemes) {
        $("morphemes").replaceChildren("Query morphemes (highlighted where they occur): ",
          ...body.morphemes.map((m) => el("code", {class: "morpheme"}, m)));
      }
      section.dataset.state = "done";
    } catch (error) {
      if (id !== searchId) return;
      status.textContent = `request failed: ${error.message}`;
      section.dataset.state = "error";
    }
  }

  function search(event) {
    event.preventDefault();
    const query = $("query").value.trim();
    const k = Number.parseInt($("k").value, 10) || 10;
    if (!query) return;
    const id = ++searchId;
    $("morphemes").replaceChildren();
    for (const column of columns) {
      const section = $(`col-${column.id}`);
      section.dataset.state = "loading";
      section.querySelector(".status").textContent = "searching…";
      section.querySelector(".hits").replaceChildren();
    }
    const parts = partRanks(query);
    for (const column of columns) runColumn(column, query, k, id, parts);
  }

  // ----------------------------------------------------------------------------------------------- bench
  function checkResults(doc) {
    if (!doc || !Array.isArray(doc.results) || doc.results.length === 0) {
      throw new Error("not a koembed bench results.json: it has no \"results\" list");
    }
    doc.results.forEach((r, i) => {
      if (!r || typeof r.retriever !== "string" || !r.autorag || typeof r.autorag !== "object") {
        throw new Error(`results[${i}] has no "retriever" name or no "autorag" table`);
      }
    });
    return doc;
  }

  function autoragTable(results, k) {
    const head = el("tr", {}, el("th", {}, "Retriever"), ...AUTORAG.map(([, label]) => el("th", {}, label)));
    const rows = results.map((r) => el("tr", {"data-retriever": r.retriever}, el("th", {scope: "row"}, r.retriever),
      ...AUTORAG.map(([metric]) => {
        const value = (r.autorag[String(k)] || {})[metric];
        return el("td", {"data-metric": metric, "data-value": String(value)}, fmt(value));
      })));
    return el("table", {id: `autorag-${k}`, "data-k": k}, el("thead", {}, head), el("tbody", {}, ...rows));
  }

  function irTable(results) {
    const metrics = [...new Set(results.flatMap((r) => Object.keys(r.ir || {})))];
    const head = el("tr", {}, el("th", {}, "Metric"), ...results.map((r) => el("th", {}, r.retriever)));
    const rows = metrics.map((metric) => el("tr", {"data-metric": metric}, el("th", {scope: "row"}, metric),
      ...results.map((r) => {
        const value = (r.ir || {})[metric];
        return el("td", {"data-retriever": r.retriever, "data-value": String(value)}, fmt(value));
      })));
    return el("table", {id: "ir"}, el("thead", {}, head), el("tbody", {}, ...rows));
  }

  // A line per retriever, k on a log axis, 0..1 on y: what `koembed bench --plot` draws, as inline SVG.
  function plot(results, ks, metric, title) {
    const width = 480, plotHeight = 300, legendRow = 18;
    const height = plotHeight + legendRow * results.length + 10;
    const m = {left: 48, right: 16, top: 30, bottom: 44};
    const span = Math.log(ks[ks.length - 1]) - Math.log(ks[0]);
    const x = (k) => m.left + (span > 0 ? (Math.log(k) - Math.log(ks[0])) / span : 0.5) * (width - m.left - m.right);
    const y = (v) => m.top + (1 - v) * (plotHeight - m.top - m.bottom);
    const chart = svg("svg", {id: `plot-${metric}`, viewBox: `0 0 ${width} ${height}`, width, height,
                              role: "img", "aria-label": `${title} per retriever`});
    chart.append(svg("text", {x: width / 2, y: 18, "text-anchor": "middle", class: "plot-title"}, title));
    for (let i = 0; i <= 4; i++) {
      const v = i / 4;
      chart.append(svg("line", {x1: m.left, x2: width - m.right, y1: y(v), y2: y(v), class: "grid"}));
      chart.append(svg("text", {x: m.left - 6, y: y(v) + 4, "text-anchor": "end", class: "tick"}, v.toFixed(2)));
    }
    for (const k of ks) {
      chart.append(svg("line", {x1: x(k), x2: x(k), y1: y(0), y2: y(0) + 5, class: "axis"}));
      chart.append(svg("text", {x: x(k), y: y(0) + 18, "text-anchor": "middle", class: "tick"}, k));
    }
    chart.append(svg("line", {x1: m.left, x2: width - m.right, y1: y(0), y2: y(0), class: "axis"}));
    chart.append(svg("text", {x: (m.left + width - m.right) / 2, y: plotHeight - 8, "text-anchor": "middle",
                              class: "tick"}, "top-k"));
    results.forEach((r, i) => {
      const colour = COLOURS[i % COLOURS.length];
      const points = ks.map((k) => [k, (r.autorag[String(k)] || {})[metric]]).filter(([, v]) => typeof v === "number");
      const line = svg("g", {"data-retriever": r.retriever, class: "series"});
      line.append(svg("polyline", {points: points.map(([k, v]) => `${x(k)},${y(v)}`).join(" "), fill: "none",
                                   stroke: colour, "stroke-width": 2}));
      for (const [k, v] of points) {
        const dot = svg("circle", {cx: x(k), cy: y(v), r: 3.5, fill: colour, "data-k": k, "data-value": v});
        dot.append(svg("title", {}, `${r.retriever} ${metric}@${k} = ${fmt(v)}`));
        line.append(dot);
      }
      chart.append(line);
      const ly = plotHeight + legendRow * i + 8;
      chart.append(svg("line", {x1: m.left, x2: m.left + 22, y1: ly, y2: ly, stroke: colour, "stroke-width": 3}));
      chart.append(svg("text", {x: m.left + 30, y: ly + 4, class: "legend"}, r.retriever));
    });
    return chart;
  }

  function renderBench(doc) {
    const results = doc.results;
    const ks = [...new Set(results.flatMap((r) => Object.keys(r.autorag)))].map(Number)
      .filter((k) => Number.isFinite(k) && k > 0).sort((a, b) => a - b);
    const data = doc.dataset || {};
    const nodes = [el("p", {id: "bench-dataset"},
      `${data.name ?? "dataset"}: ${data.queries ?? "?"} queries, ${data.corpus ?? "?"} passages, ` +
      `${results.length} retrievers`)];
    if (ks.length) {
      nodes.push(el("h2", {}, "Recall and NDCG by top-k"),
                 el("div", {class: "plots"}, ...PLOTS.map(([metric, title]) => plot(results, ks, metric, title))));
    }
    nodes.push(el("h2", {}, "AutoRAG metrics"));
    for (const k of ks) nodes.push(el("h3", {}, `top-${k}`), autoragTable(results, k));
    if (results.some((r) => r.ir && Object.keys(r.ir).length)) {
      nodes.push(el("h2", {}, "IR metrics (the model card's suite)"), irTable(results));
    }
    $("bench").replaceChildren(...nodes);
  }

  async function loadResults() {
    const file = $("results-file").files[0];
    $("bench-error").hidden = true;
    if (!file) return;
    try {
      renderBench(checkResults(JSON.parse(await file.text())));
      $("bench").dataset.state = "done";
    } catch (error) {
      $("bench").replaceChildren();
      $("bench").dataset.state = "error";
      $("bench-error").textContent = `${file.name}: ${error.message}`;
      $("bench-error").hidden = false;
    }
  }

  document.addEventListener("DOMContentLoaded", () => {
    for (const tab of document.querySelectorAll("[role=tab]")) tab.addEventListener("click", () => showTab(tab));
    $("search-form").addEventListener("submit", search);
    $("results-file").addEventListener("change", loadResults);
    loadHealth();
  });
})();
