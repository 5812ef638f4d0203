"""Options and helpers shared by several sub-commands."""

from __future__ import annotations

import click

config_option = click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False),
    default=None,
    help="Configuration file (default: $FOLDERTRACK_CONFIG, else /etc/foldertrack/foldertrack.toml).",
)
