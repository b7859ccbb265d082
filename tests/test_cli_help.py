"""``--help`` reads well at 80 columns: every option name whole, no line past 80, no Python type labels."""

from __future__ import annotations

import re

import pytest
from typer.main import get_command
from typer.testing import CliRunner

from koembed.cli import app
from tests.helpers import cli_commands

COMMANDS = sorted(cli_commands(get_command(app)))


def _help(*argv: str) -> str:
    result = CliRunner().invoke(app, [*argv, "--help"], env={"COLUMNS": "80"}, terminal_width=80)
    assert result.exit_code == 0, result.output
    return result.output


@pytest.mark.parametrize("name", ["", "index", *COMMANDS])
def test_help_at_80_columns(name):
    text = _help(*name.split())
    assert "…" not in text  # rich's tables cut option names (--from-embeddin…) and help words
    assert not [line for line in text.splitlines() if len(line) > 80]
    assert not re.search(r"list\[|int range|float range|<str>|<int>|<path>|<float>", text.split("Options:")[-1])
    for param in (cli_commands(get_command(app))[name].params if name in COMMANDS else []):
        for opt in param.opts + param.secondary_opts:
            if opt.startswith("-"):
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", text), (name, opt)
