"""``foldertrack records``: load and show the record directory (SQL sink)."""

from __future__ import annotations

import json

import click

from foldertrack.cli.activities_cmd import format_table
from foldertrack.cli.db_options import database_options, open_command_database
from foldertrack.model import RECORD_TYPES, check_record_type
from foldertrack.state.csv_records import COLUMNS, ignored_columns
from foldertrack.state.records import RecordDirectory


def _record_type(value: str | None) -> str | None:
    if value is None:
        return None
    try:
        check_record_type(value.strip().lower())
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    return value.strip().lower()


@click.group()
def records() -> None:
    """The record directory that rules and mail addresses are resolved against."""


@records.command("import")
@click.argument("csv_file", metavar="FILE.csv", type=click.Path(dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON.")
@database_options
def import_(csv_file: str, as_json: bool, config_path: str | None, database_url: str | None) -> None:
    """Upsert records from a CSV file (type,id,name,number,emails); nothing is imported if a row is bad."""
    engine = open_command_database(config_path, database_url)
    try:
        report = RecordDirectory(engine).import_csv(csv_file)
    finally:
        engine.dispose()
    ignored = ignored_columns(csv_file)  # extra columns are ignored, with a note
    if as_json:
        counts = {k: getattr(report, k) for k in ("total", "created", "updated", "unchanged")}
        click.echo(json.dumps({"file": str(report.path), **counts, "ignored_columns": ignored}))
    else:
        click.echo(
            f"{report.path}: {report.total} records ({report.created} created, {report.updated} updated, "
            f"{report.unchanged} unchanged)"
        )
    for column in ignored:
        click.echo(f"note: column {column!r} ignored (known: {', '.join(COLUMNS)})", err=True)


@records.command("list")
@click.option(
    "--type",
    "record_type",
    metavar="TYPE",
    callback=lambda _ctx, _param, value: _record_type(value),
    help=f"Only records of this type ({', '.join(RECORD_TYPES)} or a custom table's logical name).",
)
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


@records.command("sync")
@click.option(
    "--type",
    "types",
    multiple=True,
    type=click.Choice(("account", "contact", "lead")),
    help="Only this table (repeatable); default: accounts, contacts and leads.",
)
@click.option("--full", is_flag=True, help="Read the tables whole instead of only what changed.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON report instead of a summary.")
@database_options
def sync(
    types: tuple[str, ...], full: bool, as_json: bool, config_path: str | None, database_url: str | None
) -> None:
    """Copy accounts, contacts and leads (ids, names, numbers, addresses) from Dataverse ([dataverse])."""
    from foldertrack.config import load_config
    from foldertrack.crm.connect import connect
    from foldertrack.crm.records_sync import SOURCES, RecordsSyncer, TypeReport

    config = load_config(config_path, required=False)
    client = connect(config)
    try:
        engine = open_command_database(config_path, database_url)
    except BaseException:
        client.close()
        raise

    def progress(report: TypeReport) -> None:
        click.echo(
            f"{report.type}s: page {report.pages} ({report.mode}): {report.added} added, "
            f"{report.changed} changed, {report.deleted} deleted",
            err=True,
        )

    try:
        result = RecordsSyncer(client, engine).sync(types or tuple(SOURCES), full=full, progress=progress)
    finally:
        client.close()
        engine.dispose()
    if as_json:
        click.echo(json.dumps(result.as_dict(), indent=2))
        return
    for t in result.types:
        skipped = f", {t.skipped} skipped" if t.skipped else ""
        click.echo(
            f"{t.type}s ({t.mode}): {t.total} records; {t.added} added, {t.changed} changed, "
            f"{t.deleted} deleted, {t.unchanged} unchanged{skipped}"
        )
