"""``foldertrack status``: each mailbox and folder, mode, times, counts, dead letters and drift."""

from __future__ import annotations

import json

import click

from foldertrack.cli.common import config_option
from foldertrack.config import load_config
from foldertrack.ops.status import collect_status
from foldertrack.state.database import open_database


@click.command()
@config_option
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(config_path: str | None, as_json: bool) -> None:
    """Show what the watcher is doing (read from the state database; works while it runs or not)."""
    config = load_config(config_path)
    engine = open_database(config.database.url)
    try:
        report = collect_status(engine)
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    totals = report["totals"]
    modes = ", ".join(f"{n} {mode}" for mode, n in sorted(totals["modes"].items())) or "none"
    click.echo(
        f"{totals['mailboxes']} mailbox(es), {totals['folders']} folder(s); {modes}; "
        f"{totals['tracked']} tracked; {totals['dead_letters']} dead letter(s)"
    )
    for box in report["mailboxes"]:
        click.echo("")
        click.echo(
            f"{box['mailbox']}  mode={box['mode']}  tracked={box['tracked']}  "
            f"last event={box.get('last_event_at') or '-'}  last sync={box.get('last_sync_at') or '-'}"
        )
        if box.get("last_error"):
            click.echo(f"  last error: {box['last_error']}")
        for folder in box["folders"]:
            click.echo(
                f"  {folder['path']:<40} {folder['status']:<10} tracked={folder['tracked']:<6} "
                f"rule={folder['rule']}"
            )
        for warning in box["warnings"]:
            click.echo(f"  warning: {warning}")
        if box["dead_letters"] or box["retrying"]:
            click.echo(f"  dead letters: {box['dead_letters']}, retrying: {box['retrying']}")
    if report["dead_letters"]:
        click.echo("")
        click.echo("dead letters (replay with `foldertrack retry`):")
        for d in report["dead_letters"]:
            click.echo(
                f"  #{d['id']} {d['mailbox']} {d['subject'] or '(no subject)'}: {d['error']} "
                f"({d['attempts']} attempts)"
            )
