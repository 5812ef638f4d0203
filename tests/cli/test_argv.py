"""``foldertrack.cli.argv.reorder``: where global options end up before click parses them."""

from __future__ import annotations

import click
import pytest

from foldertrack.cli import main
from foldertrack.cli.argv import reorder


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (["--json", "status"], ["status", "--json"]),
        (
            ["--config", "c.toml", "--json", "records", "list"],
            ["records", "list", "--config", "c.toml", "--json"],
        ),
        (["--config=c.toml", "db", "current"], ["db", "current", "--config=c.toml"]),
        (["status", "--debug"], ["--debug", "status"]),
        (["--debug", "status", "--debug"], ["--debug", "status"]),
        (["explain", "--subject", "--debug"], ["explain", "--subject", "--debug"]),  # a value, not the flag
        (["--json", "retry", "1", "--", "--debug"], ["retry", "1", "--json", "--", "--debug"]),
        (["--json", "run"], ["--json", "run"]),  # run takes no --json: the group reports it
        (["--database-url", "sqlite://", "rules"], ["--database-url", "sqlite://", "rules"]),  # a group
        (["--version"], ["--version"]),
        (["nonsense", "--json"], ["nonsense", "--json"]),
    ],
)
def test_reorder(given, expected):
    ctx = click.Context(main, info_name="foldertrack")
    assert reorder(main, ctx, given) == expected
