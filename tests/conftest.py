"""Shared fixtures. ../shared/data is required in CI (CI=true) and skipped with a reason elsewhere."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
KORQUAD = SHARED_DATA / "korquad-v1-dev" / "KorQuAD_v1.0_dev.json"


def require_shared(path: Path) -> Path:
    """Return ``path`` if it exists; fail in CI, skip elsewhere."""
    if path.exists():
        return path
    message = f"{path} is missing: the licensed Korean data lives in ../shared/data beside the checkout"
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def korquad_path() -> Path:
    return require_shared(KORQUAD)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory) -> Path:
    """A tiny XLM-RoBERTa + CLS pooling + Normalize model (the bge-m3 classes), saved once per session."""
    from koembed.models import make_tiny_xlmr

    return make_tiny_xlmr(tmp_path_factory.mktemp("tiny-xlmr"))


@pytest.fixture(scope="session")
def sample():
    from koembed.data import load_retrieval_set

    return load_retrieval_set()
