"""The outbox table: adding entries (inside the sync transaction), finding the due ones, recording outcomes.

Order per mail key is kept by the query, not by locks: an entry is due only when no earlier entry of the
same (sink, mail key) is still pending, so a key whose earlier entry waits for a retry holds its later
entries back while every other key goes on. Each key always maps to the same ``partition_no`` and each
partition to one worker, so one key is never delivered by two threads at once.
"""

from __future__ import annotations

import json
import zlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Connection, and_, delete, func, insert, literal, or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Row

from foldertrack.state.schema import outbox, sink_health
from foldertrack.state.types import utcnow

#: fixed number of partitions; ``delivery.workers`` (≤ this) workers share them
PARTITIONS = 64
#: ``conn.info`` flag: this connection's transaction added outbox entries (wakes the workers at commit)
PENDING_FLAG = "foldertrack.outbox_added"


def partition_of(key: str) -> int:
    """Which partition (and so which worker) delivers ``key``; stable across processes and restarts."""
    return zlib.crc32(key.encode("utf-8", "surrogatepass")) % PARTITIONS


def add(
    conn: Connection, *, sink: str, key: str, op: str, mailbox: str, send: dict[str, bool] | None = None
) -> None:
    """Queue one decision for ``sink``; commits (or not) with the caller's transaction."""
    now = utcnow()
    conn.execute(
        insert(outbox).values(
            sink=sink,
            mail_key=key,
            op=op,
            mailbox=mailbox,
            send_options=json.dumps(send, sort_keys=True) if send is not None else None,
            partition_no=partition_of(key),
            status="pending",
            attempts=0,
            next_attempt_at=now,
            created_at=now,
        )
    )
    conn.info[PENDING_FLAG] = True


def send_options(row: Row) -> dict[str, bool]:
    """The entry's ``send`` options (everything sent when none were stored)."""
    stored = json.loads(row.send_options) if row.send_options else {}
    return {"body": bool(stored.get("body", True)), "attachments": bool(stored.get("attachments", True))}


def _heads(sink: str, partitions: Sequence[int], owner: str | None, now: datetime):
    """Pending entries of ``sink`` in ``partitions`` with no earlier pending entry for the same key, not
    claimed by another instance (``owner`` None: whoever claimed them)."""
    earlier = outbox.alias("earlier")
    blocked = (
        select(literal(1))
        .where(
            earlier.c.sink == outbox.c.sink,
            earlier.c.mail_key == outbox.c.mail_key,
            earlier.c.status == "pending",
            earlier.c.id < outbox.c.id,
        )
        .exists()
    )
    conditions = [
        outbox.c.sink == sink,
        outbox.c.status == "pending",
        outbox.c.partition_no.in_(list(partitions)),
        ~blocked,
    ]
    if owner is not None:
        conditions.append(
            or_(outbox.c.claimed_until.is_(None), outbox.c.claimed_until < now, outbox.c.claimed_by == owner)
        )
    return and_(*conditions)


def due(
    conn: Connection, sink: str, partitions: Sequence[int], limit: int, owner: str | None = None
) -> list[Row]:
    """Entries to deliver now, oldest first (at most one per key: the key's head)."""
    now = utcnow()
    query = (
        select(outbox)
        .where(_heads(sink, partitions, owner, now), outbox.c.next_attempt_at <= now)
        .order_by(outbox.c.id)
        .limit(limit)
    )
    return list(conn.execute(query))


def claim(conn: Connection, ids: Sequence[int], owner: str, until: datetime) -> set[int]:
    """Claim (or extend the claim on) pending entries for ``owner`` until ``until``; returns the ids it
    holds now. An entry another process claimed, whose claim has not run out, is left alone. ``owner`` is
    unique per process (:attr:`DeliveryService.owner`), so two instances never share a claim."""
    if not ids:
        return set()
    now = utcnow()
    conn.execute(
        update(outbox)
        .where(
            outbox.c.id.in_(list(ids)),
            outbox.c.status == "pending",
            or_(
                outbox.c.claimed_until.is_(None),
                outbox.c.claimed_until < now,
                outbox.c.claimed_by == owner,
            ),
        )
        .values(claimed_by=owner, claimed_until=until)
    )
    query = select(outbox.c.id).where(outbox.c.id.in_(list(ids)), outbox.c.claimed_by == owner)
    return set(conn.execute(query).scalars())


def next_due_at(
    conn: Connection, sink: str, partitions: Sequence[int], owner: str | None = None
) -> datetime | None:
    """When the earliest waiting head of these partitions falls due (None: nothing pending)."""
    query = select(func.min(outbox.c.next_attempt_at)).where(_heads(sink, partitions, owner, utcnow()))
    return conn.execute(query).scalar_one_or_none()


def later_delivered(conn: Connection, row: Row) -> bool:
    """A later entry of the same key was delivered already: this one (a replayed dead letter) is stale.
    Only for untrack/delete: an upsert is rebuilt from the mail's current local state, so replaying it
    is never stale (a later delete is caught by the local activity's ``deleted`` mark)."""
    query = select(literal(1)).where(
        outbox.c.sink == row.sink,
        outbox.c.mail_key == row.mail_key,
        outbox.c.status == "delivered",
        outbox.c.id > row.id,
    )
    return row.op != "upsert" and conn.execute(query.limit(1)).first() is not None


def _held(entry_id: int, owner: str | None):
    """The entry is still pending and, when ``owner`` is given, still claimed by it (a lapsed claim that
    another instance took over must not be overwritten by a late mark)."""
    condition = and_(outbox.c.id == entry_id, outbox.c.status == "pending")
    return and_(condition, outbox.c.claimed_by == owner) if owner is not None else condition


def mark_delivered(
    conn: Connection, entry_id: int, attempts: int, note: str | None = None, owner: str | None = None
) -> None:
    conn.execute(
        update(outbox)
        .where(_held(entry_id, owner))
        .values(status="delivered", attempts=attempts, delivered_at=utcnow(), last_error=note)
    )


def settle_earlier_dead(conn: Connection, row: Row) -> int:
    """An upsert was delivered: it carried the mail's whole current state, so the key's earlier dead
    letters are moot (marked delivered, their error kept with a note). Returns how many."""
    query = (
        update(outbox)
        .where(
            outbox.c.sink == row.sink,
            outbox.c.mail_key == row.mail_key,
            outbox.c.status == "dead",
            outbox.c.id < row.id,
        )
        .values(status="delivered", delivered_at=utcnow(), last_error=f"superseded by entry {row.id}")
    )
    return conn.execute(query).rowcount


def mark_retry(
    conn: Connection, entry_id: int, attempts: int, next_at: datetime, error: str, owner: str | None = None
) -> None:
    conn.execute(
        update(outbox)
        .where(_held(entry_id, owner))
        .values(attempts=attempts, next_attempt_at=next_at, last_error=error)
    )


def mark_dead(conn: Connection, entry_id: int, attempts: int, error: str, owner: str | None = None) -> None:
    conn.execute(
        update(outbox)
        .where(_held(entry_id, owner))
        .values(status="dead", attempts=attempts, last_error=error)
    )


def request_replay(conn: Connection, ids: Iterable[int] | None = None) -> int:
    """``foldertrack retry``: dead entries (all, or these ids) become pending again, due now. Their
    idempotency key stays the same. Returns how many."""
    query = update(outbox).where(outbox.c.status == "dead")
    if ids is not None:
        query = query.where(outbox.c.id.in_(list(ids)))
    conn.info[PENDING_FLAG] = True
    values = {"status": "pending", "attempts": 0, "next_attempt_at": utcnow()}
    return conn.execute(query.values(claimed_by=None, claimed_until=None, **values)).rowcount


def claim_owners(conn: Connection, prefix: str, sink: str | None = None) -> list[str]:
    """Owners (``instance@host/pid-nonce``) starting with ``prefix`` that hold pending claims (on ``sink``'s
    entries, or on any)."""
    query = select(outbox.c.claimed_by).where(
        outbox.c.status == "pending", outbox.c.claimed_by.startswith(prefix, autoescape=True)
    )
    if sink is not None:
        query = query.where(outbox.c.sink == sink)
    return sorted(set(conn.execute(query.distinct()).scalars()))


def release_claims(conn: Connection, owner: str, sink: str | None = None) -> int:
    """A stopping instance hands its pending claims (on ``sink``'s entries, or on any) back, so others need
    not wait for them to run out."""
    query = update(outbox).where(outbox.c.claimed_by == owner, outbox.c.status == "pending")
    if sink is not None:
        query = query.where(outbox.c.sink == sink)
    return conn.execute(query.values(claimed_by=None, claimed_until=None)).rowcount


def prune(conn: Connection, before: datetime) -> int:
    """Delete entries delivered before ``before`` (``delivery.retention``); returns how many."""
    query = delete(outbox).where(outbox.c.status == "delivered", outbox.c.delivered_at < before)
    return conn.execute(query).rowcount


# -- per-sink health ---------------------------------------------------------------------------------------


def _ensure_health(conn: Connection, sink: str) -> None:
    """The sink's health row exists; two writers creating it at once do not fail each other's commit."""
    found = conn.execute(select(sink_health.c.sink).where(sink_health.c.sink == sink)).first()
    if found is None:
        values = {"sink": sink, "delivered": 0, "dead": 0, "updated_at": utcnow()}
        dialect = conn.dialect.name
        if dialect in ("postgresql", "sqlite"):
            module = postgresql if dialect == "postgresql" else sqlite
            conn.execute(module.insert(sink_health).values(**values).on_conflict_do_nothing())
        else:
            conn.execute(insert(sink_health).values(**values))


def note_success(conn: Connection, sink: str, delivered: int = 1) -> None:
    """Delivery works: count it, clear ``failing_since``."""
    _ensure_health(conn, sink)
    now = utcnow()
    conn.execute(
        update(sink_health)
        .where(sink_health.c.sink == sink)
        .values(
            last_success_at=now,
            failing_since=None,
            delivered=sink_health.c.delivered + delivered,
            updated_at=now,
        )
    )


def note_failure(
    conn: Connection, sink: str, error: str, *, transient: bool, failing_since: datetime | None
) -> None:
    """Record the last error and ``failing_since`` (set while transient failures last; a rejection means
    the sink answers, so it clears it and counts a dead letter)."""
    _ensure_health(conn, sink)
    now = utcnow()
    values: dict[str, object] = {
        "last_error": error,
        "last_error_at": now,
        "updated_at": now,
        "failing_since": failing_since if transient else None,
    }
    if not transient:
        values["dead"] = sink_health.c.dead + 1
    conn.execute(update(sink_health).where(sink_health.c.sink == sink).values(**values))


# -- what status and metrics show -------------------------------------------------------------------------


@dataclass(frozen=True)
class SinkFigures:
    """One sink's delivery figures, from the database."""

    sink: str
    backlog: int = 0  # pending entries
    oldest_pending_at: datetime | None = None
    dead: int = 0  # entries dead now (replayable)
    delivered_total: int = 0
    dead_total: int = 0
    last_success_at: datetime | None = None
    last_error: str | None = None
    last_error_at: datetime | None = None
    failing_since: datetime | None = None


def figures(conn: Connection) -> dict[str, SinkFigures]:
    """Per sink: backlog, oldest undelivered entry, dead letters, lifetime counts and health."""
    values: dict[str, dict[str, object]] = {}
    pending = conn.execute(
        select(outbox.c.sink, func.count(), func.min(outbox.c.created_at))
        .where(outbox.c.status == "pending")
        .group_by(outbox.c.sink)
    )
    for sink, count, oldest in pending:
        values.setdefault(sink, {}).update(backlog=count, oldest_pending_at=oldest)
    dead = conn.execute(
        select(outbox.c.sink, func.count()).where(outbox.c.status == "dead").group_by(outbox.c.sink)
    )
    for sink, count in dead:
        values.setdefault(sink, {})["dead"] = count
    for row in conn.execute(select(sink_health)):
        values.setdefault(row.sink, {}).update(
            delivered_total=row.delivered,
            dead_total=row.dead,
            last_success_at=row.last_success_at,
            last_error=row.last_error,
            last_error_at=row.last_error_at,
            failing_since=row.failing_since,
        )
    return {sink: SinkFigures(sink, **v) for sink, v in sorted(values.items())}  # type: ignore[arg-type]


def dead_entries(conn: Connection) -> list[Row]:
    """Dead outbox entries, oldest first, for ``status`` (replay with ``foldertrack retry d<ID>``)."""
    return list(conn.execute(select(outbox).where(outbox.c.status == "dead").order_by(outbox.c.id)))
