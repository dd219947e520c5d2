"""The README, `--help` and the config reference agree with the code."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge.cli import build_parser

ROOT = Path(__file__).resolve().parents[1]


def _commands(parser: argparse.ArgumentParser, prefix: str = "edge") -> list[str]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                nested = _commands(sub, f"{prefix} {name}")
                found.extend(nested or [f"{prefix} {name}"])
    return found


def test_readme_starts_with_the_two_commands():
    text = (ROOT / "README.md").read_text()
    first_block = text.split("```")[1]
    assert "make demo" in first_block and "make test" in first_block


def test_every_cli_command_is_in_the_readme_and_has_help():
    readme = (ROOT / "README.md").read_text()
    commands = _commands(build_parser())
    assert "edge run" in commands and "edge devices add" in commands
    for command in commands:
        assert f"`{command}" in readme, f"{command} is not documented in README.md"


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()
