"""``foldertrack config check``: show the effective configuration, secrets masked."""

from __future__ import annotations

import click

from foldertrack.cli.common import config_option
from foldertrack.config import load_config, render_config
from foldertrack.errors import ConfigError

EXIT_INVALID = 1


@click.group()
def config() -> None:
    """Inspect the configuration file."""


@config.command("check")
@config_option
@click.pass_context
def check(ctx: click.Context, config_path: str | None) -> None:
    """Validate the configuration and print it with defaults filled in and secrets masked.

    Exits 1 when the file is invalid. What is still missing to connect to Exchange (endpoint, username,
    password) is printed as warnings: credentials often exist only inside the service.
    """
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:  # a checker exits 1 like `rules check`; `run` exits with EX_CONFIG
        for line in str(exc).splitlines():
            click.echo(f"error: {line}", err=True)
        ctx.exit(EXIT_INVALID)
    click.echo(render_config(cfg))
    for problem in cfg.exchange.connection_problems():
        click.echo(f"warning: {problem}", err=True)
