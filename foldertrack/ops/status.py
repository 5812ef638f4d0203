"""What ``foldertrack status`` shows, read from the state database only, so it works whether or not a
watcher is running (and across several instances sharing one PostgreSQL database).

The report is plain data with stable keys (``--json`` prints it as it is):

- ``mailboxes``: one entry per mailbox with ``mode``, ``instance``, ``stale_since``, ``last_event_at``,
  ``last_sync_at``, ``last_error``, ``backlog``, ``tracked``, ``dead_letters``, ``retrying``, ``folders``
  (``path``, ``configured_path``, ``status``, ``rule``, ``tracked``, ``last_sync_at``, ``backfill``:
  ``state`` done/running, ``tracked`` so far, ``total`` when known) and ``warnings`` (``kind``, ``rule``,
  ``path``, ``message``, ``since``);
- ``instances``: every watcher process sharing the database (``name``, ``host``, ``pid``, ``started_at``,
  ``heartbeat_at``, ``state`` alive/stale/stopped, ``stale_since``, ``leases``, ``warnings``: a refused
  rules reload or a rules directory without rule files, ``kind``/``message``/``since``);
- ``dead_letters``: the dead letters ``foldertrack retry`` can replay;
- ``collisions``: mails that reused a tracked mail's Message-ID with other content (``mailbox``, ``key``,
  ``subject``, ``sender``, ``at``): not tracked, the first content kept (``totals.collisions``);
- ``sinks``: one entry per external sink fed by the delivery outbox (``sink``, ``backlog``,
  ``oldest_pending_at``, ``oldest_pending_seconds``, ``delivered``, ``dead_letters``, ``rejected``,
  ``last_success_at``, ``last_error``, ``last_error_at``, ``failing_since``);
- ``delivery_dead_letters``: outbox entries the sink rejected (``id`` is ``d<entry>``, what
  ``foldertrack retry`` takes), with the CRM's own message;
- ``totals``: counts over all mailboxes (and ``outbox_backlog``, ``delivery_dead_letters``).

Mode is what the writing instance last reported, corrected by the fleet's liveness (:mod:`foldertrack.fleet`):
a mailbox whose owner died (``kill -9``, paused, partitioned) is ``stale`` with ``stale_since``, never
``streaming``; one another live instance holds is never ``stopped`` (``starting`` until that instance
reports); one nobody holds any more is ``stopped``.

Warning kinds: ``stale_path`` (folder renamed or moved; tracking follows it), ``folder_deleted`` (rule
broken; activities kept), ``folder_not_found`` (the rule's folder or pattern parent does not exist),
``no_match`` (a pattern rule matches no folder yet), ``record_not_found`` (a record lookup finds nothing).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, func, select

from foldertrack.delivery import outbox
from foldertrack.delivery.feedback_store import feedback_rows
from foldertrack.fleet import fleet_status
from foldertrack.ops.rules_state import warning_rows
from foldertrack.state.ledger_store import collision_rows
from foldertrack.state.schema import activities, dead_letters, ledger, subscription_health, tracked_folders
from foldertrack.state.types import utcnow
from foldertrack.state.watch_store import rule_issue_rows

#: keys of every mailbox entry, in the order ``--json`` prints them
MAILBOX_KEYS: tuple[str, ...] = (
    "mailbox",
    "mode",
    "instance",
    "stale_since",
    "last_event_at",
    "last_sync_at",
    "last_error",
    "backlog",
    "tracked",
    "dead_letters",
    "retrying",
    "folders",
    "warnings",
)
WARNING_KINDS: tuple[str, ...] = (
    "stale_path",
    "folder_deleted",
    "folder_not_found",
    "no_match",
    "record_not_found",
)


def collect_status(engine: Engine) -> dict[str, Any]:
    """Mailboxes with mode, times, counts, backlog, dead letters and drift warnings; plus totals."""
    with engine.connect() as conn:
        health = {r.mailbox: r for r in conn.execute(select(subscription_health))}
        folders = list(
            conn.execute(
                select(tracked_folders).order_by(tracked_folders.c.mailbox, tracked_folders.c.current_path)
            )
        )
        counts = {
            (r.mailbox, r.folder_id): r.n
            for r in conn.execute(
                select(ledger.c.mailbox, ledger.c.folder_id, func.count().label("n"))
                .where(ledger.c.state == "present")
                .group_by(ledger.c.mailbox, ledger.c.folder_id)
            )
        }
        dead = list(
            conn.execute(
                select(dead_letters)
                .where(dead_letters.c.status.in_(["dead", "retrying"]))
                .order_by(dead_letters.c.id)
            )
        )
        issues = rule_issue_rows(conn)
        collisions = [_collision(c) for c in collision_rows(conn)]  # reused Message-IDs (H5)
        sinks, delivery_dead = _delivery(conn)
        fleet = fleet_status(conn)
        instance_warnings = warning_rows(conn)
        feedback = {r.mailbox: r for r in feedback_rows(conn)}

    mailboxes: dict[str, dict[str, Any]] = {}

    def box(name: str) -> dict[str, Any]:
        if name not in mailboxes:
            row = health.get(name)
            mailboxes[name] = {
                "mailbox": name,
                "mode": row.mode if row else "unknown",
                "instance": row.instance if row else None,
                "stale_since": None,
                "last_event_at": _iso(row.last_event_at) if row else None,
                "last_sync_at": _iso(row.last_sync_at) if row else None,
                "last_error": row.last_error if row else None,
                "backlog": (row.backlog or 0) if row else 0,
                "tracked": 0,
                "dead_letters": 0,
                "retrying": 0,
                "folders": [],
                "warnings": [],
            }
        return mailboxes[name]

    for name in sorted(set(health) | {f.mailbox for f in folders} | {i.mailbox for i in issues}):
        box(name)
    for name, row in feedback.items():  # Outlook categories after the CRM confirms (delivery feedback)
        box(name)["feedback"] = {
            "available": bool(row.available),
            "reason": row.reason,
            "confirmed": row.confirmed,
            "failed": row.failed,
            "errors": row.errors,
            "last_error": row.last_error,
        }
    latest_sync: dict[str, datetime] = {}
    for f in folders:
        if f.status == "retired":
            continue
        entry = box(f.mailbox)
        tracked = counts.get((f.mailbox, f.folder_id), 0)
        entry["tracked"] += tracked
        entry["folders"].append(
            {
                "path": f.current_path,
                "configured_path": f.configured_path,
                "status": f.status,
                "rule": f.rule_source,
                "tracked": tracked,
                "last_sync_at": _iso(f.last_sync_at),
                "backfill": {
                    "state": "done" if f.backfill_done else "running",
                    "tracked": tracked,
                    "total": f.backfill_total,  # items in the folder as its first sync began
                },
            }
        )
        if f.last_sync_at is not None and (
            f.mailbox not in latest_sync or f.last_sync_at > latest_sync[f.mailbox]
        ):
            latest_sync[f.mailbox] = f.last_sync_at
    for name, when in latest_sync.items():
        if mailboxes[name]["last_sync_at"] is None:  # the watcher records sync times per folder
            mailboxes[name]["last_sync_at"] = _iso(when)
    for issue in issues:
        box(issue.mailbox)["warnings"].append(
            _warning(issue.kind, issue.rule_source, issue.path, issue.message, issue.seen_at)
        )
    for f in folders:  # folder drift the watcher recorded before rule issues were stored (or without them)
        if f.status in ("stale_path", "deleted"):
            _add_folder_warning(box(f.mailbox)["warnings"], f)
    for entry in mailboxes.values():
        entry["warnings"].sort(key=lambda w: (*_rule_order(w["rule"]), w["path"].casefold(), w["kind"]))

    dead_list = []
    for d in dead:
        entry = box(d.mailbox)
        entry["dead_letters" if d.status == "dead" else "retrying"] += 1
        if d.status == "dead":
            dead_list.append(
                {
                    "id": d.id,
                    "mailbox": d.mailbox,
                    "subject": d.subject,
                    "error": d.error,
                    "attempts": d.attempts,
                    "last_attempt_at": _iso(d.last_attempt_at),
                }
            )
    for name, entry in mailboxes.items():
        _apply_liveness(entry, fleet["mailboxes"].get(name), health.get(name))
    values = [mailboxes[name] for name in sorted(mailboxes)]
    instances = _instances(fleet, instance_warnings)
    instance_warning_count = sum(len(i["warnings"]) for i in instances)
    return {
        "mailboxes": values,
        "instances": instances,
        "dead_letters": dead_list,
        "collisions": collisions,
        "sinks": sinks,
        "delivery_dead_letters": delivery_dead,
        "totals": {
            "collisions": len(collisions),
            "outbox_backlog": sum(s["backlog"] for s in sinks),
            "delivery_dead_letters": len(delivery_dead),
            "mailboxes": len(values),
            "folders": sum(len(m["folders"]) for m in values),
            "tracked": sum(m["tracked"] for m in values),
            "backlog": sum(m["backlog"] for m in values),
            "dead_letters": len(dead_list),
            "warnings": sum(len(m["warnings"]) for m in values) + instance_warning_count,
            "instance_warnings": instance_warning_count,
            "feedback_unavailable": sum(
                1 for m in values if m.get("feedback") and not m["feedback"]["available"]
            ),
            "backfilling": sum(1 for m in values for f in m["folders"] if f["backfill"]["state"] != "done"),
            "modes": _modes(values),
        },
    }


def _apply_liveness(entry: dict[str, Any], lease: dict[str, Any] | None, row: Any) -> None:
    """Correct what the last writer reported with who holds the mailbox now (no lease: no fleet, kept)."""
    if lease is None:
        return
    owner = lease["owner_name"]
    state = lease["state"]
    if state == "stale":  # its owner died holding it: whatever it wrote last is not happening any more
        entry["mode"] = "stale"
        entry["stale_since"] = lease["stale_since"]
        entry["instance"] = lease["owner_name"] or entry["instance"]
    elif state == "owned":
        if row is None or _written_before(row, lease, owner):  # the previous owner's last word
            entry["mode"] = "starting"  # the new owner has not reported yet
            entry["last_error"] = None
        entry["instance"] = owner or entry["instance"]
    elif entry["mode"] in ("streaming", "polling", "starting"):  # nobody holds it: nothing watches it
        entry["mode"] = "stopped"


def _written_before(row: Any, lease: dict[str, Any], owner: str | None) -> bool:
    """Whether the health row predates the lease's current owner (written by another instance)."""
    if owner and row.instance and row.instance != owner:
        return True
    acquired = lease.get("acquired_at")
    if not acquired or row.updated_at is None:
        return False
    written = row.updated_at if row.updated_at.tzinfo else row.updated_at.replace(tzinfo=UTC)
    claimed = datetime.fromisoformat(acquired)
    return written < (claimed if claimed.tzinfo else claimed.replace(tzinfo=UTC))


def _instances(fleet: dict[str, Any], warnings: list[Any]) -> list[dict[str, Any]]:
    """Watcher processes with their liveness and instance-wide warnings (of live ones only)."""
    by_id: dict[str, list[dict[str, Any]]] = {}
    for w in warnings:
        by_id.setdefault(w.instance, []).append(
            {"kind": w.kind, "message": w.message, "since": _iso(w.since), "instance_name": w.instance_name}
        )
    result = []
    known = set()
    for inst in fleet["instances"]:
        known.add(inst["id"])
        live = inst["state"] == "alive"
        result.append({**inst, "warnings": [_strip(w) for w in by_id.get(inst["id"], [])] if live else []})
    for instance, rows in by_id.items():  # a watcher without leases (tests, tools): keyed by its name
        if instance not in known:
            result.append(
                {
                    "id": instance,
                    "name": rows[0]["instance_name"],
                    "host": None,
                    "pid": None,
                    "started_at": None,
                    "heartbeat_at": None,
                    "state": "unknown",
                    "stale_since": None,
                    "stopped_at": None,
                    "stop_reason": None,
                    "leases": 0,
                    "warnings": [_strip(w) for w in rows],
                }
            )
    return result


def _strip(warning: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in warning.items() if k != "instance_name"}


def _delivery(conn: Connection) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Per external sink: backlog, oldest undelivered age, counts, health; and its dead letters."""
    now = utcnow()
    sinks = [
        {
            "sink": f.sink,
            "backlog": f.backlog,
            "oldest_pending_at": _iso(f.oldest_pending_at),
            "oldest_pending_seconds": round((now - f.oldest_pending_at).total_seconds(), 3)
            if f.oldest_pending_at
            else None,
            "delivered": f.delivered_total,
            "dead_letters": f.dead,
            "rejected": f.dead_total,
            "last_success_at": _iso(f.last_success_at),
            "last_error": f.last_error,
            "last_error_at": _iso(f.last_error_at),
            "failing_since": _iso(f.failing_since),
        }
        for f in outbox.figures(conn).values()
    ]
    rows = outbox.dead_entries(conn)
    keys = list({r.mail_key for r in rows})
    subjects = (
        dict(
            conn.execute(
                select(activities.c.key, activities.c.subject).where(activities.c.key.in_(keys))
            ).all()
        )
        if keys
        else {}
    )
    dead = [
        {
            "id": f"d{r.id}",
            "sink": r.sink,
            "mailbox": r.mailbox,
            "op": r.op,
            "subject": subjects.get(r.mail_key),
            "error": r.last_error,
            "attempts": r.attempts,
            "created_at": _iso(r.created_at),
        }
        for r in rows
    ]
    return sinks, dead


def _collision(row: Any) -> dict[str, Any]:
    """A mail that reused a tracked mail's Message-ID with other content: not tracked, the first kept."""
    return {
        "mailbox": row.mailbox,
        "key": row.activity_key,
        "subject": row.subject,
        "sender": row.sender,
        "at": _iso(row.at),
    }


def _warning(kind: str, rule: str, path: str, message: str, since: datetime | None) -> dict[str, Any]:
    return {"kind": kind, "rule": rule, "path": path, "message": message, "since": _iso(since)}


def _add_folder_warning(warnings: list[dict[str, Any]], f: Any) -> None:
    kind = "stale_path" if f.status == "stale_path" else "folder_deleted"
    if any(w["kind"] == kind and w["path"] == f.configured_path for w in warnings):
        return
    if kind == "stale_path":
        message = (
            f"folder {f.configured_path!r} is now {f.current_path!r}; tracking follows it, update the rule"
        )
    else:
        message = f"folder {f.configured_path!r} was deleted: the rule is broken (its activities are kept)"
    warnings.append(_warning(kind, f.rule_source, f.configured_path, message, f.updated_at))


def _rule_order(rule: str) -> tuple[str, int]:
    """``file:line`` sorts by file, then by line as a number."""
    source, _, line = rule.rpartition(":")
    return (source, int(line)) if line.isdigit() else (rule, 0)


def _modes(values: list[dict[str, Any]]) -> dict[str, int]:
    modes: dict[str, int] = {}
    for m in values:
        modes[m["mode"]] = modes.get(m["mode"], 0) + 1
    return modes


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
