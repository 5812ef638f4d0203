"""Database fixtures: a fresh SQLite file or a fresh PostgreSQL schema per test, empty or upgraded.

PostgreSQL tests need ``FOLDERTRACK_TEST_DATABASE_URL`` (e.g. ``postgresql+psycopg://postgres@127.0.0.1/test``);
without it they skip and say why. Each test gets its own schema (selected through the URL's ``search_path``),
dropped afterwards, so tests never see each other's rows, even when run in parallel.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import Engine, create_engine, make_url, text

from foldertrack.state.database import open_database, upgrade_database

__all__ = [
    "TEST_DATABASE_ENV",
    "database_engine",
    "database_url",
    "empty_database_url",
    "empty_postgres_url",
    "empty_sqlite_url",
    "postgres_url",
    "sqlite_url",
]

TEST_DATABASE_ENV = "FOLDERTRACK_TEST_DATABASE_URL"
_NO_POSTGRES = f"{TEST_DATABASE_ENV} is not set (PostgreSQL tests need a server)"


@pytest.fixture
def empty_sqlite_url(tmp_path: Path) -> str:
    """A SQLite URL for a database file that does not exist yet."""
    return f"sqlite:///{tmp_path / 'state' / 'foldertrack.db'}"


@pytest.fixture
def sqlite_url(empty_sqlite_url: str) -> str:
    """A SQLite URL with the schema at head."""
    upgrade_database(empty_sqlite_url)
    return empty_sqlite_url


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """A PostgreSQL URL whose ``search_path`` is a new, empty schema; the schema is dropped afterwards."""
    base = os.environ.get(TEST_DATABASE_ENV)
    if not base:
        pytest.skip(_NO_POSTGRES)
    schema = f"ft_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(base, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        url = make_url(base).update_query_dict({"options": f"-csearch_path={schema}"})
        yield url.render_as_string(hide_password=False)
    finally:
        try:
            with admin.connect() as conn:
                conn.execute(text("SET lock_timeout = '10s'"))
                conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        finally:
            admin.dispose()


@pytest.fixture
def postgres_url(empty_postgres_url: str) -> str:
    """A PostgreSQL URL (own schema) with the schema at head."""
    upgrade_database(empty_postgres_url)
    return empty_postgres_url


_BACKENDS = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture(params=_BACKENDS)
def empty_database_url(request: pytest.FixtureRequest) -> str:
    """Each backend in turn, empty (PostgreSQL skips without a server)."""
    return request.getfixturevalue(f"empty_{request.param}_url")


@pytest.fixture(params=_BACKENDS)
def database_url(request: pytest.FixtureRequest) -> str:
    """Each backend in turn, at head (PostgreSQL skips without a server)."""
    return request.getfixturevalue(f"{request.param}_url")


@pytest.fixture
def database_engine(database_url: str) -> Iterator[Engine]:
    """An engine on ``database_url`` (schema at head), disposed after the test."""
    engine = open_database(database_url)
    try:
        yield engine
    finally:
        engine.dispose()
