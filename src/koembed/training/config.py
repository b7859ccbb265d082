"""The training recipe as a validated config: a typo or a wrong type is an error naming the key, before
any model is loaded. ``configs/bge-m3-ko.yaml`` is the BGE-m3-ko card's recipe in this form."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Union

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


class ModelConfig(Strict):
    base: str = Field(description="hub id (BAAI/bge-m3), local folder, or 'minilm'")
    type: Literal["bi_encoder", "cross_encoder"] = Field(
        "bi_encoder", description="bi_encoder: an embedding model; cross_encoder: a reranker (CrossEncoder)")
    pooling: Literal["cls", "mean"] = "cls"
    normalize: StrictBool = True
    max_seq_length: StrictInt = Field(512, gt=0)
    query_prompt: str | None = Field(None, description="text before every query; None: the model's own prompt")
    passage_prompt: str | None = Field(None, description="text before every passage; None: the model's own prompt")


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
    """The MS MARCO-ko layout: [{id, query, positive: [...]}, ...], one pair per positive."""

    type: Literal["query_positives"]


class HubSource(Strict):
    type: Literal["hf"]
    name: str
    split: str = "train"
    query_column: str = "query"
    positive_column: str = "positive"


Source = Annotated[Union[PairsSource, SquadSource, QueryPositivesSource, HubSource], Field(discriminator="type")]


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
        "cached_mnrl", description="bi_encoder: mnrl or cached_mnrl; cross_encoder: bce (default) or mnrl")
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


class Config(Strict):
    model: ModelConfig
    data: DataConfig
    loss: LossConfig = LossConfig()
    train: TrainConfig = TrainConfig()
    output_dir: str

    @field_validator("output_dir")
    @classmethod
    def _not_empty(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("must not be empty")
        return value

    @model_validator(mode="after")
    def _matryoshka_fits(self) -> Config:
        if any(d <= 0 for d in self.loss.matryoshka_dims):
            raise ValueError("loss.matryoshka_dims must be positive")
        return self

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
