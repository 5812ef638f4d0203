"""The ``--database-url`` option and the one helper that decides which database a command uses.

Which URL: ``--database-url``, else ``$FOLDERTRACK_DATABASE_URL``, else ``database.url`` from the
configuration (where a relative SQLite path is relative to the configuration file's directory; on the
command line and in the environment it is relative to the current directory, like any path there).
Only ``db upgrade`` creates a database: every other command refuses a SQLite file that does not exist,
naming it, instead of leaving an empty file (and its directories) behind a typo.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import click
from sqlalchemy import Engine, exc, make_url

from foldertrack.cli.common import config_option
from foldertrack.errors import ConfigError
from foldertrack.state.database import mask_url, open_database

F = TypeVar("F", bound=Callable[..., Any])

DATABASE_URL_ENV = "FOLDERTRACK_DATABASE_URL"

database_url_option = click.option(
    "--database-url",
    "database_url",
    envvar=DATABASE_URL_ENV,
    default=None,
    metavar="URL",
    help="State database URL, overriding the configuration "
    "(e.g. sqlite:////var/lib/foldertrack/state.db, postgresql+psycopg://user@host/db).",
)


def database_options(func: F) -> F:
    """``--config`` and ``--database-url``, passed as ``config_path`` and ``database_url``."""
    return config_option(database_url_option(func))


def resolve_database_url(config_path: str | None, database_url: str | None) -> str:
    """``--database-url`` (or $FOLDERTRACK_DATABASE_URL) when given, else ``database.url`` from the config."""
    if database_url:
        return database_url
    from foldertrack.config import load_config

    return load_config(config_path, required=False).database.url


def missing_sqlite_file(url: str) -> Path | None:
    """The file a ``sqlite://`` URL names when it does not exist (None: it exists, or not a file URL)."""
    try:
        parsed = make_url(url)
    except exc.ArgumentError:
        return None  # open_database reports the bad URL
    if parsed.get_backend_name() != "sqlite":
        return None
    database = parsed.database or ""
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    return None if path.exists() else path


def require_existing_database(url: str) -> None:
    """Raise ConfigError (exit 78) naming the database when its SQLite file does not exist."""
    missing = missing_sqlite_file(url)
    if missing is not None:
        raise ConfigError(
            f"database {mask_url(url)} does not exist (no file {missing}): check database.url or "
            "--database-url; `foldertrack db upgrade` creates it"
        )


def open_command_database(
    config_path: str | None, url: str | None, *, check_schema: bool = True, must_exist: bool = True
) -> Engine:
    """The engine a command works on; refuses an out-of-date schema unless ``check_schema`` is False,
    and a SQLite file that does not exist unless ``must_exist`` is False (only ``db upgrade`` creates)."""
    resolved = resolve_database_url(config_path, url)
    if must_exist:
        require_existing_database(resolved)
    return open_database(resolved, check_schema=check_schema)
