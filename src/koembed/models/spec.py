"""What travels between koembed's layers instead of loose arguments: how to run a model (:class:`RunSettings`),
which model and how to run it (:class:`ModelSpec`), how to encode (:class:`EncodeOptions`), and what a loaded
model offers (:class:`Encoder`).

Tevatron's lesson: one option object per concern, declared once, so a new option (a prompt, a backend) is one
field here and one flag in the CLI rather than a parameter threaded through twenty signatures.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, Literal, Protocol, runtime_checkable

if TYPE_CHECKING:
    import numpy as np

Pooling = Literal["cls", "mean"]
PRECISIONS = ("fp32", "bf16", "fp16", "auto")
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-int8", "auto")
ONNX_BACKENDS = ("onnx", "onnx-int8")  # what an export folder is written for
OPENVINO_BACKENDS = ("openvino", "openvino-int8")  # run the ``onnx`` export with OpenVINO
GRAPH_BACKENDS = (*ONNX_BACKENDS, *OPENVINO_BACKENDS)


@dataclass(frozen=True)
class RunSettings:
    """How to run a model, whichever model it is: what a command's options say before (or without) naming one.

    ``precision``: weights in fp32, bf16, fp16 (CUDA only) or ``auto``; ``backend``: torch, onnx, onnx-int8,
    openvino, openvino-int8 (the graph backends run on the CPU) or ``auto`` (both ``auto``, the default: the
    fastest setting measured for this device and CPU, :func:`koembed.models.precision.auto_setting`; decided by
    :func:`koembed.models.precision.resolve`). ``device``: a torch device, None for sentence-transformers'
    choice. ``max_seq_length``: truncation length, None for the model's own. ``pooling``: for a plain Hugging Face
    encoder folder, how it is wrapped (CLS, as BGE-m3). ``query_prompt`` / ``passage_prompt``: text put before
    every query / passage (e5's ``"query: "``); None uses the prompts the model's
    ``config_sentence_transformers.json`` defines (:mod:`koembed.models.prompts`), ``""`` means none.
    """

    precision: str = "auto"
    backend: str = "auto"
    device: str | None = None
    max_seq_length: int | None = None
    pooling: Pooling = "cls"
    query_prompt: str | None = None
    passage_prompt: str | None = None

    def spec(self, name: str) -> ModelSpec:
        """These settings for the model ``name`` (a retriever spec names the model, the CLI the rest)."""
        return ModelSpec(name, self)


# What bench and eval run by default (as their CLI does): exact fp32 torch, so metrics compare across machines.
# Everything else defaults to RunSettings(): backend and precision ``auto``, as encode / index build / serve do.
EXACT = RunSettings(precision="fp32", backend="torch")


@dataclass(frozen=True, init=False)
class ModelSpec:
    """A model (``name``: hub id such as ``BAAI/bge-m3``, local folder, or alias such as ``minilm``) and how to run
    it (``settings``, a :class:`RunSettings`): everything :func:`koembed.models.load_model` needs.

    ``ModelSpec(name, precision="bf16", ...)`` takes :class:`RunSettings` fields as keywords (over ``settings``,
    if given as well), and reads them back as attributes: ``spec.precision`` is ``spec.settings.precision``.
    """

    name: str
    settings: RunSettings

    def __init__(self, name: str, settings: RunSettings | None = None, **fields: Any) -> None:
        settings = settings if settings is not None else RunSettings()
        object.__setattr__(self, "name", name)
        object.__setattr__(self, "settings", replace(settings, **fields) if fields else settings)

    @classmethod
    def of(cls, model: ModelSpec | str, **settings: Any) -> ModelSpec:
        """``model`` as a spec: a name gets default settings; ``settings`` (field=value) override fields."""
        spec = cls(model) if isinstance(model, str) else model
        return cls(spec.name, spec.settings, **settings) if settings else spec

    @property
    def precision(self) -> str:
        return self.settings.precision

    @property
    def backend(self) -> str:
        return self.settings.backend

    @property
    def device(self) -> str | None:
        return self.settings.device

    @property
    def max_seq_length(self) -> int | None:
        return self.settings.max_seq_length

    @property
    def pooling(self) -> Pooling:
        return self.settings.pooling

    @property
    def query_prompt(self) -> str | None:
        return self.settings.query_prompt

    @property
    def passage_prompt(self) -> str | None:
        return self.settings.passage_prompt


@dataclass(frozen=True)
class EncodeOptions:
    """How :func:`koembed.models.encode` batches: ``batch_size`` texts per forward pass, or a token budget
    ``max_batch_tokens`` per batch instead; ``chunk_size`` texts per chunk copied into the output (bounds
    memory); ``show_progress`` for a progress bar; ``prompt`` is put before every text (the query or passage
    prompt of :func:`koembed.models.prompts.role_options`; None: none)."""

    batch_size: int = 32
    max_batch_tokens: int | None = None
    chunk_size: int = 2048
    show_progress: bool = True
    prompt: str | None = None

    def quiet(self) -> EncodeOptions:
        return replace(self, show_progress=False)


class ProgressFromOptions:
    """A ``show_progress`` flag kept in ``self.options`` (an :class:`EncodeOptions`): what the retrievers that
    encode text expose for the Retriever protocol's flag."""

    options: EncodeOptions

    @property
    def show_progress(self) -> bool:
        return self.options.show_progress

    @show_progress.setter
    def show_progress(self, show: bool) -> None:
        self.options = replace(self.options, show_progress=show)


@runtime_checkable
class Encoder(Protocol):
    """What koembed uses of a loaded model: a ``SentenceTransformer`` or a :class:`koembed.models.onnx.GraphEncoder`.

    ``encode`` as sentence-transformers defines it; ``tokenizer`` a Hugging Face tokenizer;
    ``max_seq_length`` the truncation length (settable).
    """

    tokenizer: Any
    max_seq_length: int | None

    def encode(self, sentences: Sequence[str] | str, batch_size: int = 32, show_progress_bar: bool = False,
               convert_to_numpy: bool = True, **kwargs: Any) -> np.ndarray: ...

    def get_embedding_dimension(self) -> int | None: ...

    def modules(self) -> Iterable[Any]: ...
