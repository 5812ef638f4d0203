"""What the inspection commands (``folders``, ``rules check --online``, ``rules preview``/``suggest``,
``explain``) share: the rules, an optional record directory, the Exchange reader, and progress lines."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import click
from sqlalchemy import Engine

from foldertrack.cli.db_options import missing_sqlite_file, open_command_database, resolve_database_url
from foldertrack.config import Config, load_config
from foldertrack.errors import FoldertrackError
from foldertrack.inspect.reader import MailboxReader, open_reader
from foldertrack.rules import RuleSet, load_rules
from foldertrack.state.database import mask_url
from foldertrack.state.records import RecordDirectory

Progress = Callable[[int, int, str], None]

progress_option = click.option(
    "--progress/--no-progress",
    default=None,
    help="Progress lines on stderr (default: when stderr is a terminal).",
)


def progress_printer(what: str, enabled: bool | None) -> Progress | None:
    """A ``progress(done, total, current)`` callback writing ``what: done/total current`` to stderr."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return None

    def show(done: int, total: int, current: str) -> None:
        suffix = f" {current}" if current else " done"
        click.echo(f"{what}: {done}/{total}{suffix}", err=True)

    return show


def rules_from(config: Config, directory: Path | None) -> RuleSet:
    """The rule set of DIRECTORY, else of the configured ``rules.dir`` (RuleError when invalid)."""
    return load_rules(directory or config.rules.dir)


@contextmanager
def exchange_reader(config: Config) -> Iterator[MailboxReader]:
    """A read-only reader over the configured source (EWS or Graph); ConfigError when it is incomplete."""
    reader = open_reader(config)
    try:
        yield reader
    finally:
        reader.close()


@contextmanager
def optional_directory(
    config_path: str | None, database_url: str | None
) -> Iterator[tuple[RecordDirectory | None, Engine | None, str | None]]:
    """(directory, engine, None), or (None, None, why) when there is no usable database: the record
    checks are then skipped with that reason instead of failing the whole command."""
    url = resolve_database_url(config_path, database_url)
    missing = missing_sqlite_file(url)
    if missing is not None:
        yield None, None, f"database {mask_url(url)} does not exist"
        return
    try:
        engine = open_command_database(config_path, database_url)
    except FoldertrackError as exc:
        yield None, None, str(exc).splitlines()[0]
        return
    try:
        yield RecordDirectory(engine), engine, None
    finally:
        engine.dispose()


def load_command_config(config_path: str | None) -> Config:
    """The configuration; commands that talk to Exchange need the file (or $FOLDERTRACK_CONFIG)."""
    return load_config(config_path)
