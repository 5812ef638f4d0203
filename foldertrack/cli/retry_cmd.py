"""``foldertrack retry``: replay dead letters once their cause is fixed."""

from __future__ import annotations

import click

from foldertrack.cli.common import config_option
from foldertrack.config import load_config
from foldertrack.state import watch_store
from foldertrack.state.database import open_database


@click.command()
@config_option
@click.argument("ids", nargs=-1, type=int)
def retry(config_path: str | None, ids: tuple[int, ...]) -> None:
    """Queue dead letters (all, or the given IDS from `status`) for another attempt.

    The running watcher replays them within seconds; without one, the next `foldertrack run` does.
    """
    config = load_config(config_path)
    engine = open_database(config.database.url)
    try:
        with engine.begin() as conn:
            count = watch_store.request_replay(conn, ids or None)
    finally:
        engine.dispose()
    click.echo(f"{count} dead letter(s) queued for replay")
