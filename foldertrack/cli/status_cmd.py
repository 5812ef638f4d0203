"""``foldertrack status``: each mailbox and folder, mode, times, counts, backlog, dead letters and drift."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import PurePath
from typing import Any

import click

from foldertrack.cli.db_options import database_options, open_command_database
from foldertrack.ops.status import collect_status


@click.command()
@database_options
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output (stable keys).")
@click.option("--mailbox", metavar="ADDRESS", help="Only this mailbox.")
def status(config_path: str | None, database_url: str | None, as_json: bool, mailbox: str | None) -> None:
    """Show what the watcher is doing (read from the state database; works while it runs or not)."""
    engine = open_command_database(config_path, database_url)
    try:
        report = collect_status(engine)
    finally:
        engine.dispose()
    if mailbox:  # H7: foldertrack/cli/status_filter.py
        from foldertrack.cli.status_filter import only_mailbox

        report = only_mailbox(report, mailbox)
    if as_json:
        click.echo(json.dumps(report, indent=2))
        return
    for line in render_text(report, now=datetime.now(UTC)):
        click.echo(line)


def render_text(report: dict[str, Any], now: datetime) -> list[str]:
    """The report as readable lines: a summary, then one block (settings and a folder table) per mailbox."""
    totals = report["totals"]
    modes = ", ".join(f"{n} {mode}" for mode, n in sorted(totals["modes"].items())) or "none"
    lines = [
        f"{totals['mailboxes']} mailbox(es), {totals['folders']} folder(s): {modes}; "
        f"{totals['tracked']} tracked, backlog {totals['backlog']}, "
        f"{totals['dead_letters']} dead letter(s), {totals['warnings']} warning(s)"
    ]
    if report.get("sinks"):
        lines[0] += (
            f"; outbox {totals.get('outbox_backlog', 0)} pending, "
            f"{totals.get('delivery_dead_letters', 0)} delivery dead letter(s)"
        )
    for inst in report.get("instances", []):
        for warning in inst["warnings"]:  # loud: the watcher runs on rules that are not the ones on disk
            lines += [
                "",
                f"WARNING ({inst['name']}): {warning['message']} (since {_when(warning['since'], now)})",
            ]
    if report.get("instances"):
        lines += ["", "instances"]
        rows = [
            (
                i["name"],
                i["host"] or "-",
                str(i["pid"] or "-"),
                i["state"] + (f" since {_when(i['stale_since'], now)}" if i.get("stale_since") else ""),
                _when(i["started_at"], now),
                _when(i["heartbeat_at"], now),
                str(i["leases"]),
            )
            for i in report["instances"]
        ]
        lines += _table(
            ("NAME", "HOST", "PID", "STATE", "STARTED", "HEARTBEAT", "LEASES"), rows, right={2, 6}
        )
    for sink in report.get("sinks", []):
        lines += ["", f"sink {sink['sink']}", *_fields(_sink_fields(sink, now))]
    for box in report["mailboxes"]:
        lines += ["", box["mailbox"]]
        lines += _fields(
            [
                ("mode", _mode(box, now)),
                ("last event", _when(box["last_event_at"], now)),
                ("last sync", _when(box["last_sync_at"], now)),
                (
                    "tracked",
                    f"{box['tracked']}   backlog {box['backlog']}   dead letters {box['dead_letters']}"
                    f"   retrying {box['retrying']}",
                ),
            ]
            + ([("last error", box["last_error"])] if box.get("last_error") else [])
            + ([("feedback", _feedback(box["feedback"]))] if box.get("feedback") else [])
        )
        if box["folders"]:
            rows = [
                (
                    f["path"],
                    f["status"],
                    str(f["tracked"]),
                    _backfill(f.get("backfill")),
                    _when(f["last_sync_at"], now),
                    _short(f["rule"]),
                )
                for f in box["folders"]
            ]
            lines += _table(("FOLDER", "STATUS", "TRACKED", "BACKFILL", "LAST SYNC", "RULE"), rows, right={2})
        for warning in box["warnings"]:
            lines.append(f"  warning: {_short(warning['rule'])}: {warning['message']} [{warning['kind']}]")
    if report["dead_letters"]:
        lines += ["", "dead letters (replay with `foldertrack retry`):"]
        for d in report["dead_letters"]:
            lines.append(
                f"  #{d['id']} {d['mailbox']} {d['subject'] or '(no subject)'}: {d['error']} "
                f"({d['attempts']} attempts)"
            )
    if report.get("collisions"):
        lines += [
            "",
            "Message-ID collisions (a different mail reused a tracked mail's Message-ID; not tracked):",
        ]
        for c in report["collisions"]:
            lines.append(
                f"  {c['mailbox']} {c.get('subject') or '(no subject)'} from {c.get('sender') or '?'} "
                f"({_when(c.get('at'), now)})"
            )
    if report.get("delivery_dead_letters"):
        lines += [
            "",
            "delivery dead letters (replay with `foldertrack retry d<ID>`, or all with `foldertrack retry`):",
        ]
        for d in report["delivery_dead_letters"]:
            lines.append(
                f"  {d['id']} {d['mailbox']} {d['subject'] or '(no subject)'} ({d['op']} to {d['sink']}): "
                f"{d['error']} ({d['attempts']} attempts)"
            )
    return lines


def _feedback(feedback: dict[str, Any]) -> str:
    """``on: 12 confirmed, 1 failed`` or ``unavailable: ErrorAccessDenied …`` (categories in the mailbox)."""
    counts = f"{feedback['confirmed']} confirmed, {feedback['failed']} failed, {feedback['errors']} error(s)"
    if not feedback["available"]:
        return f"unavailable: {feedback['reason'] or 'no write rights'} ({counts})"
    return f"on: {counts}"


def _mode(box: dict[str, Any], now: datetime) -> str:
    """``streaming (instance a)``; ``stale since … (instance a stopped heartbeating)``."""
    instance = f" (instance {box['instance']})" if box.get("instance") else ""
    if box["mode"] == "stale":
        return f"stale since {_when(box.get('stale_since'), now)}: its watcher{instance} stopped heartbeating"
    return box["mode"] + instance


def _backfill(backfill: dict[str, Any] | None) -> str:
    """``done``, ``running 120/500`` or ``running 120 so far``."""
    if not backfill or backfill["state"] == "done":
        return "done"
    total = backfill.get("total")
    return f"running {backfill['tracked']}/{total}" if total else f"running {backfill['tracked']} so far"


def _sink_fields(sink: dict[str, Any], now: datetime) -> list[tuple[str, str]]:
    oldest = f" (oldest {_when(sink['oldest_pending_at'], now)})" if sink["oldest_pending_at"] else ""
    pairs = [
        ("outbox", f"{sink['backlog']} pending{oldest}"),
        (
            "delivered",
            f"{sink['delivered']}   dead letters {sink['dead_letters']}   rejected {sink['rejected']}",
        ),
        ("last success", _when(sink["last_success_at"], now)),
    ]
    if sink["failing_since"]:
        pairs.append(("failing since", _when(sink["failing_since"], now)))
    if sink["last_error"]:
        pairs.append(("last error", f"{sink['last_error']} ({_when(sink['last_error_at'], now)})"))
    return pairs


def _short(rule: str) -> str:
    """``/etc/foldertrack/rules/sales.yaml:12`` → ``sales.yaml:12`` (``--json`` keeps the whole path)."""
    return PurePath(rule).name or rule


def _fields(pairs: list[tuple[str, str]]) -> list[str]:
    width = max(len(name) for name, _ in pairs)
    return [f"  {name:<{width}}  {value}" for name, value in pairs]


def _table(header: tuple[str, ...], rows: list[tuple[str, ...]], right: set[int]) -> list[str]:
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]

    def line(cells: tuple[str, ...]) -> str:
        parts = [
            f"{cell:>{widths[i]}}" if i in right else f"{cell:<{widths[i]}}" for i, cell in enumerate(cells)
        ]
        return ("  " + "  ".join(parts)).rstrip()

    return [line(header)] + [line(r) for r in rows]


def _when(iso: str | None, now: datetime) -> str:
    """``2026-11-22 04:19:49Z (12s ago)``, or ``-``."""
    if not iso:
        return "-"
    when = datetime.fromisoformat(iso)
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    when = when.astimezone(UTC)
    return f"{when:%Y-%m-%d %H:%M:%S}Z ({_ago((now - when).total_seconds())})"


def _ago(seconds: float) -> str:
    if seconds < 0:
        return "just now"
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"
