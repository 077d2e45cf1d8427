"""Every ``visionprefer ...`` command the README shows parses with the real CLI parser (a renamed or
removed option fails here, not in a user's shell)."""

from __future__ import annotations

import re
import shlex

import pytest

from visionprefer.cli import _parser

from .conftest import REPO


def _commands() -> list[str]:
    text = (REPO / "README.md").read_text(encoding="utf-8")
    out = []
    for block in re.findall(r"```(?:bash|sh)\n(.*?)```", text, flags=re.S):
        for line in block.splitlines():
            line = line.strip()
            if line.startswith("visionprefer "):
                out.append(line)
    return out


def test_the_readme_shows_commands():
    commands = _commands()
    assert len(commands) >= 10
    wanted = {"--scores", "--verdicts", "--scorer", "--pairwise-judge", "--judge", "--metrics"}
    kinds = {c for c in wanted for line in commands
             if line.startswith("visionprefer eval agreement") and f" {c} " in line}  # fmt: skip
    assert kinds == wanted  # one per candidate kind


@pytest.mark.parametrize("command", _commands())
def test_readme_command_parses(command):
    args = shlex.split(command, comments=True)[1:]
    try:
        _parser().parse_args(args)
    except SystemExit as e:  # argparse's way of refusing
        pytest.fail(f"README command does not parse (exit {e.code}): {command}")
