"""The bench plot: AutoRAG recall@k and NDCG@k per retriever.

Retrievers often sit within a few points of each other (0.67-1.0 on the sample), and a tuned fusion can equal
BM25 at several k: the y axis is scaled to the data, and each line has its own marker, line style and marker
size (drawn largest first), so a line lying on another stays visible. The legend sits below the axes, where it
hides no line.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from koembed.evaluation.metrics.tables import AUTORAG_HEADERS
from koembed.evaluation.runner import RetrieverResult
from koembed.files import atomic_open

MARKERS = ("o", "s", "^", "D", "v", "P", "X", "*")
LINESTYLES = ("-", "--", "-.", ":")
METRICS = ("recall", "ndcg")


def y_limits(values: Sequence[float], pad: float = 0.08, min_span: float = 0.05) -> tuple[float, float]:
    """The y range of the plot: the data's range (at least ``min_span`` wide) widened by ``pad`` of it on each
    side, kept within [0, 1] plus the padding above 1 (a value of exactly 1.0 stays off the frame)."""
    lo, hi = min(values), max(values)
    if hi - lo < min_span:
        middle = (lo + hi) / 2
        lo, hi = middle - min_span / 2, middle + min_span / 2
    span = hi - lo
    return max(0.0, lo - pad * span), min(1.0 + pad * span, hi + pad * span)


def plot_title(dataset: Mapping[str, Any] | None) -> str:
    """``koembed-sample: 96 queries, 48 passages`` (``results.json``'s ``dataset``), or a plain title."""
    if not dataset:
        return "AutoRAG recall@k and NDCG@k"
    return f"{dataset.get('name', 'dataset')}: {dataset.get('queries', '?')} queries, " \
           f"{dataset.get('corpus', '?')} passages"


def bench_figure(results: Sequence[RetrieverResult], top_k: Sequence[int],
                 dataset: Mapping[str, Any] | None = None) -> Any:
    """The matplotlib figure of :func:`plot_results` (Agg backend; the caller closes it)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted(top_k)
    n = len(results)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.6 + 0.22 * ((n + 1) // 2)))
    for metric, ax in zip(METRICS, axes):
        values = []
        for i, r in enumerate(results):
            ys = [r.autorag[str(k)][metric] for k in ks]
            values += ys
            ax.plot(ks, ys, marker=MARKERS[i % len(MARKERS)], linestyle=LINESTYLES[i % len(LINESTYLES)],
                    markersize=4 + 2.2 * (n - 1 - i), markerfacecolor="none" if i % 2 else None, linewidth=1.6,
                    label=r.retriever, zorder=2 + i)
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.minorticks_off()
        ax.set_xlabel("top-k")
        ax.set_ylabel(AUTORAG_HEADERS[metric])
        ax.set_ylim(*y_limits(values))
        ax.grid(alpha=0.3)
        ax.set_title(f"{AUTORAG_HEADERS[metric]}@k")
    fig.suptitle(plot_title(dataset), fontsize=12)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=2, fontsize=8, frameon=False)
    fig.tight_layout(rect=(0, 0.015 + 0.04 * ((n + 1) // 2), 1, 1))
    return fig


def plot_results(results: Sequence[RetrieverResult], top_k: Sequence[int], path: str | Path,
                 dataset: Mapping[str, Any] | None = None) -> None:
    """PNG with AutoRAG recall@k and NDCG@k per retriever, k on a log axis; ``dataset`` (``RetrievalSet.summary()``)
    names the set and its sizes in the title."""
    import matplotlib.pyplot as plt

    fig = bench_figure(results, top_k, dataset)
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
