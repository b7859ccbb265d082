"""The training recipe as a validated config: a typo or a wrong type is an error naming the key, before
any model is loaded. ``configs/bge-m3-ko.yaml`` is the BGE-m3-ko card's recipe in this form."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    ValidationError,
    field_validator,
    model_validator,
)

from koembed.errors import ConfigError

FINAL_DIR = "final"  # output_dir/final: the trained model with its card


class Strict(BaseModel):
    """Unknown keys, non-finite numbers (``.inf``, ``.nan``) and booleans or fractions where an integer belongs
    (``batch_size: true``) are errors. Integer and boolean fields are strict; float fields take any finite number
    (PyYAML reads ``1e-4`` as text, which pydantic turns into the number)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)


class StaticConfig(Strict):
    """A new static model (``model.type: static`` without ``base``): its tokenizer and dimension."""

    tokenizer: str = Field("learn", description="'learn' (from the training texts) or a folder / model whose "
                           "tokenizer.json is used (a teacher's)")
    tokenizer_model: Literal["wordpiece", "unigram"] = "wordpiece"
    vocab_size: StrictInt = Field(30000, ge=100, description="learned tokenizers: most word pieces")
    lowercase: StrictBool = True
    dim: StrictInt = Field(512, gt=0)
    spacing: Literal["none", "kiwi", "kiwi-keep", "kiwi-morph"] = Field(
        "none", description="what the model does to a text before its tokenizer, in training and encoding alike "
        "(saved with the model): none; kiwi (Kiwi's spacing: as written and without spaces read the same); "
        "kiwi-keep (the typed spaces kept, Kiwi's missing ones added); kiwi-morph (Kiwi's morphemes, one word each). koembed.models.spacing; measured in docs/BENCHMARKS.md")


class ModelConfig(Strict):
    type: Literal["transformer", "static", "cross_encoder"] = Field(
        "transformer", description="transformer: an embedding model on an encoder (base); static: a StaticEmbedding "
        "(mean of token vectors), new (static section) or continued from base (a static model folder, e.g. koembed "
        "distill's); cross_encoder: a reranker (CrossEncoder) on an encoder (base)")
    base: str | None = Field(None, description="hub id (BAAI/bge-m3), local folder, or 'minilm'; for a static "
                             "model, a static model folder to fine-tune")
    pooling: Literal["cls", "mean"] = "cls"
    normalize: StrictBool = True
    max_seq_length: StrictInt = Field(512, gt=0)
    query_prompt: str | None = Field(None, description="text before every query; None: the model's own prompt")
    passage_prompt: str | None = Field(None, description="text before every passage; None: the model's own prompt")
    static: StaticConfig | None = None
    save_dtype: Literal["float32", "float16"] = Field(
        "float32", description="static models: the dtype of the saved vectors (float16 halves the file; loaded "
        "back as float32)")

    @model_validator(mode="after")
    def _base_or_static(self) -> ModelConfig:
        if self.type != "static":
            if not self.base:
                raise ValueError(f"model.base is required for a {self.type} model")
            if self.static is not None or self.save_dtype != "float32":
                raise ValueError("model.static and model.save_dtype apply only to model.type: static")
        elif self.base and self.static is not None:
            raise ValueError("a static model is either new (model.static) or continued from model.base, not both")
        elif not self.base and self.static is None:
            self.static = StaticConfig()
        return self


class FileSource(Strict):
    path: str = Field(description="a local file")


class PairsSource(FileSource):
    """A pairs/triplets file: .jsonl, .parquet or .csv with query, positive[, negatives]."""

    type: Literal["pairs"]


class SquadSource(FileSource):
    """SQuAD/KorQuAD JSON: question -> paragraph pairs from the train-side articles of the title split."""

    type: Literal["squad"]
    split: Literal["train", "all"] = "train"
    train_articles: StrictInt = Field(100, gt=0)


class QueryPositivesSource(FileSource):
    """The MS MARCO-ko layout: [{id, query, positive: [...]}, ...], one pair per positive; ``split`` train or
    test keeps one half of the queries (by SHA-256 of the id), as ``--split`` does for evaluation."""

    type: Literal["query_positives"]
    split: Literal["all", "train", "test"] = "all"


class StsSource(FileSource):
    """Similar sentence pairs: a KorSTS TSV or KLUE STS JSON, pairs scored at least ``min_score`` (0-5)."""

    type: Literal["sts"]
    min_score: float = Field(3.5, ge=0, le=5)


class NliSource(FileSource):
    """Entailment pairs (premise -> hypothesis): a KorNLI TSV or KLUE NLI JSON."""

    type: Literal["nli"]


class HubSource(Strict):
    type: Literal["hf"]
    name: str
    split: str = "train"
    query_column: str = "query"
    positive_column: str = "positive"


Source = Annotated[PairsSource | SquadSource | QueryPositivesSource | StsSource | NliSource | HubSource,
                   Field(discriminator="type")]


class EvalConfig(Strict):
    path: str = Field(description="retrieval set: AutoRAG, BEIR, KorQuAD .json or query-positives .json")
    split: str | None = None
    steps: StrictInt = Field(100, gt=0, description="evaluate every this many steps")


class DataConfig(Strict):
    train: list[Source] = Field(min_length=1)
    max_examples: StrictInt | None = Field(None, gt=0, description="keep the first N examples after shuffling")
    eval: EvalConfig | None = None
    allow_overlap: StrictBool = Field(False, description="warn instead of refusing when train and eval texts overlap")


class LossConfig(Strict):
    name: Literal["mnrl", "cached_mnrl", "bce"] = Field(
        "cached_mnrl", description="transformer / static: mnrl or cached_mnrl; cross_encoder: bce (default) or mnrl")
    mini_batch_size: StrictInt = Field(32, gt=0, description="cached_mnrl: examples per forward/backward chunk")
    scale: float = Field(20.0, gt=0)
    matryoshka_dims: list[StrictInt] = Field(default_factory=list)
    gather_across_devices: StrictBool = Field(True, description="distributed: use every process's batch as negatives")


class TrainConfig(Strict):
    batch_size: StrictInt = Field(32, gt=0)
    no_duplicates: StrictBool = True
    learning_rate: float = Field(3e-5, gt=0)
    scheduler: Literal["linear", "cosine", "constant", "constant_with_warmup"] = "linear"
    warmup_ratio: float = Field(0.0, ge=0, lt=1)
    epochs: float = Field(1.0, gt=0)
    max_steps: StrictInt | None = Field(None, gt=0, description="overrides epochs")
    precision: Literal["fp32", "fp16", "bf16"] = "fp32"
    seed: StrictInt = 42
    gradient_checkpointing: StrictBool = False
    save_steps: StrictInt = Field(100, gt=0)
    keep_checkpoints: StrictInt = Field(3, gt=0)
    logging_steps: StrictInt = Field(10, gt=0)


STATIC_LOSS_DEFAULTS = {"name": "mnrl"}
STATIC_TRAIN_DEFAULTS = {"batch_size": 512, "learning_rate": 0.2, "epochs": 10.0, "warmup_ratio": 0.1}


class Config(Strict):
    model: ModelConfig
    data: DataConfig
    loss: LossConfig = Field(default_factory=LossConfig)
    train: TrainConfig = Field(default_factory=TrainConfig)
    output_dir: str

    @field_validator("output_dir")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _matryoshka_fits(self) -> Config:
        if self.model.type == "static":
            self._static_defaults()
        if any(d <= 0 for d in self.loss.matryoshka_dims):
            raise ValueError("loss.matryoshka_dims must be positive")
        static = self.model.static
        if static is not None and any(d > static.dim for d in self.loss.matryoshka_dims):
            raise ValueError(f"loss.matryoshka_dims must not exceed model.static.dim ({static.dim})")
        return self

    def _static_defaults(self) -> None:
        """A static model's CPU defaults, for every key the config leaves out: plain MNRL (a lookup table has no
        activations to cache), batch 512, learning rate 0.2, 10 epochs, Matryoshka dims halving down to 32."""
        for section, defaults in ((self.loss, STATIC_LOSS_DEFAULTS), (self.train, STATIC_TRAIN_DEFAULTS)):
            for key, value in defaults.items():
                if key not in section.model_fields_set:
                    setattr(section, key, value)
        if "matryoshka_dims" not in self.loss.model_fields_set and self.model.static is not None:
            dims, d = [], self.model.static.dim
            while d >= 32:
                dims.append(d)
                d //= 2
            self.loss.matryoshka_dims = dims

    @model_validator(mode="after")
    def _loss_fits_model_type(self) -> Config:
        if self.model.type == "cross_encoder":
            if "name" not in self.loss.model_fields_set:
                self.loss.name = "bce"  # the default bi-encoder loss does not apply to a cross-encoder
            if self.loss.name not in ("bce", "mnrl") or self.loss.matryoshka_dims:
                raise ValueError("a cross_encoder trains with loss.name bce or mnrl, without matryoshka_dims")
        elif self.loss.name == "bce":
            raise ValueError("loss.name bce trains a cross-encoder: set model.type: cross_encoder")
        return self


def _set_dotted(tree: dict[str, Any], key: str, value: Any) -> None:
    """Set ``a.b.0.c`` in the parsed YAML tree: a number indexes an existing list item, a name a mapping key."""
    node: Any = tree
    parts = key.split(".")
    for depth, part in enumerate(parts):
        where = ".".join(parts[:depth]) or "the config"
        last = depth == len(parts) - 1
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise ConfigError(f"--set {key}: {where} is a list of {len(node)} item(s); use an index from 0 to "
                                  f"{len(node) - 1}, not {part!r}")
            if last:
                node[int(part)] = value
                return
            node = node[int(part)]
        elif isinstance(node, dict):
            if not part:
                raise ConfigError(f"--set {key}: empty key part")
            if last:
                node[part] = value
                return
            node = node.setdefault(part, {})
        else:
            raise ConfigError(f"--set {key}: '{parts[depth - 1]}' is not a section")


def _parse_yaml(text: str, where: str) -> Any:
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{where}: not valid YAML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{where}: YAML nested too deeply to read") from None


def load_config(path: str | Path, overrides: list[str] | None = None) -> Config:
    """Read a YAML config, apply ``key.sub=value`` overrides (values parsed as YAML), validate.

    Relative data and output paths are taken relative to the current directory, as on the command line.
    Every problem (missing or unreadable file, bad YAML, bad override, invalid value) is a ConfigError.
    """
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such config file") from None
    except IsADirectoryError:
        raise ConfigError(f"{path}: is a folder; give the YAML config file") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (byte {exc.start}); save the config as UTF-8") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot be read ({exc.strerror})") from None
    tree = _parse_yaml(text, str(path)) or {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{path}: expected a mapping of sections (model, data, loss, train, output_dir)")
    for item in overrides or []:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.batch_size=64")
        _set_dotted(tree, key.strip(), _parse_yaml(raw, f"--set {item}"))
    try:
        return Config.model_validate(tree)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            key = ".".join(str(p) for p in err["loc"])
            problems.append(f"  {key or '(top level)'}: {err['msg']}")
        raise ConfigError(f"{path}: invalid config\n" + "\n".join(problems)) from None
