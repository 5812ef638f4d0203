"""Options shared by several sub-commands.

``--config``, ``--database-url`` and ``--json`` may also be written before the sub-command
(``foldertrack --json status``): :mod:`foldertrack.cli.argv` moves them to the command that takes them.
"""

from __future__ import annotations

import click

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Configuration file (default: $FOLDERTRACK_CONFIG, else /etc/foldertrack/foldertrack.toml).",
)

json_option = click.option(
    "--json",
    "as_json",
    is_flag=True,
    help="Print JSON (stable keys) instead of text.",
)
