"""The two suites as tables: rich tables for the terminal, Markdown for model cards, one set of headers.

Results are mappings with ``retriever``, ``ir`` ({metric: value}) and ``autorag`` ({"k": {metric: value}}), as
``results.json`` stores them (:meth:`koembed.evaluation.runner.RetrieverResult.to_json`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from koembed.evaluation.metrics.autorag import AUTORAG_METRICS
from koembed.evaluation.metrics.ir import metric_names

if TYPE_CHECKING:
    from rich.table import Table

AUTORAG_HEADERS = {"f1": "F1", "recall": "Recall", "precision": "Precision", "map": "mAP", "mrr": "mRR",
                   "ndcg": "NDCG"}
SIMILARITIES = ("cosine", "dot")


def _autorag_row(result: Mapping[str, Any], k: int) -> list[str]:
    return [f"{result['autorag'][str(k)][name]:.4f}" for name in AUTORAG_METRICS]


def _ir_rows(columns: Mapping[str, Mapping[str, float]]) -> list[list[str]]:
    return [[metric, *(f"{values[metric]:.4f}" for values in columns.values())] for metric in metric_names()]


def autorag_tables(results: Sequence[Mapping[str, Any]], top_k: Sequence[int]) -> list[Table]:
    """One rich table per top-k, one row per retriever, AutoRAG's columns (as the seed card prints them)."""
    from rich.table import Table

    tables = []
    for k in top_k:
        table = Table(title=f"AutoRAG metrics, top-k = {k}")
        table.add_column("Retriever", style="bold", no_wrap=True)
        for name in AUTORAG_METRICS:
            table.add_column(AUTORAG_HEADERS[name], justify="right")
        for r in results:
            table.add_row(r["retriever"], *_autorag_row(r, k))
        tables.append(table)
    return tables


def ir_table(columns: Mapping[str, Mapping[str, float]], title: str = "IR metrics") -> Table:
    """The card's IR suite, one row per metric and one column per retriever (or similarity)."""
    from rich.table import Table

    table = Table(title=title)
    table.add_column("Metric", style="bold")
    for name in columns:
        table.add_column(name, justify="right", overflow="fold")
    for row in _ir_rows(columns):
        table.add_row(*row)
    return table


def autorag_markdown(results: Sequence[Mapping[str, Any]], k: int) -> list[str]:
    """The AutoRAG table at ``k`` as Markdown lines."""
    lines = ["| retriever | " + " | ".join(AUTORAG_HEADERS[m] for m in AUTORAG_METRICS) + " |",
             "|---|" + "---|" * len(AUTORAG_METRICS)]
    return lines + [f"| {r['retriever']} | " + " | ".join(_autorag_row(r, k)) + " |" for r in results]


def ir_markdown(columns: Mapping[str, Mapping[str, float]]) -> list[str]:
    """The IR suite as Markdown lines, one column per retriever."""
    lines = ["| metric | " + " | ".join(columns) + " |", "|---|" + "---|" * len(columns)]
    return lines + ["| " + " | ".join(row) + " |" for row in _ir_rows(columns)]


def by_similarity(metrics: Mapping[str, float]) -> dict[str, dict[str, float]]:
    """``{"cosine_ndcg@10": v, "dot_...": w}`` -> ``{"cosine": {"ndcg@10": v}, "dot": {...}}``."""
    return {sim: {k[len(sim) + 1:]: v for k, v in metrics.items() if k.startswith(sim + "_")}
            for sim in SIMILARITIES}


def suites_note(unanswered: Mapping[str, int] | None = None, n_queries: int | None = None) -> str:
    """One note for under the tables: why AutoRAG's top-1 Recall and the IR suite's recall@1 (and the other
    same-named columns) can differ. ``unanswered``: per retriever, the queries it returned nothing for (AutoRAG
    skips them); those with none are left out of the sentence."""
    counted = {name: n for name, n in (unanswered or {}).items() if n}
    skipped = ""
    if counted:
        of = f" of {n_queries}" if n_queries is not None else ""
        skipped = " (here " + ", ".join(f"{name} returned nothing for {n}{of} queries" for name, n in counted.items()) + ")"
    return ("Same names, different definitions: AutoRAG's columns average only over the queries a retriever returned "
            f"something for{skipped}, count a group of relevant ids as found when any of its ids is retrieved, and "
            "divide precision by the number retrieved (fewer than k when a lexical retriever runs out of matches); "
            "the IR suite averages over every query and counts each relevant passage. So AutoRAG's top-1 Recall and "
            "IR recall@1 can differ.")


def mteb_table(rows: Sequence[tuple[str, str, float, float]], title: str) -> Table:
    """mteb's scores: one row per (split, subset), its main score and NDCG@10
    (:func:`koembed.evaluation.mteb_tasks.main_scores`)."""
    from rich.table import Table

    table = Table(title=title)
    for name in ("Split", "Subset"):
        table.add_column(name, style="bold", no_wrap=True)
    for name in ("Main score", "NDCG@10"):
        table.add_column(name, justify="right")
    for split, subset, main, ndcg in rows:
        table.add_row(split, subset, f"{main:.4f}", f"{ndcg:.4f}")
    return table
