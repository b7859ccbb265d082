"""Cross-encoder (reranker) training, ``model.type: cross_encoder``: sentence-transformers' ``CrossEncoderTrainer``
on the same pair sources as the embedding recipe, with the negatives ``koembed mine`` adds.

Losses (``loss.name``):
- ``bce`` (default): ``BinaryCrossEntropyLoss`` on labelled pairs, (query, positive) -> 1 and (query, negative) -> 0
  for every negative of a pair: the recipe of the MS MARCO cross-encoders; it needs mined negatives.
- ``mnrl``: the cross-encoder ``MultipleNegativesRankingLoss`` on (query, positive[, negatives]) rows, which also
  scores other rows' positives as negatives, so it trains without mined negatives too.

The model is ``CrossEncoder(base, num_labels=1)``: an encoder (hub id, folder or ``minilm``) with a new
one-score head. With ``data.eval``, the result is measured as a reranker: BM25 on the evaluation set, its top
``RERANK_EVAL_DEPTH`` rescored by the trained model (:func:`koembed.evaluation.runner.run_bench`), next to BM25 alone.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.data import Pair, load_retrieval_set
from koembed.errors import DataError
from koembed.evaluation.runner import run_bench
from koembed.files import staged_folder, write_json
from koembed.models import EncodeOptions, resolve_model
from koembed.training.card import write_model_card
from koembed.training.config import FINAL_DIR, Config

if TYPE_CHECKING:
    from datasets import Dataset
    from sentence_transformers import CrossEncoder
    from transformers import TrainerCallback

RERANK_EVAL_DEPTH = 50


def cross_encoder_dataset(pairs: Sequence[Pair], loss: str) -> Dataset:
    """``bce``: (query, passage, label) rows; ``mnrl``: (anchor, positive, negative_1..n) with n the fewest
    negatives any pair has."""
    from datasets import Dataset

    if loss == "bce":
        rows = [(p.query, p.positive, 1.0) for p in pairs] + [(p.query, n, 0.0) for p in pairs for n in p.negatives]
        if len(rows) == len(pairs):
            raise DataError("data.train", "loss bce needs negatives to contrast with the positives: add them with "
                                          "koembed mine, or use loss.name: mnrl")
        return Dataset.from_dict({"query": [r[0] for r in rows], "passage": [r[1] for r in rows],
                                  "label": [r[2] for r in rows]})
    n_neg = min((len(p.negatives) for p in pairs), default=0)
    columns = {"anchor": [p.query for p in pairs], "positive": [p.positive for p in pairs]}
    for i in range(n_neg):
        columns[f"negative_{i + 1}"] = [p.negatives[i] for p in pairs]
    return Dataset.from_dict(columns)


def build_cross_encoder(cfg: Config) -> CrossEncoder:
    """``CrossEncoder(base, num_labels=1)``: the base encoder with a new one-score head."""
    from sentence_transformers import CrossEncoder

    assert cfg.model.base is not None  # the config's validator requires it (not a static model)
    return CrossEncoder(resolve_model(cfg.model.base), num_labels=1, max_length=cfg.model.max_seq_length)


def train_cross_encoder(cfg: Config, model: CrossEncoder, pairs: Sequence[Pair], arguments: dict[str, Any],
                        checkpoint: Path | None, callbacks: Sequence[TrainerCallback],
                        record: dict[str, Any] | None = None,
                        check: Callable[[int], None] | None = None) -> dict[str, Any]:
    """Train ``model``, save ``output_dir/final`` with its card, and evaluate as a reranker (module docstring).

    ``arguments`` are the training arguments every koembed recipe shares; ``checkpoint`` the one to resume from;
    ``record`` (data counts and sources) goes into the summary, ``koembed_training.json`` and the card;
    ``check(global_step)`` runs after training, before anything is saved (it raises if training diverged).
    Returns ``metrics`` (the reranked IR suite), ``first_stage_metrics``, ``global_step`` and ``final_model``.
    """
    from sentence_transformers.cross_encoder import CrossEncoderTrainer, CrossEncoderTrainingArguments, losses

    dataset = cross_encoder_dataset(pairs, cfg.loss.name)
    loss = (losses.BinaryCrossEntropyLoss(model) if cfg.loss.name == "bce"
            else losses.MultipleNegativesRankingLoss(model, scale=cfg.loss.scale))
    trainer = CrossEncoderTrainer(model=model, args=CrossEncoderTrainingArguments(**arguments),
                                  train_dataset=dataset, loss=loss, callbacks=list(callbacks))
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)
    if check is not None:
        check(trainer.state.global_step)
    summary: dict[str, Any] = {**(record or {}), "global_step": trainer.state.global_step,
                               "training_rows": len(dataset),
                               "eval": {"path": cfg.data.eval.path, "split": cfg.data.eval.split}
                               if cfg.data.eval else None, "metrics": {}}
    if not trainer.is_world_process_zero():
        return summary
    final = Path(cfg.output_dir) / FINAL_DIR
    with staged_folder(final, replace=True) as staging:
        model.save(str(staging))
        if cfg.data.eval is not None:
            rs = load_retrieval_set(cfg.data.eval.path, split=cfg.data.eval.split)
            first, reranked = run_bench(rs, ["bm25", f"rerank:{staging}@bm25"], options=EncodeOptions(
                batch_size=cfg.train.batch_size, show_progress=False), rerank_depth=RERANK_EVAL_DEPTH)
            summary["metrics"], summary["first_stage_metrics"] = reranked.ir, first.ir
            summary["eval"]["reranked"] = f"bm25 top {RERANK_EVAL_DEPTH}"
        write_json(staging / "koembed_training.json", {"config": cfg.model_dump(), **summary})
        write_model_card(staging, cfg=cfg.model_dump(), training=summary, bench=None)
    summary["final_model"] = str(final)
    return summary
