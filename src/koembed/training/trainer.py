"""Config -> sentence-transformers trainer: (cached) MNRL with in-batch negatives, no-duplicates batches,
evaluation with the card's IR suite, resumable checkpoints, torchrun-ready.

Checkpoints are Hugging Face Trainer checkpoints (model, optimizer, scheduler, RNG and sampler position)
plus koembed's completion marker (:mod:`koembed.training.checkpoints`): only marked checkpoints are resumed
from, old ones are removed only after a new one is marked, and a diverged run (non-finite weights) is never
marked nor saved as ``final/``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.data import (
    Pair,
    load_retrieval_set,
    nli_pairs,
    pairs_from_retrieval_set,
    read_pairs,
    read_query_positives,
    read_squad,
    sts_pairs,
)
from koembed.errors import ConfigError, DataError, KoembedError, TrainingDivergedError
from koembed.files import staged_folder, write_json
from koembed.models import EXACT, ModelSpec, build_model, load_model, resolve_model
from koembed.models.checks import non_finite_tensors
from koembed.models.prompts import Prompts, apply_prompt_overrides, model_prompts
from koembed.models.static import learn_tokenizer, load_tokenizer, save_model, static_model, static_module
from koembed.training.card import write_model_card
from koembed.training.checkpoints import (
    checkpoint_keeper,
    complete_checkpoints,
    last_complete_checkpoint,
    remove_incomplete_checkpoints,
)
from koembed.training.config import (
    FINAL_DIR,
    Config,
    HubSource,
    NliSource,
    PairsSource,
    QueryPositivesSource,
    SquadSource,
    StsSource,
)
from koembed.training.cross_encoder import build_cross_encoder, train_cross_encoder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import TrainerCallback

log = logging.getLogger(__name__)

# Architecture sizes of models we may plan for without downloading them (from their config.json).
KNOWN_ARCHITECTURES = {
    "BAAI/bge-m3": {"num_hidden_layers": 24, "hidden_size": 1024, "num_attention_heads": 16, "params": 568e6},
}


@dataclass
class TrainingData:
    pairs: list[Pair]
    sources: list[dict[str, Any]]
    dropped_duplicates: int
    overlap: dict[str, int]


def _read_source(source: Any) -> list[Pair]:
    if isinstance(source, PairsSource):
        return read_pairs(source.path)
    if isinstance(source, SquadSource):
        return pairs_from_retrieval_set(read_squad(source.path, split=source.split, n_train=source.train_articles))
    if isinstance(source, QueryPositivesSource):
        return pairs_from_retrieval_set(read_query_positives(source.path, split=source.split))
    if isinstance(source, StsSource):
        return sts_pairs(source.path, source.min_score)
    if isinstance(source, NliSource):
        return nli_pairs(source.path)
    if isinstance(source, HubSource):
        from datasets import load_dataset

        try:
            ds = load_dataset(source.name, split=source.split)
        except Exception as exc:
            raise KoembedError(f"could not load the Hugging Face dataset {source.name!r} ({exc}); "
                               "download it where the hub is reachable and use a local pairs file") from exc
        missing = [c for c in (source.query_column, source.positive_column) if c not in ds.column_names]
        if missing:
            raise DataError(source.name, f"missing column(s) {missing}", field=missing[0])
        return [Pair(str(q), str(p)) for q, p in zip(ds[source.query_column], ds[source.positive_column])
                if str(q).strip() and str(p).strip()]
    raise TypeError(source)


def load_training_data(cfg: Config, count_only_local: bool = False) -> TrainingData:
    """Read every source, drop exact duplicate pairs, shuffle with the seed, cap at ``max_examples``, and
    check overlap with the evaluation set (refused unless ``data.allow_overlap``)."""
    pairs: list[Pair] = []
    sources: list[dict[str, Any]] = []
    for source in cfg.data.train:
        if count_only_local and isinstance(source, HubSource):
            sources.append({"type": source.type, "name": source.name, "pairs": None})
            continue
        read = _read_source(source)
        sources.append({**source.model_dump(), "pairs": len(read)})
        pairs.extend(read)
    seen: set[tuple[str, str]] = set()
    unique = []
    for pair in pairs:
        key = (pair.query.strip(), pair.positive.strip())
        if key not in seen:
            seen.add(key)
            unique.append(pair)
    dropped = len(pairs) - len(unique)
    random.Random(cfg.train.seed).shuffle(unique)
    if cfg.data.max_examples is not None:
        unique = unique[: cfg.data.max_examples]
    overlap = {"queries": 0, "passages": 0}
    if cfg.data.eval is not None:
        rs = load_retrieval_set(cfg.data.eval.path, split=cfg.data.eval.split)
        eval_queries = {q.strip() for q in rs.queries.values()}
        eval_passages = {p.strip() for p in rs.corpus.values()}
        overlap["queries"] = len({p.query.strip() for p in unique} & eval_queries)
        overlap["passages"] = len({p.positive.strip() for p in unique} & eval_passages)
        if any(overlap.values()):
            message = (f"{overlap['queries']} training queries and {overlap['passages']} training passages also "
                       f"appear in the evaluation set {cfg.data.eval.path}")
            if not cfg.data.allow_overlap:
                raise DataError(cfg.data.eval.path, message + "; remove them or set data.allow_overlap: true")
            log.warning(message)
    return TrainingData(unique, sources, dropped, overlap)


def length_stats(texts: list[str]) -> dict[str, float]:
    if not texts:
        return {"mean": 0, "p50": 0, "p95": 0, "max": 0}
    lengths = sorted(len(t) for t in texts)
    return {"mean": round(sum(lengths) / len(lengths), 1), "p50": lengths[len(lengths) // 2],
            "p95": lengths[min(len(lengths) - 1, int(len(lengths) * 0.95))], "max": lengths[-1]}


def _architecture(base: str) -> dict[str, Any] | None:
    if base in KNOWN_ARCHITECTURES:
        return KNOWN_ARCHITECTURES[base]
    config = Path(resolve_model(base)) / "config.json"
    if config.is_file():
        data = json.loads(config.read_text(encoding="utf-8"))
        keys = ("num_hidden_layers", "hidden_size", "num_attention_heads")
        if all(k in data for k in keys):
            return {k: data[k] for k in keys}
    return None


def plan(cfg: Config, n_examples: int | None, world_size: int = 1) -> dict[str, Any]:
    """What a run will do, computed without loading a model: steps, warmup, mini-batches, memory estimate.

    Activation memory per mini-batch uses Korthikanti et al. (2022), per layer s*b*h*(34 + 5*a*s/h) bytes
    for 16-bit activations (s sequence length, b mini-batch, h hidden size, a heads), times the layers;
    fp32 doubles it. An upper bound: real batches are padded only to their longest text.
    """
    global_batch = cfg.train.batch_size * world_size
    out: dict[str, Any] = {"examples": n_examples, "global_batch_size": global_batch, "world_size": world_size}
    if n_examples is not None:
        steps_per_epoch = max(1, n_examples // global_batch) if world_size > 1 else math.ceil(n_examples / global_batch)
        total = cfg.train.max_steps or math.ceil(steps_per_epoch * cfg.train.epochs)
        out.update({"steps_per_epoch": steps_per_epoch, "total_steps": total,
                    "warmup_steps": math.ceil(total * cfg.train.warmup_ratio)})
    elif cfg.train.max_steps:
        out.update({"total_steps": cfg.train.max_steps,
                    "warmup_steps": math.ceil(cfg.train.max_steps * cfg.train.warmup_ratio)})
    mini = cfg.loss.mini_batch_size if cfg.loss.name == "cached_mnrl" else cfg.train.batch_size
    out["mini_batch_size"] = mini
    out["mini_batches_per_column_per_step"] = math.ceil(cfg.train.batch_size / mini)
    arch = _architecture(cfg.model.base) if cfg.model.type == "transformer" and cfg.model.base else None
    if arch:
        s, b, h, a, layers = (cfg.model.max_seq_length, mini, arch["hidden_size"], arch["num_attention_heads"],
                              arch["num_hidden_layers"])
        per_layer = s * b * h * (34 + 5 * a * s / h)
        factor = 1 if cfg.train.precision in ("fp16", "bf16") else 2
        out["activation_memory_per_mini_batch_gib"] = round(per_layer * layers * factor / 2**30, 2)
        out["architecture"] = {k: arch[k] for k in ("num_hidden_layers", "hidden_size", "num_attention_heads")}
    return out


def embedding_dimension(base: str) -> int | None:
    """The model's output dimension read from its files, without loading it: the last Dense layer's
    ``out_features`` if it has one, else the encoder's ``hidden_size``; None when unknown (a hub model that is
    not cached)."""
    arch = _architecture(base)
    dimension = arch.get("hidden_size") if arch else None
    folder = Path(resolve_model(base))
    modules = folder / "modules.json"
    if base not in KNOWN_ARCHITECTURES and modules.is_file():
        for module in json.loads(modules.read_text(encoding="utf-8")):
            dense = folder / str(module.get("path", "")) / "config.json"
            if str(module.get("type", "")).endswith("Dense") and dense.is_file():
                dimension = json.loads(dense.read_text(encoding="utf-8")).get("out_features", dimension)
    return dimension


def check_matryoshka(cfg: Config, dimension: int | None) -> None:
    """Matryoshka dimensions larger than the model's embedding are a ConfigError naming the key."""
    too_large = [d for d in cfg.loss.matryoshka_dims if dimension is not None and d > dimension]
    if too_large:
        raise ConfigError(f"loss.matryoshka_dims: {', '.join(map(str, too_large))} larger than the model's "
                          f"{dimension} dimensions ({cfg.model.base})")


def _build_model(cfg: Config, pairs: Sequence[Pair] = ()) -> SentenceTransformer:
    if cfg.model.type == "static":
        model = _build_static(cfg, pairs)
    else:
        assert cfg.model.base is not None  # the config's validator requires it
        local = Path(resolve_model(cfg.model.base))
        if local.is_dir() and not (local / "modules.json").exists():
            model = build_model(str(local), pooling=cfg.model.pooling, normalize=cfg.model.normalize)
        else:
            model = load_model(ModelSpec(cfg.model.base, EXACT, pooling=cfg.model.pooling))
        model.max_seq_length = cfg.model.max_seq_length
    apply_prompt_overrides(model, cfg.model.query_prompt, cfg.model.passage_prompt)
    return model


def _build_static(cfg: Config, pairs: Sequence[Pair]) -> SentenceTransformer:
    """A static model: continued from ``model.base``, or new over a tokenizer learned from the training texts
    (queries, positives and negatives of ``pairs``) or taken from a folder, with seeded random vectors."""
    if cfg.model.base:
        model = load_model(ModelSpec(cfg.model.base, EXACT, device="cpu"))  # training needs the torch weights
        if static_module(model) is None:
            raise KoembedError(f"model.base {cfg.model.base!r} is not a static model (no StaticEmbedding); use "
                               "model.type: transformer, or a folder made by koembed distill or a static training")
        return model
    static = cfg.model.static
    assert static is not None  # the config's validator fills it in
    if static.tokenizer == "learn":
        texts: Iterable[str] = (t for p in pairs for t in (p.query, p.positive, *p.negatives))
        if static.spacing != "none":  # the pieces are learned from the texts as the model will read them
            from koembed.models.spacing import cached_respace

            texts = cached_respace(list(texts), static.spacing)  # kept for the training, which reads them again
        try:
            tokenizer = learn_tokenizer(texts, static.tokenizer_model, static.vocab_size, static.lowercase)
        except ValueError as exc:
            raise ConfigError(f"model.static.vocab_size: {exc}") from None
    else:
        tokenizer = load_tokenizer(resolve_model(static.tokenizer))
    return static_model(tokenizer, static.dim, seed=cfg.train.seed, spacing=static.spacing)


def column_prompts(prompts: Prompts, columns: Sequence[str]) -> dict[str, str] | None:
    """The trainer's per-column prompts: the query prompt on ``anchor``, the passage prompt on the others."""
    if not prompts.query and not prompts.passage:
        return None
    return {c: prompts.query if c == "anchor" else prompts.passage for c in columns}


def _build_loss(cfg: Config, model, world_size: int = 1):
    from sentence_transformers.sentence_transformer import losses

    gather = cfg.loss.gather_across_devices and world_size > 1
    if cfg.loss.name == "cached_mnrl":
        loss = losses.CachedMultipleNegativesRankingLoss(model, scale=cfg.loss.scale,
                                                         mini_batch_size=cfg.loss.mini_batch_size,
                                                         gather_across_devices=gather)
    else:
        loss = losses.MultipleNegativesRankingLoss(model, scale=cfg.loss.scale,
                                                   gather_across_devices=gather)
    if cfg.loss.matryoshka_dims:
        loss = losses.MatryoshkaLoss(model, loss, matryoshka_dims=cfg.loss.matryoshka_dims)
    return loss


def _to_dataset(pairs: list[Pair]):
    from datasets import Dataset

    n_neg = min((len(p.negatives) for p in pairs), default=0)
    columns: dict[str, list[str]] = {"anchor": [p.query for p in pairs], "positive": [p.positive for p in pairs]}
    for i in range(n_neg):
        columns[f"negative_{i + 1}"] = [p.negatives[i] for p in pairs]
    return Dataset.from_dict(columns)


def data_report(data: TrainingData) -> str:
    """One paragraph a user reads before a long run: counts, duplicates, overlap, text lengths."""
    sources = ", ".join(f"{s['type']} {s.get('path') or s.get('name')}: {s['pairs']}" for s in data.sources)
    q, p = length_stats([x.query for x in data.pairs]), length_stats([x.positive for x in data.pairs])
    return (f"training pairs: {len(data.pairs)} ({sources}; {data.dropped_duplicates} duplicates dropped); "
            f"overlap with eval: {data.overlap['queries']} queries, {data.overlap['passages']} passages; "
            f"query chars mean {q['mean']} p95 {q['p95']}; passage chars mean {p['mean']} p95 {p['p95']} "
            f"max {p['max']}")


def dry_run(cfg: Config) -> tuple[dict[str, Any], str]:
    """What ``koembed train --dry-run`` prints: the validated config with the plan, and the data report.
    Reads local sources only (a hub dataset is listed without its size); loads no model."""
    local_only = all(not isinstance(s, HubSource) for s in cfg.data.train)
    static = cfg.model.static
    if static is not None:
        dimension = static.dim
    else:
        assert cfg.model.base is not None  # the config's validator sets model.static when there is no base
        dimension = embedding_dimension(cfg.model.base)
    check_matryoshka(cfg, dimension)
    data = load_training_data(cfg, count_only_local=True)
    return {"config": cfg.model_dump(), "plan": plan(cfg, len(data.pairs) if local_only else None)}, data_report(data)


def train(cfg: Config, resume: bool = False, show_progress: bool = True,
          report: Callable[[str], None] | None = None, callbacks: Sequence[TrainerCallback] = ()) -> dict[str, Any]:
    """Run the recipe. Returns the final evaluation metrics and paths. Output layout:
    ``output_dir/checkpoint-N`` (resumable), ``output_dir/final`` (the trained model with its card).
    ``report`` receives the data summary (counts, duplicates, overlap, lengths) before training starts.
    ``callbacks`` are Hugging Face ``TrainerCallback``s (progress reporting, early stopping, fault injection in
    tests); their ``on_save`` runs after the Trainer wrote a checkpoint and before koembed marks it complete.
    Weights that stop being finite raise :class:`~koembed.errors.TrainingDivergedError` (no ``final/``; the
    last complete checkpoint stays)."""
    import torch
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.evaluation import InformationRetrievalEvaluator

    output_dir = Path(cfg.output_dir)
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    checkpoint = None
    if resume:
        if int(os.environ.get("RANK", "0")) == 0:
            for path in remove_incomplete_checkpoints(output_dir):
                log.warning("removed incomplete checkpoint %s", path)
        checkpoint = last_complete_checkpoint(output_dir)
        if checkpoint is None:
            log.warning("no complete checkpoint in %s: starting from the beginning", output_dir)
    elif output_dir.exists() and complete_checkpoints(output_dir):
        raise KoembedError(f"{output_dir} already holds checkpoints: pass --resume to continue, or choose "
                           "another output_dir")

    data = load_training_data(cfg)
    if not data.pairs:
        raise DataError(cfg.data.train[0].model_dump().get("path", "data.train"), "no training examples")
    (report or log.info)(data_report(data))
    torch.manual_seed(cfg.train.seed)
    if cfg.model.type == "cross_encoder":
        model = build_cross_encoder(cfg)
        checkpoints = checkpoint_keeper(output_dir, model, cfg.train.keep_checkpoints)
        record = {"examples": len(data.pairs), "dropped_duplicates": data.dropped_duplicates,
                  "sources": data.sources, "overlap_with_eval": data.overlap}
        return train_cross_encoder(cfg, model, data.pairs, training_arguments(cfg, world_size, show_progress),
                                   checkpoint, [*callbacks, checkpoints], record,
                                   check=lambda step: _raise_if_diverged(checkpoints, model, output_dir, step))
    model = _build_model(cfg, data.pairs)
    check_matryoshka(cfg, model.get_embedding_dimension())
    prompts = model_prompts(model)
    train_dataset = _to_dataset(data.pairs)
    loss = _build_loss(cfg, model, world_size)
    evaluator = None
    eval_name = "eval"
    if cfg.data.eval is not None:
        rs = load_retrieval_set(cfg.data.eval.path, split=cfg.data.eval.split)
        from sentence_transformers.util import cos_sim

        evaluator = InformationRetrievalEvaluator(
            rs.queries, rs.corpus, {q: rs.relevant_ids(q) for q in rs.relevant}, name=eval_name,
            score_functions={"cosine": cos_sim}, show_progress_bar=False, write_csv=False,
            query_prompt=prompts.query or None, corpus_prompt=prompts.passage or None)
    args = SentenceTransformerTrainingArguments(
        **training_arguments(cfg, world_size, show_progress),
        batch_sampler=BatchSamplers.NO_DUPLICATES if cfg.train.no_duplicates else BatchSamplers.BATCH_SAMPLER,
        eval_strategy="steps" if evaluator is not None else "no",
        eval_steps=cfg.data.eval.steps if cfg.data.eval else None,
        prompts=column_prompts(prompts, train_dataset.column_names),
    )
    checkpoints = checkpoint_keeper(output_dir, model, cfg.train.keep_checkpoints)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=train_dataset, loss=loss,
                                         evaluator=evaluator, callbacks=[*callbacks, checkpoints])
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    _raise_if_diverged(checkpoints, model, output_dir, trainer.state.global_step)

    metrics: dict[str, float] = {}
    if evaluator is not None:
        raw = evaluator(model)
        metrics = {k[len(eval_name) + 1:]: float(v) for k, v in raw.items()}
    summary = {
        "examples": len(data.pairs), "dropped_duplicates": data.dropped_duplicates, "sources": data.sources,
        "overlap_with_eval": data.overlap, "query_chars": length_stats([p.query for p in data.pairs]),
        "passage_chars": length_stats([p.positive for p in data.pairs]), "plan": plan(cfg, len(data.pairs), world_size),
        "eval": {"path": cfg.data.eval.path, "split": cfg.data.eval.split} if cfg.data.eval else None,
        "metrics": metrics, "global_step": trainer.state.global_step, "prompts": prompts.to_json(),
    }
    if trainer.is_world_process_zero():
        final = output_dir / FINAL_DIR
        with staged_folder(final, replace=True) as staging:
            save_model(model, staging, cfg.model.save_dtype)
            write_json(staging / "koembed_training.json", {"config": cfg.model_dump(), **summary})
            write_model_card(staging, cfg=cfg.model_dump(), training=summary, bench=None)
        summary["final_model"] = str(final)
    return summary


def _raise_if_diverged(checkpoints: Any, model: Any, output_dir: Path, step: int) -> None:
    """:class:`TrainingDivergedError` when weights stopped being finite (nothing is saved as ``final``)."""
    bad = checkpoints.diverged or non_finite_tensors(model)
    if bad:
        last = last_complete_checkpoint(output_dir)
        raise TrainingDivergedError(
            f"training diverged at step {step}: {len(bad)} weight tensors hold NaN or "
            f"infinity (e.g. {bad[0]}); nothing was saved as {FINAL_DIR}. Lower train.learning_rate or use fp32; "
            + (f"the last good checkpoint is {last}" if last else "no checkpoint was complete before it"))


def training_arguments(cfg: Config, world_size: int, show_progress: bool) -> dict[str, Any]:
    """The Hugging Face training arguments every koembed recipe shares (bi-encoder and cross-encoder)."""
    import torch

    return dict(
        output_dir=str(cfg.output_dir),
        num_train_epochs=cfg.train.epochs,
        max_steps=cfg.train.max_steps or -1,
        per_device_train_batch_size=cfg.train.batch_size,
        learning_rate=cfg.train.learning_rate,
        lr_scheduler_type=cfg.train.scheduler,
        warmup_ratio=cfg.train.warmup_ratio,
        fp16=cfg.train.precision == "fp16",
        bf16=cfg.train.precision == "bf16",
        seed=cfg.train.seed,
        data_seed=cfg.train.seed,
        gradient_checkpointing=cfg.train.gradient_checkpointing,
        save_strategy="steps",
        save_steps=cfg.train.save_steps,
        save_total_limit=None,  # koembed removes old ones, after marking the new one
        logging_steps=cfg.train.logging_steps,
        dataloader_drop_last=world_size > 1,  # every process gets the same number of full batches
        report_to="none",
        disable_tqdm=not show_progress,
        use_cpu=not torch.cuda.is_available(),  # also what lets bf16 autocast run on a CPU
    )
