"""``foldertrack db``: create, upgrade and inspect the state database schema."""

from __future__ import annotations

import click

from foldertrack.cli.db_options import database_options, open_command_database, resolve_database_url
from foldertrack.state.database import (
    current_revision,
    head_revision,
    known_revisions,
    mask_url,
    upgrade_database,
)


@click.group()
def db() -> None:
    """Manage the state database schema."""


@db.command()
@database_options
def upgrade(config_path: str | None, database_url: str | None) -> None:
    """Create the schema or upgrade it to this version of foldertrack (safe to run every start)."""
    url = resolve_database_url(config_path, database_url)
    before, after = upgrade_database(url)
    if before == after:
        click.echo(f"{mask_url(url)}: schema already at {after} (current)")
    else:
        click.echo(f"{mask_url(url)}: schema upgraded from {before or 'empty'} to {after}")


@db.command()
@database_options
def current(config_path: str | None, database_url: str | None) -> None:
    """Show the database's schema revision and whether it is current."""
    engine = open_command_database(config_path, database_url, check_schema=False)
    try:
        have, need = current_revision(engine), head_revision()
        shown = mask_url(engine.url)
    finally:
        engine.dispose()
    if have == need:
        click.echo(f"{shown}: schema at {have} (current)")
    elif have is not None and have not in known_revisions():
        click.echo(f"{shown}: schema at {have}, newer than this foldertrack (which needs {need})")
    else:
        click.echo(
            f"{shown}: schema at {have or 'nothing (empty)'}, needs {need}: run `foldertrack db upgrade`"
        )
