"""The database clock: every lease and heartbeat time comes from it, never from an instance's own clock."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import Connection, text

from foldertrack.state.types import to_utc, utcnow


def db_now(conn: Connection) -> datetime:
    """The database's current time (PostgreSQL ``clock_timestamp()``). SQLite has no server: the database is
    on this host, so the host clock is the database clock."""
    if conn.dialect.name == "sqlite":
        return utcnow()
    return to_utc(conn.execute(text("SELECT clock_timestamp()")).scalar_one())


def is_sqlite(conn: Connection) -> bool:
    return conn.dialect.name == "sqlite"
