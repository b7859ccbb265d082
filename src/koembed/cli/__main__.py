"""``python -m koembed.cli``, as torchrun launches the trainer on every process."""

from koembed.cli import app

app()
