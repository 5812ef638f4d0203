"""Opening the state database: schema checks, SQLite settings, errors that never show a password."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from sqlalchemy import insert, make_url, select, text

from foldertrack.errors import ConfigError, DatabaseError, SchemaOutOfDateError
from foldertrack.state.database import (
    SQLITE_BEGIN_OPTION,
    head_revision,
    mask_url,
    open_database,
    upgrade_database,
)
from foldertrack.state.schema import mailbox_leases


def test_empty_database_is_refused_with_the_fix(empty_database_url):
    with pytest.raises(SchemaOutOfDateError) as caught:
        open_database(empty_database_url)

    message = str(caught.value)
    assert f"this foldertrack needs {head_revision()}" in message
    assert "run `foldertrack db upgrade`" in message
    assert caught.value.exit_code == 78


def test_unknown_newer_revision_says_to_upgrade_foldertrack(database_url):
    engine = open_database(database_url)
    with engine.begin() as conn:
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()

    with pytest.raises(SchemaOutOfDateError, match="newer than this foldertrack"):
        open_database(database_url)
    with pytest.raises(SchemaOutOfDateError, match="newer than this foldertrack"):
        upgrade_database(database_url)


def test_sqlite_creates_directory_and_uses_wal_and_foreign_keys(tmp_path: Path):
    url = f"sqlite:///{tmp_path / 'a' / 'b' / 'state.db'}"
    upgrade_database(url)
    engine = open_database(url)
    try:
        with engine.connect() as conn:
            assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
            assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
            assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
    finally:
        engine.dispose()
    assert (tmp_path / "a" / "b" / "state.db").exists()


def test_times_come_back_aware_utc(database_engine):
    local = datetime(2026, 3, 1, 12, 30, 15, 123456, tzinfo=timezone(timedelta(hours=2)))
    with database_engine.begin() as conn:
        conn.execute(insert(mailbox_leases).values(mailbox="a@x", owner="i1", expires_at=local))
    with database_engine.connect() as conn:
        stored = conn.execute(select(mailbox_leases.c.expires_at, mailbox_leases.c.heartbeat_at)).one()

    assert stored.expires_at == local
    assert stored.expires_at.tzinfo is UTC or stored.expires_at.utcoffset() == timedelta(0)
    assert stored.heartbeat_at.utcoffset() == timedelta(0)


def test_naive_times_are_refused(database_engine):
    with pytest.raises(Exception, match="naive datetime"), database_engine.begin() as conn:
        conn.execute(
            insert(mailbox_leases).values(mailbox="a@x", owner="i1", expires_at=datetime(2026, 1, 1))
        )


def test_unreachable_server_is_a_database_error_without_the_password():
    url = "postgresql+psycopg://user:s3cret-pw@127.0.0.1:1/nowhere"

    with pytest.raises(DatabaseError) as caught:
        open_database(url)

    assert "s3cret-pw" not in str(caught.value)
    assert "postgresql+psycopg://user:***@127.0.0.1:1/nowhere" in str(caught.value)
    assert caught.value.exit_code == 75


def test_invalid_url_is_a_config_error_that_does_not_echo_it():
    with pytest.raises(ConfigError) as caught:
        open_database("not a url with s3cret")
    assert "s3cret" not in str(caught.value)


def test_mask_url_hides_the_password():
    assert mask_url("postgresql+psycopg://u:p%40ss@h/db") == "postgresql+psycopg://u:***@h/db"
    assert mask_url("sqlite:////var/lib/x.db") == "sqlite:////var/lib/x.db"


def test_sqlite_begin_immediate_takes_the_write_lock_at_begin(sqlite_url):
    engine = open_database(sqlite_url)
    path = make_url(sqlite_url).database
    try:
        with engine.connect().execution_options(**{SQLITE_BEGIN_OPTION: "immediate"}) as conn, conn.begin():
            conn.execute(select(mailbox_leases.c.mailbox)).all()  # a read only, yet the lock is held
            other = sqlite3.connect(path, timeout=0.05, isolation_level=None)
            try:
                with pytest.raises(sqlite3.OperationalError, match="locked"):
                    other.execute("BEGIN IMMEDIATE")
            finally:
                other.close()
    finally:
        engine.dispose()
