"""The ``koembed`` command line: thin wrappers over the library, no logic of their own.

Every command is registered here, so this is the list of what the CLI offers; each lives in the module
of its subject (:mod:`.evaluate`, :mod:`.tune`, :mod:`.train`, :mod:`.encode`, :mod:`.export`, :mod:`.index`,
:mod:`.serve`), and options shared by
several commands are declared once in :mod:`.common`.
"""

import typer

from koembed.cli import encode, evaluate, export, index, serve, train, tune

# Plain click help (rich_markup_mode=None): rich's option tables cut option names and wrap help into a narrow
# column at 80 characters; click's two-column list wraps the help under the option instead.
app = typer.Typer(help="Korean text embeddings for retrieval (RAG): benchmark, train, index, search and serve.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False, rich_markup_mode=None)
app.command()(evaluate.bench)
app.command("eval")(evaluate.eval_)
app.command()(evaluate.inspect)
app.command("tune-lexical")(tune.tune_lexical)
app.command("tune-fusion")(tune.tune_fusion)
app.command()(train.train)
app.command()(train.card)
app.command()(train.distill)
app.command()(train.mine)
app.command("encode")(encode.encode)
app.command()(export.export)

index_app = typer.Typer(help="A persistent search index (FAISS folder or Qdrant collection, with BM25 over "
                        "MeCab-ko or Kiwi morphemes): "
                        "build, add, delete, optimize, info, export. Query it with koembed search.", no_args_is_help=True,
                        rich_markup_mode=None)
index_app.command("build")(index.index_build)
index_app.command("add")(index.index_add)
index_app.command("delete")(index.index_delete)
index_app.command("optimize")(index.index_optimize)
index_app.command("info")(index.index_show)
index_app.command("export")(index.index_export)
app.add_typer(index_app, name="index")

app.command()(index.search)
app.command()(serve.serve)
app.command()(serve.version)


def main() -> None:  # pragma: no cover
    app()
