"""``koembed tune-lexical`` and ``koembed tune-fusion``: fit weights on development sets, print the spec to use."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from koembed.cli.common import (
    FROM_OPTIONS,
    AnalyzerOpt,
    BatchSizeOpt,
    CacheDirOpt,
    QuietOpt,
    SplitOpt,
    check_output,
    console,
    encode_options,
    exits_on_error,
    quiet_libraries,
    with_model_options,
)
from koembed.data import load_retrieval_set
from koembed.errors import SpecError
from koembed.evaluation.runner import run_bench
from koembed.evaluation.tuning import WEIGHT_GRID, fit_fusion, fit_weights, fusion_problem, lexical_problem
from koembed.files import write_json
from koembed.lexical import DEFAULT_ANALYZER, FIELDS, LexicalConfig, lexical_spec
from koembed.lexical.analyzer import check_analyzer
from koembed.models import RunSettings
from koembed.ranking import FUSIONS, RRF_K
from koembed.retrieval.specs import hybrid_spec, parse_spec

DevDataOpt = Annotated[list[str], typer.Option(
    "--data", "-d", help="Development retrieval set, repeatable (any layout bench reads). Fit on data you will not "
    "report on: e.g. KorQuAD --split train and MS MARCO-ko --split train.", metavar="DATA")]
FUSION_GRID = (0.0, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)
RRF_KS = (10, 20, 40, 60, 100)


def _numbers(text: str, kind: type, what: str, minimum: float = 0) -> list:
    try:
        values = [kind(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated numbers, got {text!r}", param_hint=what) from None
    if not values or any(not v >= minimum for v in values):
        raise typer.BadParameter(f"give one or more numbers >= {minimum:g}", param_hint=what)
    return values


@exits_on_error(ValueError)
def tune_lexical(
    data: DevDataOpt,
    split: SplitOpt = None,
    fields: Annotated[str, typer.Option(help="Fields to weigh; the first is fixed at weight 1.",
                                        metavar="FIELD,...")] = ",".join(FIELDS),
    normalization: Annotated[str, typer.Option(
        help="Per-query normalisation of each field's scores before the weighted sum: none (raw BM25 sums, what "
        "a search engine computes in one pass), max or z.", metavar="none|max|z")] = "none",
    out: Annotated[Path | None, typer.Option(help="Write the fit (weights, gains per set) as JSON here.",
                                                metavar="FILE")] = None,
    analyzer: AnalyzerOpt = None,
) -> None:
    """Fit the weights of BM25's lexical fields on development sets; prints the bm25-fields spec to use."""
    chosen = tuple(f.strip() for f in fields.split(",") if f.strip())
    check_output(out, "--out")
    config = LexicalConfig({f: 1.0 for f in chosen}, analyzer=check_analyzer(analyzer or DEFAULT_ANALYZER))
    problems = [lexical_problem(load_retrieval_set(d, split=split), config, (normalization,)) for d in data]
    fit = fit_weights(problems, config.fields, normalization, WEIGHT_GRID)
    for name, row in fit["dev"].items():
        console.print(f"{name}: ndcg@10 {row['baseline']:.4f} -> {row['ndcg@10']:.4f}", highlight=False)
    spec = lexical_spec(LexicalConfig(fit["weights"], normalization, analyzer=config.analyzer))
    console.print(f"spec: {spec}", highlight=False)
    if out is not None:
        write_json(out, {**fit, "spec": spec, "data": list(data), "split": split})


@exits_on_error(ValueError)
@with_model_options("precision", "backend", "device", "query_prompt", "passage_prompt")
def tune_fusion(
    data: DevDataOpt,
    retriever: Annotated[list[str], typer.Option(
        "--retriever", "-r", help="Retrievers to fuse, two or more, strongest first (its weight is fixed at 1): "
        "e.g. -r bm25-phrase -r dense:static-ko.", metavar="SPEC")],
    split: SplitOpt = None,
    fusion: Annotated[str, typer.Option(help="Fusions to try: " + ", ".join(FUSIONS) + ".",
                                        metavar="NAME,...")] = ",".join(FUSIONS),
    rrf_k: Annotated[str, typer.Option("--rrf-k", help="RRF's k values to try.",
                                       metavar="K,K,...")] = ",".join(map(str, RRF_KS)),
    grid: Annotated[str, typer.Option(help="Weights tried for every retriever after the first.", metavar="W,W,...")
                    ] = ",".join(f"{g:g}" for g in FUSION_GRID),
    out: Annotated[Path | None, typer.Option(help="Write the fit (every fusion's weights and gains) as JSON.",
                                                metavar="FILE")
                   ] = None,
    cache_dir: CacheDirOpt = None,
    settings: RunSettings = FROM_OPTIONS,
    batch_size: BatchSizeOpt = 32,
    quiet: QuietOpt = False,
) -> None:
    """Fit a hybrid's fusion (z-score, DBSF, min-max or RRF), weights and RRF's k on development sets; prints the
    hybrid spec to use. The objective is the worst development set's ndcg@10 gain over its best single retriever,
    so a fusion that helps one set by hurting another is not chosen; report the spec only on other sets."""
    quiet_libraries()
    check_output(out, "--out")
    check_output(cache_dir, "--cache-dir", folder=True)
    fusions = [f.strip() for f in fusion.split(",") if f.strip()]
    unknown = [f for f in fusions if f not in FUSIONS]
    if unknown or not fusions:
        raise typer.BadParameter(f"unknown fusion {unknown}: use {', '.join(FUSIONS)}", param_hint="--fusion")
    scales = [(f, k) for f in fusions for k in (_numbers(rrf_k, int, "--rrf-k", minimum=1) if f == "rrf" else [RRF_K])]
    weights_grid = _numbers(grid, float, "--grid")
    specs = [r.strip() for r in retriever]
    if len(specs) < 2 or len(set(specs)) < len(specs):
        raise SpecError("tune-fusion needs two or more different retrievers (-r a -r b)")
    for spec in specs:
        if parse_spec(spec).kind == "hybrid":
            raise SpecError(f"{spec!r} is already a fusion: give its parts")
    problems = []
    for path in data:
        rs = load_retrieval_set(path, split=split)
        console.print(f"[bold]{rs.name}[/]: {len(rs.queries)} queries, {len(rs.corpus)} passages")
        results = run_bench(rs, specs, (1,), settings=settings, options=encode_options(batch_size, quiet),
                            cache_dir=cache_dir)
        problems.append(fusion_problem(rs, {r.retriever: r.hits for r in results}, scales))
    fit = fit_fusion(problems, scales, weights_grid, report=lambda f: console.print(
        f"{f['scale']}: worst-set gain {f['objective']:+.4f}, mean {f['mean_gain']:+.4f}, weights "
        + ", ".join(f"{w:g}" for w in f["weights"].values()), highlight=False))
    weights = [fit["weights"].get(s, 0.0) for s in specs]
    for name, row in fit["dev"].items():
        alone = ", ".join(f"{s} {v:.4f}" for s, v in row["alone"].items())
        console.print(f"{name}: ndcg@10 alone: {alone}; fused {row['ndcg@10']:.4f}", highlight=False)
    if sum(w > 0 for w in weights) < 2:
        spec = specs[0]
        console.print("no fusion beats the first retriever alone on every set: use it alone", highlight=False)
    else:
        spec = hybrid_spec(specs, fit["fusion"], weights, fit["rrf_k"])
    console.print(f"spec: {spec}", highlight=False)
    if out is not None:
        write_json(out, {**fit, "spec": spec, "retrievers": specs, "data": list(data), "split": split})
