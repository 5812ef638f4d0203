"""Who is alive and who owns which mailbox, for ``foldertrack status`` and ``/healthz``; read-only.

Instance ``state``: ``alive`` (heartbeat fresh), ``stale`` (heartbeat stopped without a clean stop: killed,
paused, partitioned; ``stale_since`` is when it went stale) or ``stopped`` (clean stop or taken over).
Mailbox ``state``: ``owned`` (lease valid, owner alive), ``stale`` (its owner died holding it and nobody has
taken it over yet: never report such a mailbox as streaming) or ``free`` (never claimed, or handed back).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Connection, Engine, select

from foldertrack.fleet.clock import db_now
from foldertrack.state.schema import fleet_instances, mailbox_leases


def fleet_status(source: Engine | Connection) -> dict[str, Any]:
    """``{"now", "instances": [...], "mailboxes": {mailbox: {...}}}`` by the database clock."""
    if isinstance(source, Engine):
        with source.connect() as conn:
            return fleet_status(conn)
    conn = source
    now = db_now(conn)
    rows = conn.execute(select(fleet_instances).order_by(fleet_instances.c.started_at)).all()
    lease_rows = conn.execute(
        select(mailbox_leases).where(mailbox_leases.c.owner != "").order_by(mailbox_leases.c.mailbox)
    ).all()
    by_id = {r.id: r for r in rows}
    held: dict[str, int] = {}
    for lease in lease_rows:
        if lease.expires_at > now:
            held[lease.owner] = held.get(lease.owner, 0) + 1

    def state(row: Any) -> str:
        if row.stopped_at is not None:
            return "stopped"
        return "alive" if row.expires_at > now else "stale"

    result_instances = [
        {
            "id": r.id,
            "name": r.name,
            "host": r.host,
            "pid": r.pid,
            "started_at": _iso(r.started_at),
            "heartbeat_at": _iso(r.heartbeat_at),
            "state": state(r),
            "stale_since": _iso(r.expires_at) if state(r) == "stale" else None,
            "stopped_at": _iso(r.stopped_at),
            "stop_reason": r.stop_reason,
            "leases": held.get(r.id, 0),
        }
        for r in rows
    ]
    mailboxes: dict[str, dict[str, Any]] = {}
    for lease in lease_rows:
        owner = by_id.get(lease.owner)
        owner_state = state(owner) if owner is not None else "gone"
        valid = lease.expires_at > now
        if valid and owner_state == "alive":
            lease_state, since = "owned", None
        elif owner_state in ("stale", "gone") and (
            valid or owner is None or lease.expires_at >= owner.expires_at
        ):
            # died holding it (a released lease expires before its owner's heartbeat does)
            lease_state = "stale"
            since = min(lease.expires_at, owner.expires_at) if owner is not None else lease.expires_at
        else:
            lease_state, since = "free", None
        mailboxes[lease.mailbox] = {
            "state": lease_state,
            "owner": lease.owner if lease_state == "owned" else None,
            "last_owner": lease.owner,
            "owner_name": owner.name if owner is not None else None,
            "host": owner.host if owner is not None else None,
            "pid": owner.pid if owner is not None else None,
            "owner_alive": owner_state == "alive",
            "epoch": lease.epoch,
            "acquired_at": _iso(lease.acquired_at),
            "expires_at": _iso(lease.expires_at),
            "stale_since": _iso(since),
        }
    return {"now": _iso(now), "instances": result_instances, "mailboxes": mailboxes}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None
