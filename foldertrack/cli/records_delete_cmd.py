"""``foldertrack records delete TYPE:ID…``: remove records from the record directory (all or nothing).

Added to H3's ``records`` group through :data:`foldertrack.cli.SUBCOMMANDS`, so that module stays its own.
"""

from __future__ import annotations

import json

import click

from foldertrack.cli.common import json_option
from foldertrack.cli.db_options import database_options, open_command_database
from foldertrack.model import RecordRef
from foldertrack.state.records_delete import delete_records


def _parse_refs(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[RecordRef]:
    refs = []
    for value in values:
        try:
            refs.append(RecordRef.parse(value))
        except ValueError as error:
            raise click.BadParameter(str(error)) from None
    return refs


@click.command("delete")
@click.argument("refs", metavar="TYPE:ID...", nargs=-1, required=True, callback=_parse_refs)
@click.option("--dry-run", is_flag=True, help="Check and show what would be deleted; change nothing.")
@json_option
@database_options
def delete(
    refs: list[RecordRef], dry_run: bool, as_json: bool, config_path: str | None, database_url: str | None
) -> None:
    """Delete records (and their addresses) from the directory; if any is unknown, none is deleted.

    Activities regarding them keep their regarding record. A rule that looks one of them up by name or
    number no longer finds it (`foldertrack rules check --online` shows that).
    """
    engine = open_command_database(config_path, database_url)
    try:
        deleted = delete_records(engine, refs, dry_run=dry_run)
    finally:
        engine.dispose()
    if as_json:
        data = {
            "dry_run": dry_run,
            "deleted": [{"type": r.type, "id": r.id, "name": r.name} for r in deleted],
        }
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
        return
    verb = "would delete" if dry_run else "deleted"
    for ref in deleted:
        click.echo(f"{verb} {ref} ({ref.name})")
