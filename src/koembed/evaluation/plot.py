"""The bench plot: AutoRAG recall@k and NDCG@k per retriever.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from koembed.evaluation.metrics.tables import AUTORAG_HEADERS
from koembed.evaluation.runner import RetrieverResult
from koembed.files import atomic_open


def plot_results(results: Sequence[RetrieverResult], top_k: Sequence[int], path: str | Path) -> None:
    """PNG with AutoRAG recall@k and NDCG@k per retriever, k on a log axis."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ks = sorted(top_k)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for metric, ax in zip(("recall", "ndcg"), axes):
        for r in results:
            ax.plot(ks, [r.autorag[str(k)][metric] for k in ks], marker="o", label=r.retriever)
        ax.set_xscale("log")
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("top-k")
        ax.set_ylabel(AUTORAG_HEADERS[metric])
        ax.set_ylim(0, 1.02)
        ax.grid(alpha=0.3)
        ax.set_title(f"{AUTORAG_HEADERS[metric]}@k")
    axes[0].legend(loc="lower right", fontsize=8)
    fig.tight_layout()
    with atomic_open(path, "wb") as handle:
        fig.savefig(handle, format="png", dpi=120)
    plt.close(fig)
