"""What every command shares: consoles, the options declared once, error exits, quiet libraries."""

from __future__ import annotations

import functools
import inspect
import logging
import os
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

from koembed.errors import KoembedError
from koembed.lexical.analyzer import UserDict
from koembed.models import EncodeOptions, ModelSpec, RunSettings, resolve
from koembed.models.precision import decide

# Logs and pipes get wide tables instead of rich's 80-column default.
console = Console(width=None if sys.stdout.isatty() else 160)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 160)

ModelOpt = Annotated[str, typer.Option("--model", "-m", help="Hub id, local folder, 'static-ko' (the bundled "
                                       "Korean static model) or 'minilm'.", metavar="MODEL")]
DataOpt = Annotated[str | None, typer.Option(
    "--data", "-d", help="Retrieval set: AutoRAG folder (qa.parquet + corpus.parquet), BEIR folder "
    "(corpus.jsonl, queries.jsonl, qrels/), or SQuAD/KorQuAD .json. Default: the bundled Korean sample.",
    metavar="DATA")]
SplitOpt = Annotated[str | None, typer.Option(
    help="BEIR: qrels split (default test). KorQuAD/SQuAD: all (default), train or test, by article title.",
    metavar="SPLIT")]
PrecisionOpt = Annotated[str, typer.Option(
    help="Model weights: fp32, bf16, fp16 (CUDA only) or auto (bf16 on CPUs with AMX/AVX512-BF16 and on "
    "bf16-capable GPUs, else fp32). Embeddings are float32 either way. Default: auto where speed matters (encode, "
    "index build, serve), fp32 where metrics must be exact and comparable (bench, eval).", metavar="PRECISION")]
BackendOpt = Annotated[str, typer.Option(
    help="torch, onnx (onnxruntime, fp32), onnx-int8 (onnxruntime, int8 weights), openvino (OpenVINO, fp32 or "
    "bf16 per --precision), openvino-int8 (OpenVINO, int8 weights) or auto (the fastest setting measured for this "
    "device and CPU; what it picked is recorded). The graph backends run on the CPU; a torch model is exported "
    "once into ~/.cache/koembed ($KOEMBED_CACHE_DIR). A koembed export folder runs as the backend it was "
    "exported for. Default: auto where speed matters (encode, index build, serve), torch for bench and eval.",
    metavar="BACKEND")]
DeviceOpt = Annotated[str | None, typer.Option(help="torch device (default: auto).", metavar="DEVICE")]
BatchSizeOpt = Annotated[int, typer.Option(min=1, help="Encoding batch size (dense models).", metavar="N")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bars.")]
RetrieversOpt = Annotated[list[str] | None, typer.Option(
    "--retriever", "-r", help="Retriever spec, repeatable: bm25, bm25-char, bm25-phrase (morphemes + morpheme "
    "bigrams and pairs + character bigrams, weighted), bm25-fields:FIELD=W,...[@z]; a lexical spec's analyzer is "
    "MeCab-ko unless @kiwi follows it (bm25-phrase@kiwi, bm25-fields:unigram=1@z,kiwi), dense:<model> (hub id, folder, "
    "'static-ko' (the bundled Korean static model) or 'minilm'), hybrid:<a>+<b> (reciprocal-rank fusion), "
    "hybrid-<rrf|cc|z|dbsf>[@w1,w2,...][,k=K]:<a>+<b> (weighted fusion; koembed tune-fusion fits it), "
    "m3-sparse:<model>, m3-colbert:<model>, m3[@d,s,c]:<model> (BGE-M3's outputs), rerank:<cross-encoder>@<spec> "
    "(rescore the first stage's top --rerank-depth). Default: "
    "bm25, bm25-phrase, dense:static-ko and the tuned fusion of bm25 and static-ko.", metavar="SPEC")]
CacheDirOpt = Annotated[Path | None, typer.Option(
    help="Store dense corpus embeddings here and reuse them in later runs (per model, precision and corpus); an "
    "interrupted encoding resumes.", metavar="DIR")]
QueryPromptOpt = Annotated[str | None, typer.Option(
    help="Text put before every query (e5: 'query: '). Default: the model's own 'query' prompt from its "
    "config_sentence_transformers.json, if any; '' for none.", metavar="TEXT")]
PassagePromptOpt = Annotated[str | None, typer.Option(
    help="Text put before every passage (e5: 'passage: '). Default: the model's own document/passage prompt, if "
    "any; '' for none.", metavar="TEXT")]
RerankDepthOpt = Annotated[int, typer.Option(min=1, help="First-stage hits a cross-encoder rescores (rerank).",
                                             metavar="N")]
IndexDirOpt = Annotated[Path, typer.Option("--index", "-i", help="Index folder (made by koembed index build).",
                                           metavar="DIR")]
StoreOpt = Annotated[str, typer.Option(help="faiss (a folder: the fastest on one machine) or qdrant (a collection: "
                                       "Qdrant's engine embedded, in --path, or a server with --url).",
                                       metavar="faiss|qdrant")]
QdrantPathOpt = Annotated[Path | None, typer.Option(
    "--path", help="qdrant: the embedded engine's storage folder (default: qdrant/ inside the index folder).",
    metavar="DIR")]
QdrantUrlOpt = Annotated[str | None, typer.Option(
    "--url", help="qdrant: a Qdrant server or cluster, e.g. http://HOST:6333 (instead of the embedded engine).",
    metavar="URL")]
ApiKeyOpt = Annotated[str | None, typer.Option(
    "--api-key", envvar="QDRANT_API_KEY", show_envvar=True,
    help="Qdrant server API key (never written to the manifest).", metavar="KEY")]
QDRANT_OPTIONS = {  # name: (annotation, default) of the options that say where a new Qdrant index goes
    "store": (StoreOpt, "faiss"),
    "path": (QdrantPathOpt, None),
    "url": (QdrantUrlOpt, None),
    "api_key": (ApiKeyOpt, None),
    "collection": (Annotated[str, typer.Option(help="qdrant: the collection's name.", metavar="NAME")], "koembed"),
    "shards": (Annotated[int, typer.Option(min=1, help="qdrant server: shards of the collection (shard_number).",
                                           metavar="N")], 1),
    "replicas": (Annotated[int, typer.Option(min=1, help="qdrant server: copies of each shard "
                                             "(replication_factor).", metavar="N")], 1),
    "quantization": (Annotated[str, typer.Option(help="qdrant server: none, or int8 (scalar-quantised vectors in "
                                                 "RAM, originals for rescoring).", metavar="none|int8")], "none"),
    "on_disk": (Annotated[bool, typer.Option(help="qdrant server: keep the original vectors memory-mapped on "
                                             "disk.")], False),
}
REQUIRED = inspect.Parameter.empty
# The default of the parameter a with_*_options decorator fills (so it may follow parameters with defaults)
FROM_OPTIONS: Any = object()
MODEL_OPTIONS = {  # name: (annotation, default) of the options that say which model runs and how (a ModelSpec)
    "model": (ModelOpt, REQUIRED),
    "precision": (PrecisionOpt, "fp32"),
    "backend": (BackendOpt, "torch"),
    "device": (DeviceOpt, None),
    "query_prompt": (QueryPromptOpt, None),
    "passage_prompt": (PassagePromptOpt, None),
}


def _replace_parameter(command: Callable[..., Any], receives: str, options: dict[str, tuple[Any, Any]],
                       bundle: Callable[[dict[str, Any]], Any]) -> Callable[..., Any]:
    """``command`` with its parameter ``receives`` replaced, in place, by the ``options`` (name: (annotation,
    default)): typer sees the options; the command gets ``bundle(their values)`` as ``receives``."""
    signature = inspect.signature(command, eval_str=True)
    params: list[inspect.Parameter] = []
    for p in signature.parameters.values():
        params += ([inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=annotation, default=default)
                    for name, (annotation, default) in options.items()]
                   if p.name == receives else [p.replace(kind=inspect.Parameter.KEYWORD_ONLY)])
    if receives not in signature.parameters:
        raise TypeError(f"{command.__name__} has no parameter {receives!r} to receive its options")

    @functools.wraps(command)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        values = {name: kwargs.pop(name) for name in options}
        return command(*args, **{receives: bundle(values)}, **kwargs)

    # typer reads the parameters from __signature__ (inspect.signature's override)
    wrapper.__signature__ = signature.replace(parameters=params)  # type: ignore[attr-defined]  # not on Callable
    return wrapper


def with_qdrant_options(store: str = "faiss") -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the options of :data:`QDRANT_OPTIONS` (``store`` defaulting to ``store``), declared once
    here, in place of its ``qdrant`` parameter, which receives them as one dict."""
    options = {**QDRANT_OPTIONS, "store": (StoreOpt, store)}
    return lambda command: _replace_parameter(command, "qdrant", options, dict)


def with_model_options(*names: str, precision: str = "fp32", backend: str = "torch"
                       ) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Give a command the model options ``names`` of :data:`MODEL_OPTIONS` (declared once here; ``--precision``
    defaulting to ``precision``, ``--backend`` to ``backend``). With ``"model"`` in ``names`` they replace the
    command's ``model`` parameter,
    which receives one :class:`~koembed.models.ModelSpec` (:func:`model_spec`); without it, its ``settings``
    parameter, which receives :class:`~koembed.models.RunSettings` (:func:`run_settings`): how to run the models
    that the retriever specs name."""
    unknown = set(names) - set(MODEL_OPTIONS)
    if unknown:
        raise TypeError(f"no such model options: {sorted(unknown)}")
    defaults = {"precision": precision, "backend": backend}
    options = {name: (MODEL_OPTIONS[name][0], defaults[name]) if name in defaults else MODEL_OPTIONS[name]
               for name in names}
    if "model" in names:
        return lambda command: _replace_parameter(command, "model", options, lambda values: model_spec(**values))
    return lambda command: _replace_parameter(command, "settings", options, lambda values: run_settings(**values))


def exits_on_error(*also: type[Exception]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """A command that exits with status 2 and the message (:func:`fail`) on a
    :class:`~koembed.errors.KoembedError` (and on the exception types ``also``), instead of a traceback."""
    caught: tuple[type[Exception], ...] = (KoembedError, *also)

    def decorate(command: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(command)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return command(*args, **kwargs)
            except caught as exc:
                fail(exc)

        return wrapper

    return decorate


EngineOpt = Annotated[str, typer.Option(help="local (this process) or ray (a Ray Data actor pool; see --address).",
                                        metavar="local|ray")]
RayAddressOpt = Annotated[str | None, typer.Option(
    "--address", help="ray: a running cluster (auto, or ray://HOST:10001); default: start Ray on this machine.",
    metavar="ADDRESS")]
WorkersOpt = Annotated[int, typer.Option(min=1, help="ray: actors (model or Kiwi copies) in the pool.", metavar="N")]
AnalyzerOpt = Annotated[str | None, typer.Option(
    help="Korean analyzer of the BM25 half: mecab (MeCab-ko, the default: starts in milliseconds) or kiwi (Kiwi). "
    "An index records it at build; later commands use the index's and refuse another.", metavar="mecab|kiwi")]
UserDictOpt = Annotated[Path | None, typer.Option(
    "--user-dict", help="User dictionary: one word a line with an optional tag (NNP, the default, or NNG), '#' "
    "comments; words the analyzer keeps whole (product or company names). Copied into an index at build; later "
    "commands use the index's copy and refuse a different file.", metavar="FILE")]


def check_engine(engine: str) -> None:
    """``--engine`` is ``local`` or ``ray`` (encode, index build)."""
    if engine not in ("local", "ray"):
        raise typer.BadParameter(f"unknown engine {engine!r}: use local or ray", param_hint="--engine")


def user_dict_of(path: Path | None) -> UserDict | None:
    """The parsed ``--user-dict`` file (a malformed line is a DataError naming it: exit 2)."""
    return UserDict.read(path) if path is not None else None


DOCS_HELP = ("Passages: a .jsonl or .parquet file with id and text columns, or any retrieval set "
             "(AutoRAG/BEIR folder, KorQuAD .json, 'sample'), whose corpus is used.")


def run_settings(precision: str = "fp32", backend: str = "torch", device: str | None = None,
                 query_prompt: str | None = None, passage_prompt: str | None = None) -> RunSettings:
    """The one place the CLI's model options become :class:`~koembed.models.RunSettings` (how to run a model)."""
    return RunSettings(precision=precision, backend=backend, device=device, query_prompt=query_prompt,
                       passage_prompt=passage_prompt)


def model_spec(model: str, precision: str = "fp32", backend: str = "torch", device: str | None = None,
               query_prompt: str | None = None, passage_prompt: str | None = None) -> ModelSpec:
    """A named model and how to run it (:func:`run_settings`)."""
    return ModelSpec(model, run_settings(precision, backend, device, query_prompt, passage_prompt))


def describe_precision(run: ModelSpec | RunSettings) -> str:
    """``"in fp32"``, ``"in bf16 (auto)"`` or ``"with onnx-int8"``: what bench and eval print before they run (for
    settings without a model: as a transformer model runs)."""
    plan = resolve(run) if isinstance(run, ModelSpec) else decide(run)
    if plan.backend != "torch":
        return f"with {plan.label}"
    return f"in {plan.precision}" + (f" ({run.precision})" if run.precision != plan.precision else "")


def encode_options(batch_size: int = 32, quiet: bool = False, max_batch_tokens: int | None = None) -> EncodeOptions:
    return EncodeOptions(batch_size=batch_size, max_batch_tokens=max_batch_tokens, show_progress=not quiet)


def fail(exc: Exception) -> NoReturn:
    """Print a user error (a :class:`~koembed.errors.KoembedError`) and exit with status 2."""
    err_console.print(f"[bold red]error:[/] {exc}", highlight=False)
    raise typer.Exit(code=2)


def check_output(path: Path | None, option: str, *, folder: bool = False) -> None:
    """Exit 2, before any work, if ``path`` (a file, or a ``folder``) could not be written: a file that is an
    existing folder (or the reverse), a parent that is a file, or a parent folder that is not writable. Long
    runs otherwise fail at their very end, with some outputs already written."""
    if path is None:
        return
    if folder and path.exists() and not path.is_dir():
        fail(KoembedError(f"{option} {path}: is a file; give a folder"))
    if not folder and path.is_dir():
        fail(KoembedError(f"{option} {path}: is a folder; give a file name"))
    parent = (path if folder else path.parent).absolute()
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        fail(KoembedError(f"{option} {path}: {parent} is a file, not a folder"))
    if not os.access(parent, os.W_OK | os.X_OK):
        fail(KoembedError(f"{option} {path}: the folder {parent} is not writable"))
    try:  # os.access says yes to root, and of /proc, read-only mounts, full disks: make and remove a folder there
        os.rmdir(tempfile.mkdtemp(prefix=".koembed-probe-", dir=parent))
    except OSError as exc:
        fail(KoembedError(f"{option} {path}: cannot write in {parent} ({exc.strerror or exc})"))


def quiet_libraries() -> None:
    """Keep third-party logs and download bars out of koembed's output, without importing transformers (seconds,
    which a bm25 search never needs): the environment tells it and huggingface_hub when they are imported later;
    libraries already imported are told directly."""
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # hub and transformers "Loading weights" bars
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")  # transformers sets its logger's level from it
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # koembed shows its own progress
    elif "huggingface_hub" in sys.modules:
        from huggingface_hub.utils import disable_progress_bars

        disable_progress_bars()
    for name in ("sentence_transformers", "transformers", "bm25s"):
        logging.getLogger(name).setLevel(logging.ERROR)


def parse_top_k(text: str) -> list[int]:
    try:
        values = sorted({int(v) for v in text.split(",") if v.strip()})
    except ValueError:
        raise typer.BadParameter(f"expected comma-separated integers, got {text!r}") from None
    if not values or values[0] < 1:
        raise typer.BadParameter("top-k values must be positive integers")
    return values


def parse_rank_range(text: str) -> tuple[int, int]:
    try:
        low, high = (int(v) for v in text.split(":"))
    except ValueError:
        raise typer.BadParameter(f"expected a:b with integers, e.g. 10:100, got {text!r}",
                                 param_hint="--range") from None
    if not 1 <= low <= high:
        raise typer.BadParameter(f"need 1 <= a <= b, got {text!r}", param_hint="--range")
    return low, high
