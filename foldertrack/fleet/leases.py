"""The lease operations on ``mailbox_leases``: one function per statement, all timed by the database clock.

A lease is held while ``expires_at`` is ahead of the database clock. A free lease keeps its last ``owner``
and ``epoch``; claiming bumps the epoch (the fencing token). Claims lock candidate rows with
``FOR UPDATE SKIP LOCKED`` first, so concurrent claimers split the free rows instead of queueing on them,
and a row a writer holds ``FOR KEY SHARE`` (:func:`foldertrack.fleet.fence.assert_fenced`) is left alone
until that writer commits.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import ColumnElement, Connection, String, any_, bindparam, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.dialects.postgresql import ARRAY

from foldertrack.state.schema import mailbox_leases as leases

NEVER = datetime(1970, 1, 1, tzinfo=UTC)  # expiry of a lease never claimed
_CHUNK = 1000


def _chunks(values: Iterable[str]) -> Iterator[list[str]]:
    batch: list[str] = []
    for value in values:
        batch.append(value)
        if len(batch) == _CHUNK:
            yield batch
            batch = []
    if batch:
        yield batch


def _one_of(conn: Connection, names: Collection[str]) -> ColumnElement[bool]:
    """``mailbox IN names``: one array parameter on PostgreSQL (ten thousand names stay one bind)."""
    if conn.dialect.name == "postgresql":
        return leases.c.mailbox == any_(bindparam("names", list(names), type_=ARRAY(String)))
    return leases.c.mailbox.in_(list(names))


def ensure_rows(conn: Connection, mailboxes: Iterable[str]) -> None:
    """Create a free lease row for every mailbox that has none."""
    dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
    for batch in _chunks(sorted(set(mailboxes))):
        rows = [{"mailbox": m, "owner": "", "expires_at": NEVER, "heartbeat_at": NEVER} for m in batch]
        conn.execute(dialect.insert(leases).values(rows).on_conflict_do_nothing(index_elements=["mailbox"]))


def renew(conn: Connection, owner: str, now: datetime, ttl: float) -> dict[str, int]:
    """Extend every unexpired lease of ``owner`` to ``now + ttl``; returns them as ``{mailbox: epoch}``."""
    result = conn.execute(
        update(leases)
        .where(leases.c.owner == owner, leases.c.expires_at > now)
        .values(expires_at=now + timedelta(seconds=ttl), heartbeat_at=now)
        .returning(leases.c.mailbox, leases.c.epoch)
    )
    return {row.mailbox: row.epoch for row in result}


def claim(
    conn: Connection, owner: str, wanted: Collection[str], limit: int, now: datetime, ttl: float
) -> dict[str, int]:
    """Take up to ``limit`` free or expired leases among ``wanted``; returns ``{mailbox: new epoch}``."""
    if limit <= 0 or not wanted:
        return {}
    free = conn.execute(
        select(leases.c.mailbox)
        .where(_one_of(conn, wanted), leases.c.expires_at <= now)
        .order_by(leases.c.expires_at, leases.c.mailbox)
        .limit(limit)
        .with_for_update(skip_locked=True)
    ).scalars()
    names = list(free)
    if not names:
        return {}
    result = conn.execute(
        update(leases)
        .where(_one_of(conn, names), leases.c.expires_at <= now)
        .values(
            owner=owner,
            epoch=leases.c.epoch + 1,
            expires_at=now + timedelta(seconds=ttl),
            heartbeat_at=now,
            acquired_at=now,
        )
        .returning(leases.c.mailbox, leases.c.epoch)
    )
    return {row.mailbox: row.epoch for row in result}


def release(conn: Connection, owner: str, mailboxes: Collection[str], now: datetime) -> int:
    """Free ``owner``'s leases on ``mailboxes`` at once (expiry = now); returns how many were held."""
    count = 0
    for batch in _chunks(mailboxes):
        count += conn.execute(
            update(leases)
            .where(leases.c.owner == owner, _one_of(conn, batch), leases.c.expires_at > now)
            .values(expires_at=now)
        ).rowcount
    return count


def release_all(conn: Connection, owner: str, now: datetime) -> int:
    """Free every lease ``owner`` holds (clean stop)."""
    return conn.execute(
        update(leases).where(leases.c.owner == owner, leases.c.expires_at > now).values(expires_at=now)
    ).rowcount
