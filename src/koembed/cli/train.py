"""``koembed train``, ``koembed card``, ``koembed mine``: fine-tune on pairs, describe the result, mine negatives."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

import koembed.training as training
from koembed.cli.common import (
    FROM_OPTIONS,
    BatchSizeOpt,
    QuietOpt,
    SplitOpt,
    check_output,
    console,
    encode_options,
    err_console,
    exits_on_error,
    parse_rank_range,
    quiet_libraries,
    with_model_options,
)
from koembed.data import load_retrieval_set, read_pairs, write_pairs
from koembed.errors import KoembedError
from koembed.models import RunSettings
from koembed.models.distill import distill as distill_static
from koembed.retrieval.specs import parse_spec


@exits_on_error()
def train(
    config: Annotated[Path, typer.Argument(help="YAML recipe, e.g. configs/bge-m3-ko.yaml.", metavar="CONFIG")],
    set_: Annotated[list[str] | None, typer.Option(
        "--set", help="Override a config key, repeatable: --set train.batch_size=64 --set model.base=minilm",
        metavar="KEY=VALUE")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last complete checkpoint in output_dir.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Validate the config and print the plan; load no model.")] = False,
    allow_overlap: Annotated[bool, typer.Option(
        help="Warn instead of refusing when training texts appear in the evaluation set.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune an embedding model on (query, passage) pairs with in-batch negatives (cached MNRL)."""
    quiet_libraries()
    overrides = list(set_ or []) + (["data.allow_overlap=true"] if allow_overlap else [])
    cfg = training.load_config(config, overrides)
    if dry_run:
        document, report = training.dry_run(cfg)
        console.print_json(json.dumps(document, ensure_ascii=False))
        err_console.print(report, soft_wrap=True, highlight=False)
        return
    summary = training.train(cfg, resume=resume, show_progress=not quiet,
                             report=lambda m: console.print(m, soft_wrap=True, highlight=False))
    console.print_json(json.dumps({k: summary[k] for k in ("examples", "global_step", "metrics", "final_model")
                                   if k in summary}, ensure_ascii=False))


@exits_on_error()
def distill(
    teacher: Annotated[str, typer.Option(help="Teacher model: hub id (dragonkue/BGE-m3-ko, BAAI/bge-m3), a "
                                         "sentence-transformers or Hugging Face encoder folder, or an alias.",
                                         metavar="MODEL")],
    out: Annotated[Path, typer.Option(help="Folder for the static model (a sentence-transformers model).",
                                      metavar="DIR")],
    pca_dims: Annotated[int, typer.Option(min=0, help="Output dimension (PCA of the teacher's token vectors); 0 "
                                          "keeps the teacher's.", metavar="N")] = 256,
    device: Annotated[str, typer.Option(help="Where the teacher runs (cpu, cuda).", metavar="DEVICE")] = "cpu",
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")] = False,
) -> None:
    """Distil a static model from a teacher with model2vec (every vocabulary token through the teacher, PCA, SIF
    weights); fine-tune it on pairs with koembed train (model.type: static, model.base: the folder)."""
    quiet_libraries()
    check_output(out, "--out", folder=True)
    made = distill_static(teacher, out, pca_dims=pca_dims or None, device=device, overwrite=overwrite)
    training.write_model_card(out, cfg={"model": {"type": "static", "base": teacher}})
    console.print_json(json.dumps(made, ensure_ascii=False))


@exits_on_error()
def card(
    model: Annotated[Path, typer.Option("--model", "-m", help="Trained model folder (output_dir/final).",
                                        metavar="DIR")],
    results: Annotated[Path | None, typer.Option(help="results.json from koembed bench, for the tables.",
                                                    metavar="FILE")] = None,
) -> None:
    """Write (or rewrite) a model's README.md model card, with bench results if given."""
    if not model.is_dir():
        raise KoembedError(f"{model}: no such model folder")
    bench_doc = None
    if results is not None:
        try:
            bench_doc = json.loads(results.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise KoembedError(f"{results}: not a readable results.json ({exc})") from None
    path = training.write_model_card(model, bench=bench_doc)
    console.print(f"model card: {path}")


@exits_on_error()
@with_model_options("device", "query_prompt", "passage_prompt")
def mine(
    data: Annotated[Path, typer.Option("--data", "-d", help="Pairs file (.jsonl, .parquet or .csv with query, "
                                       "positive[, negatives]).", metavar="FILE")],
    out: Annotated[Path, typer.Option(help="Output .jsonl (query, positive, negatives): a pairs training source.",
                                      metavar="FILE")],
    corpus: Annotated[str | None, typer.Option(
        help="Retrieval set whose corpus is searched (any layout --data of bench takes). Default: the pairs' "
        "own positives.", metavar="DATA")] = None,
    split: SplitOpt = None,
    retriever: Annotated[str, typer.Option("--retriever", "-r", help="Retriever spec: bm25, dense:<model>, or a "
                                           "hybrid (with --no-margin).", metavar="SPEC")] = "bm25",
    negatives: Annotated[int, typer.Option("--negatives", "-n", min=1, help="Negatives per pair.", metavar="N")] = 5,
    rank_range: Annotated[str, typer.Option("--range", help="Candidate ranks a:b, 1-based and inclusive; skipping "
                                            "the top ranks avoids unjudged positives.", metavar="A:B")] = "10:100",
    margin: Annotated[float, typer.Option(help="Drop candidates scoring above margin x the positive's score "
                                          "(sentence-transformers relative_margin = 1 - margin). 0 disables.",
                                          metavar="X")] = 0.95,
    no_margin: Annotated[bool, typer.Option("--no-margin", help="No margin filter.")] = False,
    batch_size: BatchSizeOpt = 32,
    settings: RunSettings = FROM_OPTIONS,
    quiet: QuietOpt = False,
) -> None:
    """Mine hard negatives for training pairs from a retriever's ranking, skipping likely false negatives."""
    quiet_libraries()
    ranks = parse_rank_range(rank_range)
    if margin < 0:
        raise typer.BadParameter("margin must be 0 (off) or positive", param_hint="--margin")
    if out.suffix.lower() != ".jsonl":
        raise typer.BadParameter("the output is JSON lines; name it *.jsonl", param_hint="--out")
    check_output(out, "--out")
    parse_spec(retriever)  # a typo fails before the data is read
    pairs = read_pairs(data)
    docs = load_retrieval_set(corpus, split=split).corpus if corpus is not None else None
    mined, stats = training.mine_hard_negatives(pairs, docs, retriever, negatives=negatives, rank_range=ranks,
                                                margin=None if no_margin or margin == 0 else margin, settings=settings,
                                                options=encode_options(batch_size, quiet))
    write_pairs(out, mined)
    console.print_json(json.dumps(stats))
    console.print(f"mined pairs: {out}")
