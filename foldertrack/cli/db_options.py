"""The ``--database-url`` option and the one helper that decides which database a command uses."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

import click
from sqlalchemy import Engine

from foldertrack.cli.common import config_option
from foldertrack.errors import ConfigError
from foldertrack.state.database import open_database

F = TypeVar("F", bound=Callable[..., Any])

database_url_option = click.option(
    "--database-url",
    "database_url",
    envvar="FOLDERTRACK_DATABASE_URL",
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
    try:
        from foldertrack.config import load_config
    except ModuleNotFoundError as error:
        if error.name != "foldertrack.config":
            raise
        raise ConfigError(
            "no database configured: pass --database-url or set FOLDERTRACK_DATABASE_URL"
        ) from None
    return load_config(config_path, required=False).database.url


def open_command_database(config_path: str | None, url: str | None, *, check_schema: bool = True) -> Engine:
    """The engine a command works on; refuses an out-of-date schema unless ``check_schema`` is False."""
    return open_database(resolve_database_url(config_path, url), check_schema=check_schema)
