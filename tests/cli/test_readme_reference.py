"""The README's command reference is the one the click commands generate, and every command has help."""

from __future__ import annotations

from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from foldertrack.cli import main
from foldertrack.cli.reference import reference_markdown, table_span, walk

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_table() -> str:
    text = README.read_text(encoding="utf-8")
    start, end = table_span(text)
    return text[start:end]


def test_readme_command_reference_matches_the_commands():
    assert readme_table() == reference_markdown(), (
        "README.md's command reference is out of date: replace its table with the output of "
        "`python -m foldertrack.cli.reference --write README.md`"
    )


COMMANDS = [path for path, _ in walk(main, click.Context(main, info_name="foldertrack"))]


@pytest.mark.parametrize("path", COMMANDS)
def test_every_command_has_help(path):
    result = CliRunner().invoke(main, [*path.split(), "--help"])
    assert result.exit_code == 0, result.output
    assert f"Usage: main {path}" in result.output or f"Usage: foldertrack {path}" in result.output


def test_reference_lists_the_commands_of_this_issue():
    for command in (
        "folders",
        "explain",
        "conflicts",
        "rules preview",
        "rules suggest",
        "records delete",
        "simctl deliver",
        "simctl move",
        "simctl copy",
    ):
        assert command in COMMANDS
