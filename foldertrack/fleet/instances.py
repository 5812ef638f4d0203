"""Watcher instances: register, heartbeat by the database clock, stop; one live watcher per SQLite database.

An instance is alive while its heartbeat is fresh (``expires_at`` ahead of the database clock) and it has not
stopped. The lease TTL is also the heartbeat TTL, so an instance's leases and its liveness end together.
"""

from __future__ import annotations

import os
import socket
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy import Connection, func, insert, select, update

from foldertrack.errors import InstanceConflictError
from foldertrack.state.schema import fleet_instances, mailbox_leases


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")[:64]  # e.g. "pid:[4026531836]": differs per container
    except OSError:
        return ""


@dataclass(frozen=True)
class InstanceIdentity:
    """Who this process is: ``id`` is unique per process start; ``name`` is the configured instance name."""

    name: str
    host: str = field(default_factory=socket.gethostname)
    pid: int = field(default_factory=os.getpid)
    pid_namespace: str = field(default_factory=_pid_namespace)
    id: str = field(default_factory=lambda: uuid.uuid4().hex)

    def can_see(self, host: str, pid_namespace: str | None) -> bool:
        """Whether a process of that host and pid namespace can be checked from here by its pid."""
        return host == self.host and bool(pid_namespace) and pid_namespace == self.pid_namespace

    def describe(self) -> str:
        return f"{self.name} (host {self.host}, pid {self.pid})"


def register(conn: Connection, me: InstanceIdentity, now: datetime, ttl: float) -> None:
    """Insert this instance's row, alive for ``ttl`` seconds from ``now``."""
    conn.execute(
        insert(fleet_instances).values(
            id=me.id,
            name=me.name,
            host=me.host,
            pid=me.pid,
            pid_namespace=me.pid_namespace or None,
            started_at=now,
            heartbeat_at=now,
            expires_at=now + timedelta(seconds=ttl),
        )
    )


def heartbeat(conn: Connection, me: InstanceIdentity, now: datetime, ttl: float) -> bool:
    """Refresh the heartbeat; False when the instance was marked stopped by someone else (taken over).

    A row that vanished (pruned while this process was paused for a long time) is registered again.
    """
    done = conn.execute(
        update(fleet_instances)
        .where(fleet_instances.c.id == me.id, fleet_instances.c.stopped_at.is_(None))
        .values(heartbeat_at=now, expires_at=now + timedelta(seconds=ttl))
    )
    if done.rowcount == 1:
        return True
    if conn.execute(select(fleet_instances.c.id).where(fleet_instances.c.id == me.id)).first():
        return False
    register(conn, me, now, ttl)
    return True


def mark_stopped(conn: Connection, instance_id: str, now: datetime, reason: str) -> None:
    conn.execute(
        update(fleet_instances)
        .where(fleet_instances.c.id == instance_id, fleet_instances.c.stopped_at.is_(None))
        .values(stopped_at=now, stop_reason=reason[:400])
    )


def live_count(conn: Connection, now: datetime) -> int:
    """Instances alive by the database clock."""
    return conn.execute(
        select(func.count())
        .select_from(fleet_instances)
        .where(fleet_instances.c.stopped_at.is_(None), fleet_instances.c.expires_at > now)
    ).scalar_one()


def prune(conn: Connection, now: datetime, keep: timedelta) -> int:
    """Forget instances stopped or stale for longer than ``keep`` (status shows them until then)."""
    old = now - keep
    return conn.execute(
        fleet_instances.delete().where(
            fleet_instances.c.expires_at < old,
            (fleet_instances.c.stopped_at.is_(None)) | (fleet_instances.c.stopped_at < old),
        )
    ).rowcount


def claim_database(conn: Connection, me: InstanceIdentity, now: datetime, ttl: float, database: str) -> None:
    """SQLite: register as the database's only watcher, taking over from dead ones.

    Another instance is dead when its heartbeat is stale, or when it ran on this host and its process is
    gone; its leases are expired at once (their next claim bumps the epochs, fencing its late writes). A live
    one makes this raise :class:`InstanceConflictError` naming the database file and that instance. Run in
    a ``BEGIN IMMEDIATE`` transaction, so two starting watchers cannot both pass.
    """
    others = conn.execute(
        select(fleet_instances).where(fleet_instances.c.stopped_at.is_(None), fleet_instances.c.id != me.id)
    ).all()
    for other in others:
        if other.expires_at > now and (
            not me.can_see(other.host, other.pid_namespace) or pid_running(other.pid)
        ):
            age = (now - other.heartbeat_at).total_seconds()
            raise InstanceConflictError(
                f"another foldertrack watcher is running on the database {database}: instance "
                f"{other.name} on host {other.host}, pid {other.pid} (last heartbeat {age:.0f}s ago). "
                "A SQLite database takes one watcher: stop that one first, or use PostgreSQL to run several."
            )
        why = "heartbeat stale" if other.expires_at <= now else "process gone"
        _retire(conn, other.id, now, f"taken over by {me.describe()}: {why}")
    register(conn, me, now, ttl)


def reap_dead_on_this_host(conn: Connection, me: InstanceIdentity, now: datetime) -> list[str]:
    """Instances that ran on this host (same pid namespace) and whose process is gone: stopped, their
    leases expired at once, so a watcher restarted after ``kill -9`` gets its mailboxes back in seconds
    instead of a TTL. Returns their names."""
    rows = conn.execute(
        select(fleet_instances).where(
            fleet_instances.c.stopped_at.is_(None),
            fleet_instances.c.host == me.host,
            fleet_instances.c.id != me.id,
        )
    ).all()
    reaped = []
    for row in rows:
        if me.can_see(row.host, row.pid_namespace) and not pid_running(row.pid):
            _retire(conn, row.id, now, f"process gone (seen by {me.describe()})")
            reaped.append(row.name)
    return reaped


def _retire(conn: Connection, instance_id: str, now: datetime, reason: str) -> None:
    mark_stopped(conn, instance_id, now, reason)
    conn.execute(
        update(mailbox_leases)
        .where(mailbox_leases.c.owner == instance_id, mailbox_leases.c.expires_at > now)
        .values(expires_at=now)
    )


def pid_running(pid: int) -> bool:
    """Whether a process ``pid`` exists on this host and is not a zombie."""
    if pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed child its parent has not reaped yet is gone for our purposes
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[-1].split()[0] not in ("Z", "X")
