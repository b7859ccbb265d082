"""Checkpoints of a training run: completion markers, rotation, and the finite-weights check.

A Hugging Face Trainer checkpoint is marked complete by :data:`COMPLETE_MARKER`, written atomically after
everything else; a checkpoint without it (the process died while saving) is never resumed from, and is
removed when resuming. koembed, not the Trainer, removes old checkpoints (``keep_checkpoints``), and only
after the new one is marked: the Trainer deletes them before callbacks run, so a kill in between would leave
no complete checkpoint at all. A checkpoint whose weights are not all finite (a diverged run) is never marked
(the check is :func:`koembed.models.checks.non_finite_tensors`, which loading applies to every model too).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

from koembed.files import write_json
from koembed.models.checks import non_finite_tensors

if TYPE_CHECKING:
    from transformers import TrainerCallback

COMPLETE_MARKER = "koembed-checkpoint-complete.json"


def complete_checkpoints(output_dir: Path) -> list[Path]:
    """The marked checkpoints, oldest step first."""
    found = []
    for path in output_dir.glob("checkpoint-*"):
        if path.is_dir() and path.name.split("-")[-1].isdigit() and (path / COMPLETE_MARKER).is_file():
            found.append(path)
    return sorted(found, key=lambda p: int(p.name.split("-")[-1]))


def last_complete_checkpoint(output_dir: str | Path) -> Path | None:
    """The newest checkpoint whose completion marker exists, or None."""
    found = complete_checkpoints(Path(output_dir))
    return found[-1] if found else None


def remove_incomplete_checkpoints(output_dir: str | Path) -> list[Path]:
    """Remove the checkpoints without a completion marker (a save the process did not finish)."""
    removed = []
    for path in Path(output_dir).glob("checkpoint-*"):
        if path.is_dir() and not (path / COMPLETE_MARKER).is_file():
            shutil.rmtree(path)
            removed.append(path)
    return removed


def checkpoint_keeper(output_dir: Path, model: Any, keep: int) -> TrainerCallback:
    """Marks each checkpoint complete once the Trainer has written all of it, then removes the old ones.

    Runs after every other callback's ``on_save`` (callbacks given to :func:`koembed.training.train` come
    first), so nothing is deleted before the new checkpoint is marked. A checkpoint with non-finite weights is
    not marked: it is removed and training stops (``train`` then raises
    :class:`~koembed.errors.TrainingDivergedError`).
    """
    from transformers import TrainerCallback

    class Checkpoints(TrainerCallback):
        def __init__(self) -> None:
            self.diverged: list[str] = []

        def on_save(self, args, state, control, **kwargs):
            bad = non_finite_tensors(model)
            if bad:
                self.diverged = bad
                control.should_training_stop = True
            if not state.is_world_process_zero:
                return
            ckpt = output_dir / f"checkpoint-{state.global_step}"
            if bad:
                shutil.rmtree(ckpt, ignore_errors=True)
                return
            if ckpt.is_dir():
                write_json(ckpt / COMPLETE_MARKER, {"global_step": state.global_step, "epoch": state.epoch})
                for old in complete_checkpoints(output_dir)[:-keep]:
                    shutil.rmtree(old, ignore_errors=True)

    return Checkpoints()
