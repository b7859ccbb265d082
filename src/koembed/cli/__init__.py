"""The ``koembed`` command line: thin wrappers over the library, no logic of their own.

Every command is registered here, so this is the list of what the CLI offers; each lives in the module
of its subject (:mod:`.evaluate`, :mod:`.train`, :mod:`.index`, :mod:`.serve`), and options shared by several
commands are declared once in :mod:`.common`.
"""

import typer

from koembed.cli import evaluate, index, serve, train

app = typer.Typer(help="Korean text embeddings for retrieval (RAG): benchmark, train, index, search and serve.",
                  no_args_is_help=True, add_completion=False, pretty_exceptions_enable=False)
app.command()(evaluate.bench)
app.command("eval")(evaluate.eval_)
app.command()(evaluate.inspect)
app.command("tune-lexical")(evaluate.tune_lexical)
app.command()(train.train)
app.command()(train.card)
app.command()(train.mine)
app.command("encode")(index.encode)
app.command()(index.export)

index_app = typer.Typer(help="A persistent search index (FAISS folder or Qdrant collection, with Kiwi/BM25): "
                        "build, add, delete, info, export. Query it with koembed search.", no_args_is_help=True)
index_app.command("build")(index.index_build)
index_app.command("add")(index.index_add)
index_app.command("delete")(index.index_delete)
index_app.command("info")(index.index_show)
index_app.command("export")(index.index_export)
app.add_typer(index_app, name="index")

app.command()(index.search)
app.command()(serve.serve)
app.command()(serve.version)


def main() -> None:  # pragma: no cover
    app()
