"""``foldertrack activities``: what the SQL sink has stored, as a table or JSON."""

from __future__ import annotations

import json
from collections.abc import Sequence

import click

from foldertrack.cli.common import json_option
from foldertrack.cli.db_options import database_options, open_command_database
from foldertrack.model import RecordRef
from foldertrack.state.activities import count_activities, list_activities

DEFAULT_LIMIT = 50


def _parse_record(_ctx: click.Context, _param: click.Parameter, value: str | None) -> RecordRef | None:
    if value is None:
        return None
    try:
        return RecordRef.parse(value)
    except ValueError as error:
        raise click.BadParameter(str(error)) from None


@click.command()
@click.option(
    "--record", callback=_parse_record, metavar="TYPE:ID", help="Only activities regarding this record."
)
@click.option("--mailbox", metavar="ADDRESS", help="Only activities tracked from this mailbox.")
@click.option(
    "--limit",
    type=click.IntRange(min=1),
    default=DEFAULT_LIMIT,
    show_default=True,
    help="At most this many, newest first.",
)
@click.option("--offset", type=click.IntRange(min=0), default=0, help="Skip this many first (paging).")
@click.option("--all", "show_all", is_flag=True, help="No limit: every matching activity.")
@json_option
@database_options
def activities(
    record: RecordRef | None,
    mailbox: str | None,
    limit: int,
    offset: int,
    show_all: bool,
    as_json: bool,
    config_path: str | None,
    database_url: str | None,
) -> None:
    """List tracked activities (SQL sink), newest first, a page at a time (--limit, --offset, --all).

    When more match than are shown, a note on stderr says how to see the next page.
    """
    engine = open_command_database(config_path, database_url)
    try:
        rows = list_activities(
            engine, record=record, mailbox=mailbox, limit=None if show_all else limit, offset=offset
        )
        total = (
            offset + len(rows)
            if show_all or len(rows) < limit
            else count_activities(engine, record=record, mailbox=mailbox)
        )
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps([r.to_json() for r in rows], indent=2, ensure_ascii=False))
    elif not rows:
        click.echo("no activities")
    else:
        click.echo(_table(rows))
    shown_to = offset + len(rows)
    if shown_to < total:
        click.echo(
            f"note: showing {offset + 1}-{shown_to} of {total}; next page: --offset {shown_to} (or --all)",
            err=True,
        )


def _table(rows) -> str:
    table = [
        (
            r.tracked_at.strftime("%Y-%m-%d %H:%M:%S"),
            r.mailbox,
            r.folder,
            r.regarding + (f" ({r.regarding_name})" if r.regarding_name else ""),
            r.state,
            r.subject or "",
        )
        for r in rows
    ]
    return format_table(("TRACKED (UTC)", "MAILBOX", "FOLDER", "REGARDING", "STATE", "SUBJECT"), table)


def format_table(headers: Sequence[str], rows: Sequence[Sequence[str]], max_width: int = 48) -> str:
    """Left-aligned columns separated by two spaces; long cells are cut with an ellipsis."""

    def cut(cell: str) -> str:
        cell = " ".join(str(cell).split())
        return cell if len(cell) <= max_width else cell[: max_width - 1] + "…"

    cells = [[cut(h) for h in headers], *([cut(c) for c in row] for row in rows)]
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in cells
    )
