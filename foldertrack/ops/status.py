"""What ``foldertrack status`` shows, read from the state database only, so it works whether or not a
watcher is running (and across several instances sharing one PostgreSQL database)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from foldertrack.state.schema import dead_letters, ledger, subscription_health, tracked_folders


def collect_status(engine: Engine) -> dict[str, Any]:
    """Mailboxes with mode, times, counts, dead letters and drift warnings; plus totals."""
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
    mailboxes: dict[str, dict[str, Any]] = {}
    for name in sorted(set(health) | {f.mailbox for f in folders}):
        row = health.get(name)
        mailboxes[name] = {
            "mailbox": name,
            "mode": row.mode if row else "unknown",
            "instance": row.instance if row else None,
            "last_event_at": _iso(row.last_event_at) if row else None,
            "last_sync_at": _iso(row.last_sync_at) if row else None,
            "last_error": row.last_error if row else None,
            "folders": [],
            "tracked": 0,
            "dead_letters": 0,
            "retrying": 0,
            "warnings": [],
        }
    for f in folders:
        box = mailboxes[f.mailbox]
        if f.status == "retired":
            continue
        tracked = counts.get((f.mailbox, f.folder_id), 0)
        box["tracked"] += tracked
        box["folders"].append(
            {
                "path": f.current_path,
                "configured_path": f.configured_path,
                "status": f.status,
                "rule": f.rule_source,
                "tracked": tracked,
                "last_sync_at": _iso(f.last_sync_at),
            }
        )
        if f.status == "stale_path":
            box["warnings"].append(
                f"{f.rule_source}: folder {f.configured_path!r} was renamed or moved to "
                f"{f.current_path!r}; tracking follows it, update the rule"
            )
        elif f.status == "deleted":
            box["warnings"].append(
                f"{f.rule_source}: folder {f.configured_path!r} was deleted; rule is broken "
                "(its activities are kept)"
            )
    dead_list = []
    for d in dead:
        box = mailboxes.setdefault(
            d.mailbox,
            {
                "mailbox": d.mailbox,
                "mode": "unknown",
                "folders": [],
                "tracked": 0,
                "dead_letters": 0,
                "retrying": 0,
                "warnings": [],
            },
        )
        box["dead_letters" if d.status == "dead" else "retrying"] += 1
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
    values = list(mailboxes.values())
    return {
        "mailboxes": values,
        "dead_letters": dead_list,
        "totals": {
            "mailboxes": len(values),
            "folders": sum(len(m["folders"]) for m in values),
            "tracked": sum(m["tracked"] for m in values),
            "dead_letters": len(dead_list),
            "modes": _modes(values),
        },
    }


def _modes(values: list[dict[str, Any]]) -> dict[str, int]:
    modes: dict[str, int] = {}
    for m in values:
        modes[m["mode"]] = modes.get(m["mode"], 0) + 1
    return modes


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None
