"""``foldertrack conflicts``: mails filed to different records from different mailboxes, with the policy
that decided (``first_wins`` keeps the first mailbox's record, ``last_wins`` takes the newest)."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, select

from foldertrack.state.schema import activities, activity_links, conflicts, tracked_folders


@dataclass(frozen=True)
class Conflict:
    """One recorded conflict: ``mailbox`` filed the mail in ``folder``; ``kept`` is the regarding record
    the policy kept, ``other`` the one it did not; ``current`` is the activity's regarding now."""

    id: int
    key: str
    subject: str | None
    mailbox: str
    folder: str
    policy: str
    kept: str | None
    other: str | None
    current: str | None
    owner: str | None
    at: datetime

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["at"] = self.at.isoformat()
        return out


def list_conflicts(engine: Engine, *, mailbox: str | None = None, limit: int | None = None) -> list[Conflict]:
    """Newest first; ``mailbox`` keeps the conflicts that mailbox took part in (as filer or owner)."""
    query = (
        select(
            conflicts,
            activities.c.subject,
            activity_links.c.owner_mailbox,
            activity_links.c.regarding_type,
            activity_links.c.regarding_id,
            tracked_folders.c.current_path,
        )
        .select_from(
            conflicts.outerjoin(activities, activities.c.key == conflicts.c.activity_key)
            .outerjoin(activity_links, activity_links.c.activity_key == conflicts.c.activity_key)
            .outerjoin(
                tracked_folders,
                (tracked_folders.c.mailbox == conflicts.c.mailbox)
                & (tracked_folders.c.folder_id == conflicts.c.folder_id),
            )
        )
        .order_by(conflicts.c.at.desc(), conflicts.c.id.desc())
    )
    if mailbox:
        address = mailbox.strip().lower()
        query = query.where((conflicts.c.mailbox == address) | (activity_links.c.owner_mailbox == address))
    if limit is not None:
        query = query.limit(limit)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    return [
        Conflict(
            id=r["id"],
            key=r["activity_key"],
            subject=r["subject"],
            mailbox=r["mailbox"],
            folder=r["current_path"] or f"(folder {r['folder_id'][:12]}…)",
            policy=r["policy"],
            kept=r["kept_regarding"],
            other=r["other_regarding"],
            current=f"{r['regarding_type']}:{r['regarding_id']}" if r["regarding_type"] else None,
            owner=r["owner_mailbox"],
            at=r["at"],
        )
        for r in rows
    ]
