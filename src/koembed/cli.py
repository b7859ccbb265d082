"""The ``koembed`` command line: thin wrappers over the library, no logic of their own."""

from __future__ import annotations

import logging
import os
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from koembed.errors import KoembedError

app = typer.Typer(help="Korean text embeddings for retrieval (RAG): evaluate models and benchmark retrievers on your data.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
# Logs and pipes get wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True)

DataOpt = Annotated[Optional[str], typer.Option(
    "--data", "-d", help="Retrieval set: AutoRAG folder (qa.parquet + corpus.parquet), BEIR folder "
    "(corpus.jsonl, queries.jsonl, qrels/), or SQuAD/KorQuAD .json. Default: the bundled Korean sample.")]
SplitOpt = Annotated[Optional[str], typer.Option(
    help="BEIR: qrels split (default test). KorQuAD/SQuAD: all (default), train or test, by article title.")]


def _fail(exc: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(code=2)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    for name in ("sentence_transformers", "transformers", "bm25s"):
        logging.getLogger(name).setLevel(logging.ERROR)


def _parse_top_k(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not values or values[0] < 1:
        raise typer.BadParameter("top-k values must be positive integers")
    return values


@app.command()
def bench(
    data: DataOpt = None,
    retriever: Annotated[Optional[list[str]], typer.Option(
        "--retriever", "-r", help="Retriever spec, repeatable: bm25, dense:<model> (hub id, folder or 'minilm'), "
        "hybrid:<a>+<b> (reciprocal-rank fusion), hybrid-cc[@w]:<a>+<b> (min-max score fusion). "
        "Default: bm25 and dense:minilm.")] = None,
    top_k: Annotated[str, typer.Option("--top-k", help="AutoRAG top-k values.")] = "1,3,5,10,50",
    out: Annotated[Optional[Path], typer.Option(help="Write results as JSON here.")] = None,
    run_out: Annotated[Optional[Path], typer.Option(
        help="Folder for run files: one JSON-lines file per retriever, top 100 hits per query.")] = None,
    plot: Annotated[Optional[Path], typer.Option(help="Write a PNG of recall@k and NDCG@k per retriever.")] = None,
    split: SplitOpt = None,
    batch_size: Annotated[int, typer.Option(help="Encoding batch size for dense models.")] = 32,
    device: Annotated[Optional[str], typer.Option(help="torch device for dense models (default: auto).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """Benchmark retrievers on a retrieval set: AutoRAG tables per top-k and the card's IR suite."""
    from koembed.bench import (DEFAULT_RETRIEVERS, autorag_tables, ir_table, plot_results, results_document,
                               run_bench, write_runs)
    from koembed.data import load_retrieval_set
    from koembed.files import write_json

    _quiet_libraries()
    ks = _parse_top_k(top_k)
    try:
        rs = load_retrieval_set(data, split=split)
        console.print(f"[bold]{rs.name}[/]: {len(rs.queries)} queries, {len(rs.corpus)} passages")
        results = run_bench(rs, retriever or list(DEFAULT_RETRIEVERS), ks, batch_size=batch_size, device=device,
                            show_progress=not quiet)
    except KoembedError as exc:
        _fail(exc)
    for table in autorag_tables(results, ks):
        console.print(table)
    console.print(ir_table(results))
    if run_out is not None:
        write_runs(results, rs.query_ids, run_out)
    if out is not None:
        write_json(out, results_document(rs, results))
        console.print(f"results: {out}")
    if plot is not None:
        plot_results(results, ks, plot)
        console.print(f"plot: {plot}")


@app.command("eval")
def eval_(
    model: Annotated[str, typer.Option("--model", "-m", help="Hub id, local folder, or 'minilm'.")],
    data: DataOpt = None,
    split: SplitOpt = None,
    out: Annotated[Optional[Path], typer.Option(help="Write the metrics as JSON here.")] = None,
    batch_size: Annotated[int, typer.Option(help="Encoding batch size (32, as sentence-transformers).")] = 32,
    device: Annotated[Optional[str], typer.Option(help="torch device (default: auto).")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")] = False,
) -> None:
    """The card's IR suite (InformationRetrievalEvaluator definitions) for cosine and dot similarity."""
    from koembed.bench import evaluate_model, ir_table
    from koembed.files import write_json

    from koembed.data import load_retrieval_set

    _quiet_libraries()
    try:
        rs = load_retrieval_set(data, split=split)
        metrics = evaluate_model(rs, model, batch_size=batch_size, device=device, show_progress=not quiet)
    except KoembedError as exc:
        _fail(exc)
    columns = {sim: {k[len(sim) + 1:]: v for k, v in metrics.items() if k.startswith(sim + "_")}
               for sim in ("cosine", "dot")}
    console.print(ir_table(columns, title=f"{model} on {rs.name} ({len(rs.queries)} queries, "
                                         f"{len(rs.corpus)} passages)"))
    if out is not None:
        write_json(out, {"model": model, "dataset": rs.summary(), "metrics": metrics})
        console.print(f"results: {out}")


@app.command()
def inspect(data: DataOpt = None, split: SplitOpt = None) -> None:
    """Validate a retrieval set and print its size and text-length statistics."""
    import statistics

    from koembed.data import load_retrieval_set

    try:
        rs = load_retrieval_set(data, split=split)
    except KoembedError as exc:
        _fail(exc)
    doc_lengths = [len(t) for t in rs.corpus.values()]
    query_lengths = [len(t) for t in rs.queries.values()]
    groups = [len(g) for g in rs.relevant.values()]
    console.print(f"[bold]{rs.name}[/] is valid")
    console.print(f"queries: {len(rs.queries)} (mean {statistics.mean(query_lengths):.0f} chars), "
                  f"passages: {len(rs.corpus)} (mean {statistics.mean(doc_lengths):.0f} chars, "
                  f"max {max(doc_lengths)}), relevant groups per query: mean {statistics.mean(groups):.2f}, "
                  f"max {max(groups)}")


@app.command()
def version() -> None:
    """Print koembed's version."""
    from koembed import __version__

    console.print(__version__)


def main() -> None:  # pragma: no cover
    app()
