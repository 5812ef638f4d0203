"""Session settings that keep a frozen writer from blocking a takeover (PostgreSQL).

A writer that passed :func:`~foldertrack.fleet.fence.assert_fenced` holds its lease row ``FOR KEY SHARE``
until its transaction ends, and claimers skip locked rows. A process frozen *inside* such a transaction
(``SIGSTOP``, a stuck VM) would therefore keep its mailbox from ever being claimed. With
``idle_in_transaction_session_timeout`` at a third of the TTL, PostgreSQL ends that session, the lock goes,
the lease expires and a successor claims it; the frozen writer's commit then fails when it wakes.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, event


def guard_sessions(engine: Engine, ttl: float) -> None:
    """Make every new connection of ``engine`` end when idle inside a transaction for ``ttl / 3``.

    Call at start-up: connections already pooled are closed so that every session gets the setting. No-op on
    SQLite, whose single-host lock dies with the process.
    """
    if engine.dialect.name != "postgresql":
        return
    timeout_ms = max(1000, int(ttl * 1000 / 3))

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"SET idle_in_transaction_session_timeout = {timeout_ms}")
        finally:
            cursor.close()
        dbapi_conn.commit()  # psycopg opened a transaction for the SET; the setting outlives it

    engine.dispose()
