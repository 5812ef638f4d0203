"""``foldertrack records``: load and show the record directory (SQL sink)."""

from __future__ import annotations

import json

import click

from foldertrack.cli.activities_cmd import format_table
from foldertrack.cli.db_options import database_options, open_command_database
from foldertrack.model import RECORD_TYPES
from foldertrack.state.records import RecordDirectory


@click.group()
def records() -> None:
    """The record directory that rules and mail addresses are resolved against."""


@records.command("import")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(dir_okay=False))
@database_options
def import_(csv_file: str, config_path: str | None, database_url: str | None) -> None:
    """Upsert records from a CSV file (type,id,name,number,emails); nothing is imported if a row is bad."""
    engine = open_command_database(config_path, database_url)
    try:
        report = RecordDirectory(engine).import_csv(csv_file)
    finally:
        engine.dispose()
    click.echo(
        f"{report.path}: {report.total} records ({report.created} created, {report.updated} updated, "
        f"{report.unchanged} unchanged)"
    )


@records.command("list")
@click.option("--type", "record_type", type=click.Choice(RECORD_TYPES), help="Only records of this type.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@database_options
def list_(record_type: str | None, as_json: bool, config_path: str | None, database_url: str | None) -> None:
    """List the records in the directory."""
    engine = open_command_database(config_path, database_url)
    try:
        entries = RecordDirectory(engine).list(record_type)
    finally:
        engine.dispose()
    if as_json:
        data = [
            {
                "type": e.ref.type,
                "id": e.ref.id,
                "name": e.ref.name,
                "number": e.number,
                "emails": list(e.emails),
            }
            for e in entries
        ]
        click.echo(json.dumps(data, indent=2, ensure_ascii=False))
    elif not entries:
        click.echo("no records")
    else:
        rows = [(str(e.ref), e.ref.name or "", e.number or "", ";".join(e.emails)) for e in entries]
        click.echo(format_table(("RECORD", "NAME", "NUMBER", "EMAILS"), rows))
