"""What the benchmark scripts share: their argument parser (with ``--out``), timing, isolated runs, saving.

Run a script as ``python bench/NAME.py``; Python puts this folder on the import path, so ``import common`` works.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data"
KORQUAD = SHARED / "korquad-v1-dev" / "KorQuAD_v1.0_dev.json"
MSMARCO = SHARED / "msmarco-ko" / "msmarco_kor.json"
KORSTS_TEST = SHARED / "korsts" / "sts-test.tsv"
# Development sets (fitting, choosing) and held-out sets (reporting) of the benchmarks: (path, split); None = sample.
DEV_SETS = {"korquad-train": (KORQUAD, "train"), "msmarco-ko-train": (MSMARCO, "train")}
HELD_OUT_SETS = {"korquad-test": (KORQUAD, "test"), "msmarco-ko-test": (MSMARCO, "test"), "sample": (None, None)}


def parser(doc: str | None, out: Path | None = None) -> argparse.ArgumentParser:
    """An argument parser showing the script's docstring, with ``--out`` (write the results as JSON there;
    default ``out``)."""
    made = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    made.add_argument("--out", type=Path, default=out, help="write the results here as JSON")
    return made


def int_list(text: str) -> list[int]:
    """``"64,256,1024"`` -> ``[64, 256, 1024]``: the type of options that list sizes to measure."""
    return [int(v) for v in text.split(",") if v.strip()]


def isolating(made: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """Add the hidden ``--one WHAT`` option with which a script runs one measurement of :func:`isolated`."""
    made.add_argument("--one", help=argparse.SUPPRESS)
    return made


def best_of(repeats: int, run: Callable[[], Any]) -> tuple[float, Any]:
    """(fastest wall time of ``repeats`` calls of ``run()``, the last call's result)."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = run()
        best = min(best, time.perf_counter() - start)
    return best, result


def isolated(cmd: Sequence[str], what: dict[str, Any]) -> dict[str, Any]:
    """Run one measurement in a fresh process (its own peak memory) and return the JSON object its last line
    prints; a failed process (killed for memory, say) is recorded as ``what`` plus its exit code and stderr."""
    done = subprocess.run(list(cmd), capture_output=True, text=True)
    if done.returncode != 0:
        return {**what, "error": f"exit {done.returncode}", "stderr_tail": done.stderr[-300:]}
    return json.loads(done.stdout.strip().splitlines()[-1])


def save(out: Path | None, result: Any) -> None:
    """Write ``result`` to ``out`` as JSON, atomically, if an output was asked for."""
    if out is not None:
        from koembed.files import write_json

        write_json(out, result)


def load_sets(names: dict[str, tuple[Path | None, str | None]]) -> dict[str, Any]:
    """The retrieval sets of :data:`DEV_SETS` / :data:`HELD_OUT_SETS` (or any such mapping), loaded."""
    from koembed.data import load_retrieval_set

    return {name: load_retrieval_set(path, split=split) for name, (path, split) in names.items()}


def korsts_spearman(model: Any) -> float:
    """Spearman correlation of the model's cosine similarities with KorSTS test's gold scores (1,379 pairs)."""
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator

    from koembed.data.sts import read_sts

    s1, s2, scores = read_sts(KORSTS_TEST)
    evaluator = EmbeddingSimilarityEvaluator(s1, s2, [s / 5 for s in scores], name="korsts-test",
                                             show_progress_bar=False, write_csv=False)
    return float(evaluator(model)["korsts-test_spearman_cosine"])


def print_markdown(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> None:
    """Print a Markdown table (what docs/BENCHMARKS.md shows); floats with four decimals."""
    print("| " + " | ".join(headers) + " |\n|" + "---|" * len(headers))
    for row in rows:
        print("| " + " | ".join(f"{v:.4f}" if isinstance(v, float) else str(v) for v in row) + " |")
