"""Training: the recipe as a validated config (:mod:`.config`), the sentence-transformers trainer with
resumable checkpoints (:mod:`.trainer`), hard-negative mining (:mod:`.mine`) and the model card (:mod:`.card`).
The names below load their module on first use (:mod:`koembed._lazy`): the config is a pydantic model."""

from typing import TYPE_CHECKING

from koembed._lazy import lazy_exports

_API = {"Config": "koembed.training.config", "load_config": "koembed.training.config",
        "write_model_card": "koembed.training.card", "mine_hard_negatives": "koembed.training.mine",
        "dry_run": "koembed.training.trainer", "load_training_data": "koembed.training.trainer",
        "train": "koembed.training.trainer"}
__all__ = list(_API)
__getattr__, __dir__ = lazy_exports(__name__, _API)

if TYPE_CHECKING:
    from koembed.training.card import write_model_card
    from koembed.training.config import Config, load_config
    from koembed.training.mine import mine_hard_negatives
    from koembed.training.trainer import dry_run, load_training_data, train
