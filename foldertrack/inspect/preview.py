"""``rules preview``: what a watcher starting now would track, per folder, without writing anything.

For each folder the rules resolve to: how many mails the first sync would take (all of them with
``backfill: true``, those received within ``backfill_since``, none with ``backfill: false``), the newest
few subjects, and the regarding record. The counts come from ``FindItem`` (Graph: a message list with
``$count``); nothing is fetched in full.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from foldertrack.config import format_duration
from foldertrack.inspect.folders import Resolution
from foldertrack.inspect.reader import MailboxReader
from foldertrack.model import RecordRef

Progress = Callable[[int, int, str], None]


@dataclass(frozen=True)
class FolderPreview:
    """One tracked folder: ``backfill`` is how many mails the first sync takes; ``policy`` says why."""

    mailbox: str
    path: str
    rule: str
    record: str | None
    items: int
    backfill: int
    policy: str
    newest: tuple[str, ...] = field(default=())

    def to_json(self) -> dict[str, Any]:
        return {
            "mailbox": self.mailbox,
            "path": self.path,
            "rule": self.rule,
            "record": self.record,
            "items": self.items,
            "backfill": self.backfill,
            "policy": self.policy,
            "newest": list(self.newest),
        }


def preview(
    resolution: Resolution,
    reader: MailboxReader,
    *,
    sample: int = 3,
    now: datetime | None = None,
    progress: Progress | None = None,
) -> list[FolderPreview]:
    """One preview per target of the mailbox, in path order; ``progress(done, total, path)`` per folder."""
    now = now or datetime.now(UTC)
    address = resolution.mailbox.address
    by_id = resolution.mailbox.by_id()
    out = []
    targets = resolution.targets
    for done, target in enumerate(targets):
        if progress is not None:
            progress(done, len(targets), target.path)
        rule = target.rule
        info = by_id.get(target.folder_id)
        total = info.total if info is not None and info.total is not None else 0
        since = getattr(rule, "backfill_since", None)
        if not getattr(rule, "backfill", True):
            count, newest, policy = 0, [], "backfill: false (only mails moved in from now on)"
        elif since is not None:
            count, items = reader.items(address, target.folder_id, since=now - since, sample=sample)
            newest = [i.subject for i in items]
            policy = f"backfill_since: {format_duration(since)}"
        else:
            count, items = reader.items(address, target.folder_id, sample=sample)
            newest = [i.subject for i in items]
            policy = "backfill: true (every mail in the folder)"
        out.append(
            FolderPreview(
                address,
                target.path,
                target.rule_source,
                _record(target.record),
                total,
                count,
                policy,
                tuple(newest),
            )
        )
    if progress is not None:
        progress(len(targets), len(targets), "")
    return out


def _record(record: RecordRef | None) -> str | None:
    if record is None:
        return None
    return f"{record}" + (f" ({record.name})" if record.name else "")
