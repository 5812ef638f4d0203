"""``foldertrack retry``: replay dead letters once their cause is fixed.

Two kinds: sync dead letters (an item that could not be read or stored, ``#12`` in ``status``) and
delivery dead letters (an outbox entry the CRM rejected, ``d12``). A replayed delivery entry keeps its
idempotency key, so a CRM that did take it after all does not get it twice.
"""

from __future__ import annotations

import json

import click

from foldertrack.cli.db_options import database_options, open_command_database
from foldertrack.delivery import outbox
from foldertrack.errors import FoldertrackError
from foldertrack.state import dead_letters_store


def _split_ids(ids: tuple[str, ...]) -> tuple[list[int], list[int]]:
    """``12`` (sync) and ``d12`` (delivery) ids; a BadParameter names anything else."""
    sync: list[int] = []
    delivery: list[int] = []
    for text in ids:
        raw = text.strip().lstrip("#")
        target = delivery if raw[:1].lower() == "d" else sync
        number = raw[1:] if target is delivery else raw
        if not number.isdigit():
            raise click.BadParameter(
                f"{text!r} is not a dead letter id like 12 or d12 (see `foldertrack status`)"
            )
        target.append(int(number))
    return sync, delivery


@click.command()
@database_options
@click.option("--json", "as_json", is_flag=True, help="Print the counts as JSON: {sync, delivery}.")
@click.argument("ids", nargs=-1)
def retry(config_path: str | None, database_url: str | None, as_json: bool, ids: tuple[str, ...]) -> None:
    """Queue dead letters (all, or the given IDS from `status`: 12 for sync, d12 for delivery) for another
    attempt.

    The running watcher replays them within seconds; without one, the next `foldertrack run` does.
    """
    sync_ids, delivery_ids = _split_ids(ids)
    engine = open_command_database(config_path, database_url)
    try:
        with engine.begin() as conn:
            # no IDS: every dead letter of both kinds (None means all)
            sync = dead_letters_store.request_replay(conn, sync_ids or None) if sync_ids or not ids else 0
            delivery = outbox.request_replay(conn, delivery_ids or None) if delivery_ids or not ids else 0
            if ids and sync + delivery < len(set(sync_ids)) + len(set(delivery_ids)):  # H7: rolls back
                raise FoldertrackError(
                    "not every given id is a dead letter: nothing queued (`foldertrack status` lists them)"
                )
    finally:
        engine.dispose()
    if as_json:
        click.echo(json.dumps({"sync": sync, "delivery": delivery}))
        return
    click.echo(f"{sync} dead letter(s) queued for replay")
    if delivery or delivery_ids:
        click.echo(f"{delivery} delivery dead letter(s) queued for replay")
