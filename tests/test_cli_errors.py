"""A newcomer's mistakes fail early and say what to do: a retriever typo before the data loads, the offline-hub
download command docs/cli.md uses."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from koembed.cli import app
from koembed.errors import ModelLoadError
from koembed.models import ModelSpec, load_model
from koembed.models.reranker import load_reranker


def _said(result) -> str:
    return " ".join(result.output.split())


@pytest.mark.parametrize("argv, module", [
    (["bench", "-r", "bm25", "-r", "bm26"], "koembed.cli.evaluate"),
    (["bench", "-r", "hybrid:bm25+dense:"], "koembed.cli.evaluate"),
    (["bench", "-r", "rerank:some/model@bm26"], "koembed.cli.evaluate"),
    (["tune-fusion", "-d", "sample", "-r", "bm25", "-r", "bm26"], "koembed.cli.tune"),
])
def test_a_bad_retriever_spec_fails_before_the_data_set_loads(argv, module, monkeypatch):
    loaded = []
    monkeypatch.setattr(f"{module}.load_retrieval_set", lambda *a, **kw: loaded.append(a))
    result = CliRunner().invoke(app, argv)
    assert result.exit_code == 2 and "error:" in result.output, result.output
    assert "bm26" in _said(result) or "dense: needs a model" in _said(result)
    assert loaded == []


@pytest.mark.parametrize("load", [load_model, load_reranker])
def test_the_offline_hub_message_gives_the_hf_download_command(load, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(ModelLoadError) as info:
        load(ModelSpec("some-org/not-cached-model"))
    message = str(info.value)
    assert "hf download some-org/not-cached-model --local-dir DIR" in message and "huggingface-cli" not in message
