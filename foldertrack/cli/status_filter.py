"""``foldertrack status --mailbox ADDRESS``: the status report narrowed to one mailbox.

Kept apart from ``status_cmd`` (another helper's module): the report's mailbox entries and dead letters are
filtered, the per-mailbox totals recomputed; every other key (e.g. delivery) is left as it is.
"""

from __future__ import annotations

from typing import Any

from foldertrack.errors import FoldertrackError


def only_mailbox(report: dict[str, Any], address: str) -> dict[str, Any]:
    """``report`` with only ``address``; raises FoldertrackError (exit 1) when the database has no such mailbox."""
    wanted = address.strip().lower()
    boxes = [m for m in report["mailboxes"] if m["mailbox"] == wanted]
    if not boxes:
        known = ", ".join(m["mailbox"] for m in report["mailboxes"]) or "none"
        raise FoldertrackError(f"no mailbox {wanted} in the state database (known: {known})")
    dead = [d for d in report.get("dead_letters", []) if d.get("mailbox") == wanted]
    modes: dict[str, int] = {}
    for m in boxes:
        modes[m["mode"]] = modes.get(m["mode"], 0) + 1
    totals = {
        **report.get("totals", {}),
        "mailboxes": len(boxes),
        "folders": sum(len(m["folders"]) for m in boxes),
        "tracked": sum(m["tracked"] for m in boxes),
        "backlog": sum(m["backlog"] for m in boxes),
        "dead_letters": len(dead),
        "warnings": sum(len(m["warnings"]) for m in boxes),
        "modes": modes,
    }
    return {**report, "mailboxes": boxes, "dead_letters": dead, "totals": totals}
