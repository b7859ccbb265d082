"""Every model option of every CLI command reaches the model settings the command hands to the library.

``koembed bench --query-prompt`` was accepted and dropped on the way to the retrievers; this test invokes each
command with every model option it offers set to an unusual value, stops the command at the library call that
receives the :class:`~koembed.models.ModelSpec` (or the settings), and compares.
"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from koembed.cli import app
from koembed.cli.common import MODEL_OPTIONS
from tests.helpers import cli_commands

VALUES = {"model": "some-org/some-model", "precision": "bf16", "backend": "torch", "device": "cpu:7",
          "query_prompt": "Q> ", "passage_prompt": "P> "}
# A graph backend runs its weights as exported (bf16 is refused there), so the backend is checked in a second run.
GRAPH = {**VALUES, "precision": "auto", "backend": "onnx"}
FIELD = {"model": "name"}  # ModelSpec field of an option, where it is not the option's own name


class Reached(Exception):
    """Raised by the patched library function: the command got there."""


def _first(args, kwargs):
    return args[0]


# command: (its other arguments ({tmp} is a scratch folder), the library function that receives the settings,
# how to read them from that call)
CASES = {
    "bench": ([], "koembed.cli.evaluate.run_bench", lambda a, kw: kw["settings"]),
    "eval": ([], "koembed.cli.evaluate.evaluate_model", lambda a, kw: a[1]),
    "tune-fusion": (["-d", "sample", "-r", "bm25", "-r", "bm25-char"], "koembed.cli.tune.run_bench",
                    lambda a, kw: kw["settings"]),
    "encode": (["--corpus", "sample", "--out", "{tmp}/emb"], "koembed.cli.encode.encode_corpus", _first),
    "index build": (["--corpus", "sample", "--out", "{tmp}/index"], "koembed.cli.index.build_index", _first),
    "search": (["a query", "--index", "{tmp}/index"], "koembed.cli.index.load_index",
               lambda a, kw: SimpleNamespace(device=kw["device"])),
    "serve": ([], "koembed.server.serve", _first),
    "mine": (["--data", "{tmp}/pairs.jsonl", "--out", "{tmp}/mined.jsonl"], "koembed.training.mine_hard_negatives",
             lambda a, kw: kw["settings"]),
    "export": (["--out", "{tmp}/export"], "koembed.cli.export.export_model",
               lambda a, kw: SimpleNamespace(name=a[0], backend=kw["backend"])),
    "distill": (["--teacher", "t", "--out", "{tmp}/static"], "koembed.cli.train.distill_static",
                lambda a, kw: SimpleNamespace(device=kw["device"])),
}

NOT_MODEL_SETTINGS = {"card"}  # its --model is the trained folder whose card is written, not a model to run


def _model_options(command) -> list[str]:
    return [p.name for p in command.params if p.name in MODEL_OPTIONS]


def test_every_command_with_model_options_is_checked():
    taking = {name for name, command in cli_commands(get_command(app)).items() if _model_options(command)}
    assert taking - NOT_MODEL_SETTINGS == set(CASES)


@pytest.mark.parametrize("values", [VALUES, GRAPH], ids=["torch-bf16", "onnx"])
@pytest.mark.parametrize("name", sorted(CASES))
def test_each_model_option_reaches_the_model_settings(name, values, tmp_path, monkeypatch):
    extra, target, read = CASES[name]
    received = []

    def reached(*args, **kwargs):
        received.append(read(args, kwargs))
        raise Reached

    monkeypatch.setattr(target, reached)
    (tmp_path / "pairs.jsonl").write_text(json.dumps({"query": "질문", "positive": "답"}, ensure_ascii=False) + "\n",
                                          encoding="utf-8")
    options = _model_options(cli_commands(get_command(app))[name])
    argv = [*name.split(), *(a.format(tmp=tmp_path) for a in extra)]
    for option in options:
        argv += ["--" + option.replace("_", "-"), values[option]]
    result = CliRunner().invoke(app, argv)
    assert isinstance(result.exception, Reached), (result.output, result.exception)
    got = received[0]
    assert {o: getattr(got, FIELD.get(o, o)) for o in options} == {o: values[o] for o in options}
