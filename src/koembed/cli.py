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

app = typer.Typer(help="Korean text embeddings for retrieval (RAG): benchmark, train, index, search and serve.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
# Logs and pipes get wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

DataOpt = Annotated[Optional[str], typer.Option(
    "--data", "-d", help="Retrieval set: AutoRAG folder (qa.parquet + corpus.parquet), BEIR folder "
    "(corpus.jsonl, queries.jsonl, qrels/), or SQuAD/KorQuAD .json. Default: the bundled Korean sample.")]
SplitOpt = Annotated[Optional[str], typer.Option(
    help="BEIR: qrels split (default test). KorQuAD/SQuAD: all (default), train or test, by article title.")]
PrecisionOpt = Annotated[str, typer.Option(
    help="Model weights: fp32, bf16, fp16 (CUDA only) or auto (bf16 on CPUs with AMX/AVX512-BF16 and on "
    "bf16-capable GPUs, else fp32). Embeddings are float32 either way.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
BackendOpt = Annotated[str, typer.Option(
    help="torch, onnx (onnxruntime, fp32) or onnx-int8 (onnxruntime, int8 weights). ONNX runs on the CPU; a "
    "torch model is exported once into ~/.cache/koembed ($KOEMBED_CACHE_DIR). A koembed export folder runs "
    "as the backend it was exported for.")]


def _fail(exc: Exception) -> None:
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(code=2)


def _quiet_libraries() -> None:
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars; koembed shows its own progress
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
    precision: PrecisionOpt = "fp32",
    backend: BackendOpt = "torch",
    cache_dir: Annotated[Optional[Path], typer.Option(
        help="Store dense corpus embeddings here and reuse them in later runs (per model, precision and corpus); "
        "an interrupted encoding resumes.")] = None,
    quiet: QuietOpt = False,
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
                            show_progress=not quiet, precision=precision, backend=backend,
                            cache_dir=str(cache_dir) if cache_dir else None)
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
    precision: PrecisionOpt = "fp32",
    backend: BackendOpt = "torch",
    quiet: QuietOpt = False,
) -> None:
    """The card's IR suite (InformationRetrievalEvaluator definitions) for cosine and dot similarity."""
    from koembed.bench import evaluate_model, ir_table
    from koembed.files import write_json

    from koembed.data import load_retrieval_set

    _quiet_libraries()
    try:
        rs = load_retrieval_set(data, split=split)
        metrics = evaluate_model(rs, model, batch_size=batch_size, device=device, show_progress=not quiet,
                                 precision=precision, backend=backend)
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
def train(
    config: Annotated[Path, typer.Argument(help="YAML recipe, e.g. configs/bge-m3-ko.yaml.")],
    set_: Annotated[Optional[list[str]], typer.Option(
        "--set", help="Override a config key, repeatable: --set train.batch_size=64 --set model.base=minilm")] = None,
    resume: Annotated[bool, typer.Option(help="Continue from the last complete checkpoint in output_dir.")] = False,
    dry_run: Annotated[bool, typer.Option(help="Validate the config and print the plan; load no model.")] = False,
    allow_overlap: Annotated[bool, typer.Option(
        help="Warn instead of refusing when training texts appear in the evaluation set.")] = False,
    quiet: QuietOpt = False,
) -> None:
    """Fine-tune an embedding model on (query, passage) pairs with in-batch negatives (cached MNRL)."""
    import json

    from koembed.train_config import load_config

    _quiet_libraries()
    overrides = list(set_ or []) + (["data.allow_overlap=true"] if allow_overlap else [])
    try:
        cfg = load_config(config, overrides)
        if dry_run:
            from koembed.train import data_report, load_training_data, plan

            local_only = all(getattr(s, "type", "") != "hf" for s in cfg.data.train)
            data = load_training_data(cfg, count_only_local=True)
            n = len(data.pairs) if local_only else None
            console.print_json(json.dumps({"config": cfg.model_dump(), "plan": plan(cfg, n)}, ensure_ascii=False))
            err_console.print(data_report(data), soft_wrap=True, highlight=False)
            return
        from koembed.train import train as run_training

        summary = run_training(cfg, resume=resume, show_progress=not quiet,
                               report=lambda m: console.print(m, soft_wrap=True, highlight=False))
    except KoembedError as exc:
        _fail(exc)
    console.print_json(json.dumps({k: summary[k] for k in ("examples", "global_step", "metrics", "final_model")
                                   if k in summary}, ensure_ascii=False))


@app.command()
def card(
    model: Annotated[Path, typer.Option("--model", "-m", help="Trained model folder (output_dir/final).")],
    results: Annotated[Optional[Path], typer.Option(help="results.json from koembed bench, for the tables.")] = None,
) -> None:
    """Write (or rewrite) a model's README.md model card, with bench results if given."""
    import json

    from koembed.card import write_model_card

    if not model.is_dir():
        _fail(KoembedError(f"{model}: no such model folder"))
    bench_doc = None
    if results is not None:
        try:
            bench_doc = json.loads(results.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            _fail(KoembedError(f"{results}: not a readable results.json ({exc})"))
    path = write_model_card(model, bench=bench_doc)
    console.print(f"model card: {path}")


def _parse_rank_range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in text.split(":"))
    except ValueError:
        raise typer.BadParameter(f"expected a:b with integers, e.g. 10:100, got {text!r}",
                                 param_hint="--range") from None
    if not 1 <= low <= high:
        raise typer.BadParameter(f"need 1 <= a <= b, got {text!r}", param_hint="--range")
    return low, high


@app.command()
def mine(
    data: Annotated[Path, typer.Option("--data", "-d", help="Pairs file (.jsonl, .parquet or .csv with query, "
                                       "positive[, negatives]).")],
    out: Annotated[Path, typer.Option(help="Output .jsonl (query, positive, negatives): a pairs training source.")],
    corpus: Annotated[Optional[str], typer.Option(
        help="Retrieval set whose corpus is searched (any layout --data of bench takes). Default: the pairs' "
        "own positives.")] = None,
    split: SplitOpt = None,
    retriever: Annotated[str, typer.Option("--retriever", "-r", help="Retriever spec: bm25, dense:<model>, or a "
                                           "hybrid (with --no-margin).")] = "bm25",
    negatives: Annotated[int, typer.Option("--negatives", "-n", min=1, help="Negatives per pair.")] = 5,
    rank_range: Annotated[str, typer.Option("--range", help="Candidate ranks a:b, 1-based and inclusive; skipping "
                                            "the top ranks avoids unjudged positives.")] = "10:100",
    margin: Annotated[float, typer.Option(help="Drop candidates scoring above margin x the positive's score "
                                          "(sentence-transformers relative_margin = 1 - margin). 0 disables.")] = 0.95,
    no_margin: Annotated[bool, typer.Option("--no-margin", help="No margin filter.")] = False,
    batch_size: Annotated[int, typer.Option(min=1, help="Encoding batch size for dense models.")] = 32,
    device: Annotated[Optional[str], typer.Option(help="torch device for dense models (default: auto).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Mine hard negatives for training pairs from a retriever's ranking, skipping likely false negatives."""
    import json

    from koembed.data import load_retrieval_set
    from koembed.data.pairs import read_pairs
    from koembed.files import write_jsonl
    from koembed.mine import mine_hard_negatives
    from koembed.retrieve import parse_spec

    _quiet_libraries()
    ranks = _parse_rank_range(rank_range)
    if margin < 0:
        raise typer.BadParameter("margin must be 0 (off) or positive", param_hint="--margin")
    if out.suffix.lower() != ".jsonl":
        raise typer.BadParameter("the output is JSON lines; name it *.jsonl", param_hint="--out")
    try:
        parse_spec(retriever)  # a typo fails before the data is read
        pairs = read_pairs(data)
        docs = load_retrieval_set(corpus, split=split).corpus if corpus is not None else None
        mined, stats = mine_hard_negatives(pairs, docs, retriever, negatives=negatives, rank_range=ranks,
                                           margin=None if no_margin or margin == 0 else margin,
                                           batch_size=batch_size, device=device, show_progress=not quiet)
    except KoembedError as exc:
        _fail(exc)
    write_jsonl(out, ({"query": p.query, "positive": p.positive, "negatives": list(p.negatives)} for p in mined))
    console.print_json(json.dumps(stats))
    console.print(f"mined pairs: {out}")


@app.command("encode")
def encode_cmd(
    model: Annotated[str, typer.Option("--model", "-m", help="Hub id, local folder, or 'minilm'.")],
    corpus: Annotated[str, typer.Option(help="Passages: a .jsonl/.parquet/.csv id/text file or any retrieval "
                                        "set, whose corpus is used.")],
    out: Annotated[Path, typer.Option(help="Output folder; shard i of n goes to OUT/shard-i-of-n/.")],
    shard: Annotated[str, typer.Option(help="i/n: encode shard i (from 0) of n contiguous shards.")] = "0/1",
    precision: PrecisionOpt = "fp32",
    backend: BackendOpt = "torch",
    dtype: Annotated[str, typer.Option(help="Stored vectors: float32 or float16 (half the disk).")] = "float32",
    chunk_size: Annotated[int, typer.Option(min=1, help="Passages per chunk file (the unit of resuming).")] = 4096,
    batch_size: Annotated[int, typer.Option(min=1, help="Encoding batch size.")] = 32,
    max_batch_tokens: Annotated[Optional[int], typer.Option(
        min=1, help="Batch by a token budget instead of --batch-size: many short texts or few long ones per "
        "batch (padded size x longest <= budget).")] = None,
    device: Annotated[Optional[str], typer.Option(help="torch device (default: auto).")] = None,
    quiet: QuietOpt = False,
) -> None:
    """Encode a corpus (or one shard of it) to embedding files; rerun the same command to resume."""
    from koembed.data.docs import load_documents
    from koembed.encode import encode_corpus, parse_shard

    _quiet_libraries()
    try:
        docs = load_documents(corpus)
        report = encode_corpus(model, list(docs), list(docs.values()), out, shard=parse_shard(shard),
                               precision=precision, backend=backend, dtype=dtype, chunk_size=chunk_size, batch_size=batch_size,
                               max_batch_tokens=max_batch_tokens,
                               device=device, show_progress=not quiet)
    except KoembedError as exc:
        _fail(exc)
    info = report.manifest
    console.print(f"embeddings: {report.shard_dir} (passages {info['shard']['start']}..{info['shard']['stop'] - 1}, "
                  f"{info['dimension']} dimensions, {info['precision']}, {info['dtype']}; chunks encoded "
                  f"{report.encoded}, reused {report.skipped})", highlight=False)


@app.command()
def export(
    model: Annotated[str, typer.Option("--model", "-m", help="Hub id, local folder, or 'minilm'.")],
    out: Annotated[Path, typer.Option(help="New (or empty) folder for the exported copy.")],
    backend: Annotated[str, typer.Option(help="onnx (fp32 graph) or onnx-int8 (int8 MatMul weights, per "
                                         "channel; 1.6x (MiniLM) to 4x (bge-m3 size) torch fp32's speed on a "
                                         "VNNI CPU).")] = "onnx-int8",
    overwrite: Annotated[bool, typer.Option(help="Replace a non-empty --out folder.")] = False,
) -> None:
    """Export a model to ONNX (optionally int8) for onnxruntime; use the folder as any model (--model DIR)."""
    from koembed.onnx_model import export_model

    _quiet_libraries()
    try:
        report = export_model(model, out, backend=backend, overwrite=overwrite)
    except KoembedError as exc:
        _fail(exc)
    check = report["check"]
    console.print(f"export: {report['out']} ({report['backend']}, {report['megabytes']} MB); cosine to the fp32 "
                  f"torch model on {check['texts']} sample texts: mean {check['cosine_mean']:.4f}, "
                  f"min {check['cosine_min']:.4f}", highlight=False)


index_app = typer.Typer(help="A persistent search index on disk (FAISS + Kiwi/BM25): build, add, delete, info. "
                        "Query it with koembed search.", no_args_is_help=True)
app.add_typer(index_app, name="index")

IndexDirOpt = Annotated[Path, typer.Option("--index", "-i", help="Index folder (made by koembed index build).")]
DocsHelp = ("Passages: a .jsonl or .parquet file with id and text columns, or any retrieval set "
            "(AutoRAG/BEIR folder, KorQuAD .json, 'sample'), whose corpus is used.")


@index_app.command("build")
def index_build(
    model: Annotated[str, typer.Option("--model", "-m", help="Hub id, local folder, or 'minilm'.")],
    corpus: Annotated[str, typer.Option(help=DocsHelp)],
    out: Annotated[Path, typer.Option(help="New (or empty) index folder.")],
    kind: Annotated[str, typer.Option(help="flat (exact), hnsw (graph, approximate) or ivf (clusters, "
                                      "approximate).")] = "flat",
    batch_size: Annotated[int, typer.Option(min=1, help="Encoding batch size.")] = 32,
    from_embeddings: Annotated[Optional[list[Path]], typer.Option(
        "--from-embeddings", help="Take the vectors from koembed encode output instead of encoding (repeatable: "
        "one folder per machine). All shards of one run must be there, made by --model from --corpus.")] = None,
    precision: PrecisionOpt = "fp32",
    backend: BackendOpt = "torch",
    quiet: QuietOpt = False,
) -> None:
    """Embed (or take stored embeddings of) and tokenise a corpus into a new index folder."""
    from koembed.data.docs import load_documents
    from koembed.index import build_index, build_index_from_embeddings

    _quiet_libraries()
    try:
        docs = load_documents(corpus)
        if from_embeddings:
            manifest = build_index_from_embeddings(model, from_embeddings, list(docs), list(docs.values()), out,
                                                   kind=kind, show_progress=not quiet, precision=precision,
                                                   backend=backend)
        else:
            manifest = build_index(model, list(docs), list(docs.values()), out, kind=kind, batch_size=batch_size,
                                   show_progress=not quiet, precision=precision, backend=backend)
    except KoembedError as exc:
        _fail(exc)
    console.print(f"index: {out} ({manifest.counts['passages']} passages, {manifest.kind}, "
                  f"{manifest.dimension} dimensions)", highlight=False)
    if "note" in manifest.params:
        err_console.print(f"note: {manifest.params['note']}", highlight=False)


@index_app.command("add")
def index_add(
    index: IndexDirOpt,
    docs: Annotated[str, typer.Option(help=DocsHelp + " Ids must be new (delete, then add, to replace).")],
    batch_size: Annotated[int, typer.Option(min=1, help="Encoding batch size.")] = 32,
    quiet: QuietOpt = False,
) -> None:
    """Add passages to an index (a new version; the old one stays until the switch)."""
    from koembed.data.docs import load_documents
    from koembed.index import add_documents

    _quiet_libraries()
    try:
        passages = load_documents(docs)
        manifest = add_documents(index, list(passages), list(passages.values()), batch_size=batch_size,
                                 show_progress=not quiet)
    except KoembedError as exc:
        _fail(exc)
    console.print(f"added {len(passages)}: {manifest.counts['passages']} passages", highlight=False)


@index_app.command("delete")
def index_delete(
    index: IndexDirOpt,
    id_: Annotated[list[str], typer.Option("--id", help="Passage id to delete, repeatable.")],
) -> None:
    """Delete passages by id; an unknown id is an error and nothing is deleted."""
    from koembed.index import delete_documents

    try:
        manifest = delete_documents(index, id_)
    except KoembedError as exc:
        _fail(exc)
    console.print(f"deleted {len(set(id_))}: {manifest.counts['passages']} passages", highlight=False)


@index_app.command("info")
def index_info(index: IndexDirOpt) -> None:
    """Verify an index's checksums and print its manifest as JSON."""
    import json

    from koembed.index import index_info as read_info

    try:
        info = read_info(index)
    except KoembedError as exc:
        _fail(exc)
    typer.echo(json.dumps(info, ensure_ascii=False, indent=2))


@app.command()
def search(
    query: Annotated[str, typer.Argument(help="The query text.")],
    index: IndexDirOpt,
    mode: Annotated[str, typer.Option(help="hybrid (RRF of both, as the server's /search), dense (embeddings) "
                                           "or bm25 (Kiwi morphemes).")] = "hybrid",
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Number of hits.")] = 10,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per hit (rank, docid, score, text).")] = False,
) -> None:
    """Search an index built by koembed index build."""
    import json
    import textwrap

    from rich.table import Table

    from koembed.index import load_index

    _quiet_libraries()
    try:
        idx = load_index(index)
        hits = idx.search([query], k, mode=mode)[0]
    except KoembedError as exc:
        _fail(exc)
    if json_:
        for rank, (doc, score) in enumerate(hits, start=1):
            typer.echo(json.dumps({"rank": rank, "docid": doc, "score": score, "text": idx.text(doc)},
                                  ensure_ascii=False))
        return
    table = Table("rank", "score", "doc id", "passage", title=f"{mode} search, top {k}")
    for rank, (doc, score) in enumerate(hits, start=1):
        table.add_row(str(rank), f"{score:.4f}", doc, textwrap.shorten(idx.text(doc), width=90, placeholder=" …"))
    console.print(table if hits else "no hits")


@app.command()
def serve(
    model: Annotated[str, typer.Option("--model", "-m", help="Hub id, local folder, or 'minilm'.")],
    index: Annotated[Optional[Path], typer.Option(
        "--index", "-i", help="Index folder for POST /search (built with this model by koembed index build).")] = None,
    host: Annotated[str, typer.Option(help="Interface to bind; anything but loopback exposes the API.")
                    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="TCP port.")] = 8000,
    api_key: Annotated[Optional[str], typer.Option(
        help="Require 'Authorization: Bearer KEY' (all routes but /health). Default: $KOEMBED_API_KEY, which "
        "keeps the key out of the process list.")] = None,
    max_batch_tokens: Annotated[int, typer.Option(min=1, help="Token budget of one dynamic batch.")] = 8192,
    max_wait_ms: Annotated[float, typer.Option(min=0, help="Longest wait for a batch to fill, in ms.")] = 5.0,
    max_inputs: Annotated[int, typer.Option(min=1, help="Most texts per embeddings request.")] = 256,
    max_input_tokens: Annotated[Optional[int], typer.Option(
        min=1, help="Most tokens per text (default: the model's max_seq_length).")] = None,
    truncate: Annotated[bool, typer.Option(help="Embed the first max-input-tokens tokens of longer inputs instead "
                                           "of refusing them (413).")] = False,
    no_batching: Annotated[bool, typer.Option("--no-batching", help="One encode call per request (for "
                                              "comparison).")] = False,
    device: Annotated[Optional[str], typer.Option(help="torch device (default: auto).")] = None,
    precision: PrecisionOpt = "fp32",
    backend: BackendOpt = "torch",
) -> None:
    """Serve the model over HTTP: OpenAI-compatible /v1/embeddings, /search, /health, /metrics."""
    from koembed.server import API_KEY_ENV, ServerLimits, is_loopback
    from koembed.server import serve as run_server

    _quiet_libraries()
    if not is_loopback(host):
        keyless = not (api_key or os.environ.get(API_KEY_ENV))
        err_console.print(f"[bold yellow]warning:[/] binding to {host} makes the API reachable from other machines"
                          + (f" without an API key (set {API_KEY_ENV} or --api-key)" if keyless else ""),
                          highlight=False)
    try:
        limits = ServerLimits(max_inputs=max_inputs, max_input_tokens=max_input_tokens,
                              max_batch_tokens=max_batch_tokens, max_wait_ms=max_wait_ms, truncate=truncate,
                              batching=not no_batching)
        run_server(model, index, host=host, port=port, api_key=api_key, limits=limits, device=device,
                   precision=precision, backend=backend)
    except (KoembedError, ValueError) as exc:
        _fail(exc)


@app.command()
def version() -> None:
    """Print koembed's version."""
    from koembed import __version__

    console.print(__version__)


def main() -> None:  # pragma: no cover
    app()


if __name__ == "__main__":  # python -m koembed.cli, as torchrun -m launches it
    app()
