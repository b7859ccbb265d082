"""``koembed bench``, ``koembed eval``, ``koembed inspect``: measure retrievers and models on a retrieval set."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from koembed.cli.common import (
    FROM_OPTIONS,
    BatchSizeOpt,
    CacheDirOpt,
    DataOpt,
    QuietOpt,
    RerankDepthOpt,
    RetrieversOpt,
    SplitOpt,
    UserDictOpt,
    check_output,
    console,
    describe_precision,
    encode_options,
    exits_on_error,
    parse_top_k,
    quiet_libraries,
    user_dict_of,
    with_model_options,
)
from koembed.data import load_retrieval_set
from koembed.errors import MtebError
from koembed.evaluation.metrics.tables import autorag_tables, by_similarity, ir_table, mteb_table, suites_note
from koembed.evaluation.mteb_tasks import main_scores, run_mteb
from koembed.evaluation.plot import plot_results
from koembed.evaluation.report import failure_analysis, write_report
from koembed.evaluation.runner import DEFAULT_RETRIEVERS, evaluate_model, run_bench
from koembed.evaluation.runs import results_document, run_filename, write_runs
from koembed.evaluation.variants import KINDS, parse_variants, variant_sets, variants_table
from koembed.files import write_json
from koembed.models import EncodeOptions, ModelSpec, RunSettings
from koembed.retrieval.specs import parse_spec


@exits_on_error()
@with_model_options("precision", "backend", "device", "query_prompt", "passage_prompt")
def bench(
    data: DataOpt = None,
    retriever: RetrieversOpt = None,
    top_k: Annotated[str, typer.Option("--top-k", help="AutoRAG top-k values.", metavar="K,K,...")] = "1,3,5,10,50",
    out: Annotated[Path | None, typer.Option(help="Write results as JSON here.", metavar="FILE")] = None,
    run_out: Annotated[Path | None, typer.Option(
        help="Folder for run files: one JSON-lines file per retriever, top 100 hits per query.", metavar="DIR")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write a PNG of recall@k and NDCG@k per retriever.",
                                                 metavar="FILE")] = None,
    report: Annotated[Path | None, typer.Option(
        help="Write a failure-analysis HTML page here: per query, the gold passage's rank per retriever, top hits, "
        "the winner and failure kinds (also stored in --out as \"analysis\").", metavar="FILE")] = None,
    split: SplitOpt = None,
    batch_size: BatchSizeOpt = 32,
    settings: RunSettings = FROM_OPTIONS,
    cache_dir: CacheDirOpt = None,
    rerank_depth: RerankDepthOpt = 50,
    query_variants: Annotated[str | None, typer.Option(
        "--query-variants", help="Also score each retriever on seeded variants of the queries: " + ", ".join(KINDS)
        + " (comma-separated; docs/cli.md 'Query variants'); one table and a 'variants' entry in --out.",
        metavar="KIND,...")] = None,
    variant_seed: Annotated[int, typer.Option(help="Seed of --query-variants.", metavar="N")] = 0,
    user_dict: UserDictOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Benchmark retrievers on a retrieval set: AutoRAG tables per top-k and the card's IR suite. Lexical specs
    take their analyzer as a suffix: bm25-phrase (MeCab-ko, the default), bm25-phrase@kiwi."""
    quiet_libraries()
    ks = parse_top_k(top_k)
    try:
        kinds = parse_variants(query_variants) if query_variants is not None else []
    except ValueError as exc:
        raise typer.BadParameter(str(exc), param_hint="--query-variants") from None
    specs = retriever or list(DEFAULT_RETRIEVERS)
    for spec in specs:
        parse_spec(spec)  # a typo (-r bm26) fails before the data set loads
    check_output(out, "--out")
    check_output(plot, "--plot")
    check_output(report, "--report")
    check_output(cache_dir, "--cache-dir", folder=True)
    check_output(run_out, "--run-out", folder=True)
    if run_out is not None:
        for spec in specs:
            check_output(run_out / run_filename(spec), "--run-out")
    words = user_dict_of(user_dict)
    rs = load_retrieval_set(data, split=split)
    console.print(f"[bold]{rs.name}[/]: {len(rs.queries)} queries, {len(rs.corpus)} passages; dense models run "
                  f"{describe_precision(settings)}", highlight=False)
    results = run_bench(rs, specs, ks, settings=settings, options=encode_options(batch_size, quiet), cache_dir=cache_dir,
                        rerank_depth=rerank_depth, user_dict=words)
    variants = {kind: run_bench(vrs, specs, ks, settings=settings, options=encode_options(batch_size, quiet),
                                cache_dir=cache_dir, rerank_depth=rerank_depth, user_dict=words)
                for kind, vrs in zip(kinds, variant_sets(rs, kinds, variant_seed))}
    rows = [r.to_json() for r in results]
    for table in autorag_tables(rows, ks):
        console.print(table)
    console.print(ir_table({r.retriever: r.ir for r in results}))
    unanswered = {r.retriever: sum(1 for qid in rs.relevant if not r.hits.get(qid)) for r in results}
    console.print(suites_note(unanswered, len(rs.relevant)), highlight=False)
    if variants:
        console.print(variants_table({"as written": results, **variants}))
    if run_out is not None:
        write_runs(results, rs.query_ids, run_out)
    analysis = failure_analysis(rs, results) if report is not None else None
    if out is not None:
        document = {**results_document(rs, results), **({"analysis": analysis} if analysis else {})}
        if variants:
            document["variants"] = {"seed": variant_seed, **{kind: [r.to_json() for r in runs]
                                                             for kind, runs in variants.items()}}
        write_json(out, document)
        console.print(f"results: {out}")
    if analysis is not None and report is not None:  # (analysis is made only with a report)
        write_report(analysis, report)
        console.print(f"report: {report}")
    if plot is not None:
        plot_results(results, ks, plot, rs.summary())
        console.print(f"plot: {plot}")


@exits_on_error()
@with_model_options("model", "precision", "backend", "device", "query_prompt", "passage_prompt")
def eval_(
    model: ModelSpec,
    data: DataOpt = None,
    split: SplitOpt = None,
    out: Annotated[Path | None, typer.Option(help="Write the metrics as JSON here.", metavar="FILE")] = None,
    batch_size: BatchSizeOpt = 32,
    mteb: Annotated[str | None, typer.Option(
        "--mteb", metavar="TASK", help="Run this MTEB retrieval task with the mteb package instead (e.g. "
        "Ko-StrategyQA, AutoRAGRetrieval, MIRACLRetrieval: its Korean subset); needs the hub or --mteb-data.")] = None,
    mteb_data: Annotated[Path | None, typer.Option(
        "--mteb-data", help="A local copy of the --mteb task's dataset repository (hf download REPO --repo-type "
        "dataset --local-dir DIR), for machines without the Hugging Face hub.", metavar="DIR")] = None,
    quiet: QuietOpt = False,
) -> None:
    """The card's IR suite (InformationRetrievalEvaluator definitions) for cosine and dot similarity, or an MTEB
    retrieval task (--mteb) scored by mteb itself."""
    quiet_libraries()
    check_output(out, "--out")
    if mteb is not None or mteb_data is not None:
        _eval_mteb(mteb, mteb_data, model, encode_options(batch_size, quiet), out, data, split)
        return
    rs = load_retrieval_set(data, split=split)
    console.print(f"{model.name} runs {describe_precision(model)}", highlight=False)
    metrics = evaluate_model(rs, model, encode_options(batch_size, quiet))
    console.print(ir_table(by_similarity(metrics), title=f"{model.name} on {rs.name} ({len(rs.queries)} queries, "
                                                          f"{len(rs.corpus)} passages)"))
    if out is not None:
        write_json(out, {"model": model.name, "dataset": rs.summary(), "metrics": metrics})
        console.print(f"results: {out}")


def _eval_mteb(task: str | None, data_dir: Path | None, spec: ModelSpec, options: EncodeOptions,
               out: Path | None, data: str | None, split: str | None) -> None:
    if task is None:
        raise MtebError("--mteb-data needs --mteb TASK")
    if data is not None or split is not None:
        raise MtebError("--data and --split do not apply to --mteb (mteb reads the task's own data; see "
                        "--mteb-data)")
    console.print(f"{spec.name} runs {describe_precision(spec)} on MTEB {task}", highlight=False)
    document = run_mteb(task, spec, options, data_dir)
    console.print(mteb_table(main_scores(document), title=f"{spec.name} on {task} (mteb {document['mteb_version']})"))
    if out is not None:
        write_json(out, {"model": spec.name, "precision": spec.precision, "backend": spec.backend,
                         "task": task, "data": str(data_dir) if data_dir is not None else None, "mteb": document})
        console.print(f"results: {out}")


@exits_on_error()
def inspect(data: DataOpt = None, split: SplitOpt = None) -> None:
    """Validate a retrieval set and print its size and text-length statistics."""
    rs = load_retrieval_set(data, split=split)
    s = rs.stats()
    console.print(f"[bold]{rs.name}[/] is valid")
    console.print(f"queries: {s['queries']} (mean {s['query_chars_mean']:.0f} chars), "
                  f"passages: {s['passages']} (mean {s['passage_chars_mean']:.0f} chars, "
                  f"max {s['passage_chars_max']}), relevant groups per query: mean {s['groups_mean']:.2f}, "
                  f"max {s['groups_max']}")
