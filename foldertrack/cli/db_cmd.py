"""``foldertrack db``: create, upgrade and inspect the state database schema."""

from __future__ import annotations

import json

import click

from foldertrack.cli.common import json_option
from foldertrack.cli.db_options import database_options, open_command_database, resolve_database_url
from foldertrack.errors import SchemaOutOfDateError
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
@json_option
def upgrade(config_path: str | None, database_url: str | None, as_json: bool) -> None:
    """Create the schema or upgrade it to this version of foldertrack (safe to run every start)."""
    url = resolve_database_url(config_path, database_url)
    before, after = upgrade_database(url)
    if as_json:
        click.echo(json.dumps({"database": mask_url(url), "from": before, "to": after}))
    elif before == after:
        click.echo(f"{mask_url(url)}: schema already at {after} (current)")
    else:
        click.echo(f"{mask_url(url)}: schema upgraded from {before or 'empty'} to {after}")


@db.command()
@database_options
@json_option
@click.pass_context
def current(ctx: click.Context, config_path: str | None, database_url: str | None, as_json: bool) -> None:
    """Show the database's schema revision; exit 0 only when it is current (78 when behind or newer)."""
    engine = open_command_database(config_path, database_url, check_schema=False)
    try:
        have, need = current_revision(engine), head_revision()
        shown = mask_url(engine.url)
    finally:
        engine.dispose()
    if have == need:
        state, text = "current", f"{shown}: schema at {have} (current)"
    elif have is not None and have not in known_revisions():
        state, text = "newer", f"{shown}: schema at {have}, newer than this foldertrack (which needs {need})"
    else:
        state = "behind"
        text = f"{shown}: schema at {have or 'nothing (empty)'}, needs {need}: run `foldertrack db upgrade`"
    if as_json:
        click.echo(json.dumps({"database": shown, "revision": have, "head": need, "state": state}))
    else:
        click.echo(text)
    if state != "current":
        ctx.exit(SchemaOutOfDateError.exit_code)
