// koembed search playground (see koembed/server/playground.py). Text from the server or from a results.json
// only ever enters the page as text nodes (append(string), textContent), never as HTML.
"use strict";

(() => {
  const MODES = [
    {id: "bm25", label: "BM25 (Kiwi morphemes)", body: {mode: "bm25"}},
    {id: "dense", label: "Dense", body: {mode: "dense"}},
    {id: "hybrid", label: "Hybrid", body: {mode: "hybrid"}},
  ];
  const RERANK = {id: "rerank", label: "Hybrid + rerank", body: {mode: "hybrid", rerank: true}};
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
      if (health.reranker) columns = [...MODES, RERANK];
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

  // The server's spans are Python string indices (code points): slice the code points, not UTF-16 units.
  function passage(text, matches) {
    const chars = Array.from(text);
    const node = el("p", {class: "passage"});
    let at = 0;
    for (const [start, end] of matches) {
      if (start > at) node.append(chars.slice(at, start).join(""));
      node.append(el("mark", {}, chars.slice(start, end).join("")));
      at = end;
    }
    if (at < chars.length) node.append(chars.slice(at).join(""));
    return node;
  }

  function hitItem(hit) {
    return el("li", {class: "hit", "data-docid": hit.docid},
      el("div", {class: "hit-head"},
        el("span", {class: "docid"}, hit.docid),
        el("span", {class: "score", title: String(hit.score)}, fmt(hit.score))),
      passage(hit.text, hit.matches || []));
  }

  async function runColumn(column, query, k, id) {
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
      list.replaceChildren(...body.hits.map(hitItem));
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
    for (const column of columns) runColumn(column, query, k, id);
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
