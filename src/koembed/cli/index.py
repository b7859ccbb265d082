"""``koembed index build|add|delete|optimize|info|export`` and ``search``: from passages to a searchable index."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path
from typing import Annotated, Any

import typer

from koembed.cli.common import (
    DOCS_HELP,
    FROM_OPTIONS,
    AnalyzerOpt,
    ApiKeyOpt,
    BatchSizeOpt,
    IndexDirOpt,
    QuietOpt,
    RayAddressOpt,
    RerankDepthOpt,
    UserDictOpt,
    WorkersOpt,
    check_engine,
    console,
    encode_options,
    err_console,
    exits_on_error,
    quiet_libraries,
    user_dict_of,
    with_model_options,
    with_qdrant_options,
)
from koembed.data import load_documents
from koembed.encoding.ray_engine import RayOptions, tokenize_ray
from koembed.index import (
    IndexParams,
    QdrantTarget,
    add_documents,
    build_index,
    build_index_from_embeddings,
    default_mode,
    delete_documents,
    describe_mode,
    export_index,
    index_info,
    load_index,
    optimize_index,
)
from koembed.index.summary import index_summary
from koembed.lexical import DEFAULT_SPEC, lexical_with_analyzer
from koembed.models import ModelSpec, RunSettings
from koembed.models.reranker import load_reranker
from koembed.ranking import hit_rows
from koembed.retrieval.rerank import search_then_rerank
from koembed.retrieval.specs import parse_fusion


def _target(store: str, path: Path | None, url: str | None, api_key: str | None, collection: str,
            shards: int, replicas: int, quantization: str, on_disk: bool) -> QdrantTarget | None:
    """The Qdrant target of --store qdrant (None for faiss); Qdrant-only options with faiss are an error."""
    if store not in ("faiss", "qdrant"):
        raise typer.BadParameter(f"unknown store {store!r}: use faiss or qdrant", param_hint="--store")
    if store == "faiss":
        if path or url:
            raise typer.BadParameter("--path and --url are for --store qdrant", param_hint="--store")
        return None
    return QdrantTarget(path=str(path) if path else None, url=url, api_key=api_key, collection=collection,
                        shards=shards, replicas=replicas, quantization=quantization, on_disk=on_disk)


def _built(out: Path, manifest) -> str:
    where = f"qdrant {manifest.where}" if getattr(manifest, "store", "faiss") == "qdrant" else manifest.kind
    return f"index: {out} ({manifest.counts['passages']} passages, {where}, {manifest.dimension} dimensions)"


@exits_on_error()
@with_model_options("model", "precision", "backend", "query_prompt", "passage_prompt", precision="auto",
                    backend="auto")
@with_qdrant_options("faiss")
def index_build(
    model: ModelSpec,
    corpus: Annotated[str, typer.Option(help=DOCS_HELP, metavar="DOCS")],
    out: Annotated[Path, typer.Option(help="New (or empty) index folder.", metavar="DIR")],
    kind: Annotated[str, typer.Option(help="flat (exact), hnsw (graph, approximate) or ivf (clusters, "
                                      "approximate).", metavar="flat|hnsw|ivf")] = "flat",
    lexical: Annotated[str, typer.Option(
        help="BM25 half: bm25 (content morphemes), bm25-char (character bigrams), bm25-phrase (morphemes, morpheme "
        "bigrams and pairs, character bigrams, weighted) or bm25-fields:FIELD=WEIGHT,...[@z]; @mecab or @kiwi "
        "chooses the analyzer (as --analyzer).", metavar="SPEC")] = DEFAULT_SPEC,
    analyzer: AnalyzerOpt = None,
    user_dict: UserDictOpt = None,
    fusion: Annotated[str | None, typer.Option(
        help="How hybrid search fuses the BM25 half and the dense half: rrf (reciprocal ranks, k=60), rrf@k=K, or "
        "z|dbsf|cc@W_BM25,W_DENSE (weighted normalised scores; koembed tune-fusion fits them for your model). "
        "Given, the index records hybrid as its default search mode; not given, the lexical half alone (bm25), "
        "and hybrid search uses rrf. FAISS store only.", metavar="SPEC")
                      ] = None,
    batch_size: BatchSizeOpt = 32,
    from_embeddings: Annotated[list[Path] | None, typer.Option(
        "--from-embeddings", help="Take the vectors from koembed encode output instead of encoding (repeatable: "
        "one folder per machine). All shards of one run must be there, made by --model from --corpus.",
        metavar="DIR")] = None,
    qdrant: dict = FROM_OPTIONS,
    engine: Annotated[str, typer.Option(help="Korean analysis: local (this process; MeCab-ko uses every core) or ray "
                                        "(a Ray Data actor pool, for large corpora).", metavar="local|ray")] = "local",
    address: RayAddressOpt = None,
    workers: WorkersOpt = 1,
    quiet: QuietOpt = False,
) -> None:
    """Embed (or take stored embeddings of) and tokenise a corpus into a new index (FAISS folder or Qdrant). The
    query and passage prompts used are recorded in the index: searches embed queries with its query prompt."""
    quiet_libraries()
    check_engine(engine)
    target = _target(**qdrant)
    if target is not None and fusion is not None and fusion.strip() != "rrf":
        raise typer.BadParameter("a Qdrant index fuses with Qdrant's own RRF or DBSF (or koembed's weighted "
                                 "fusion through Index.search(weights=...)); --fusion is for --store faiss",
                                 param_hint="--fusion")
    params = IndexParams(kind=kind, lexical=lexical_with_analyzer(lexical, analyzer),
                         fusion=parse_fusion(fusion or "rrf"), mode="hybrid" if fusion else None,
                         user_dict=user_dict_of(user_dict))
    docs = load_documents(corpus)
    tokens = (tokenize_ray(list(docs.values()), RayOptions(address, workers), show_progress=not quiet,
                           analyzer=params.lexical.analyzer, user_dict=params.user_dict)
              if engine == "ray" else None)
    if from_embeddings:
        manifest = build_index_from_embeddings(model, from_embeddings, list(docs), list(docs.values()), out,
                                               params=params, show_progress=not quiet, target=target, tokens=tokens)
    else:
        manifest = build_index(model, list(docs), list(docs.values()), out, params=params,
                               options=encode_options(batch_size, quiet), target=target, tokens=tokens)
    console.print(_built(out, manifest) + f"; default search: {describe_mode(manifest)}", highlight=False)
    recorded = getattr(manifest, "params", {})  # a Qdrant manifest has none
    if "note" in recorded:
        err_console.print(f"note: {recorded['note']}", highlight=False)


@exits_on_error()
def index_add(
    index: IndexDirOpt,
    docs: Annotated[str, typer.Option(help=DOCS_HELP + " Ids must be new (delete, then add, to replace).",
                                      metavar="DOCS")],
    batch_size: BatchSizeOpt = 32,
    api_key: ApiKeyOpt = None,
    analyzer: AnalyzerOpt = None,
    user_dict: UserDictOpt = None,
    quiet: QuietOpt = False,
) -> None:
    """Add passages to an index (FAISS: a new version, the old one stays until the switch; Qdrant: undone at
    the next change if interrupted). They are analysed as the index's passages were: its analyzer and user
    dictionary."""
    quiet_libraries()
    checks: dict[str, Any] = {"analyzer": analyzer, "user_dict": user_dict_of(user_dict)}
    passages = load_documents(docs)
    manifest = add_documents(index, list(passages), list(passages.values()),
                             options=encode_options(batch_size, quiet), api_key=api_key, **checks)
    console.print(f"added {len(passages)}: {manifest.counts['passages']} passages", highlight=False)


@exits_on_error()
def index_delete(
    index: IndexDirOpt,
    id_: Annotated[list[str], typer.Option("--id", help="Passage id to delete, repeatable.", metavar="ID")],
    api_key: ApiKeyOpt = None,
) -> None:
    """Delete passages by id; an unknown id is an error and nothing is deleted."""
    manifest = delete_documents(index, id_, api_key=api_key)
    console.print(f"deleted {len(set(id_))}: {manifest.counts['passages']} passages", highlight=False)


@exits_on_error()
def index_optimize(index: IndexDirOpt) -> None:
    """Merge the index's BM25 segments into one (a new version; rankings unchanged): queries pay per segment,
    so an index grown by many adds, or built before builds merged their chunks, searches faster merged."""
    manifest = optimize_index(index)
    if manifest is None:
        console.print("nothing to merge: one BM25 segment or fewer (a Qdrant index merges its own)", highlight=False)
        return
    console.print(f"merged the BM25 segments into one: {manifest.counts['passages']} passages", highlight=False)


@exits_on_error()
def index_show(
    index: IndexDirOpt,
    api_key: ApiKeyOpt = None,
    json_: Annotated[bool, typer.Option("--json", help="Print the whole manifest (hashes included) as JSON.")] = False,
) -> None:
    """Verify an index (checksums; Qdrant: its collection) and summarise it: passages, model, lexical fields,
    sizes on disk, versions (--json: the manifest)."""
    info = index_info(index, api_key=api_key)
    if json_:
        typer.echo(json.dumps(info, ensure_ascii=False, indent=2))
        return
    rows = index_summary(info)
    width = max(len(label) for label, _ in rows)
    for label, value in rows:
        console.print(f"{label + ':':<{width + 1}} {value}", highlight=False, soft_wrap=True)


@exits_on_error()
@with_model_options("device")
def search(
    query: Annotated[str, typer.Argument(help="The query text.", metavar="QUERY")],
    index: IndexDirOpt,
    mode: Annotated[str | None, typer.Option(
        help="Default: the mode the index recorded at build (bm25 unless it was built with --fusion). hybrid (the "
        "fusion of both the index was built with, as the server's /search), dense (embeddings), bm25 (the index's "
        "lexical fields; loads no model), or for an index built with a bge-m3-layout model: sparse (BGE-M3 "
        "lexical weights), colbert (its multi-vectors) or m3 (FlagEmbedding's 0.4/0.2/0.4 sum of dense, sparse, "
        "colbert); colbert and m3 need the Qdrant store.", metavar="MODE")] = None,
    k: Annotated[int, typer.Option("-k", "--top-k", min=1, help="Number of hits.", metavar="K")] = 10,
    json_: Annotated[bool, typer.Option("--json", help="One JSON object per hit (rank, docid, score, text).")] = False,
    rerank: Annotated[str | None, typer.Option(
        help="Cross-encoder (hub id or folder) that rescores the top --rerank-depth hits; scores are then its "
        "relevance scores.", metavar="MODEL")] = None,
    rerank_depth: RerankDepthOpt = 50,
    settings: RunSettings = FROM_OPTIONS,
    api_key: ApiKeyOpt = None,
    analyzer: AnalyzerOpt = None,
    user_dict: UserDictOpt = None,
) -> None:
    """Search an index built by koembed index build (optionally reranked by a cross-encoder). Queries are
    analysed by the index's analyzer with its user dictionary."""
    quiet_libraries()
    idx = load_index(index, api_key=api_key, device=settings.device, analyzer=analyzer,
                     user_dict=user_dict_of(user_dict))
    reranker = load_reranker(settings.spec(rerank)) if rerank else None
    mode = mode or default_mode(idx.manifest)
    hits = search_then_rerank(idx, [query], k, mode=mode, reranker=reranker, depth=rerank_depth)
    rows = hit_rows(hits[0], idx.text)
    if json_:
        for row in rows:
            typer.echo(json.dumps(row, ensure_ascii=False))
        return
    from rich.table import Table  # rich's tables pull in fractions/decimal: kept off `koembed --help`

    title = f"{mode} search, top {k}" + (f", reranked by {rerank} (top {rerank_depth})" if rerank else "")
    table = Table("rank", "score", "doc id", "passage", title=title)
    for row in rows:
        table.add_row(str(row["rank"]), f"{row['score']:.4f}", row["docid"],
                      textwrap.shorten(row["text"], width=90, placeholder=" …"))
    console.print(table if rows else "no hits")


@exits_on_error()
@with_qdrant_options("qdrant")
def index_export(
    index: IndexDirOpt,
    out: Annotated[Path, typer.Option(help="New (or empty) folder for the Qdrant index's manifest (and local "
                                      "storage).", metavar="DIR")],
    qdrant: dict = FROM_OPTIONS,
    quiet: QuietOpt = False,
) -> None:
    """Move a FAISS index into Qdrant (vectors, passages and Kiwi tokens as stored: nothing is re-encoded)."""
    target = _target(**qdrant)
    if target is None:
        raise typer.BadParameter("export goes to --store qdrant", param_hint="--store")
    manifest = export_index(index, out, target, show_progress=not quiet)
    console.print(_built(out, manifest), highlight=False)
