"""Reading the SQL sink's activities back, for ``foldertrack activities`` and tests."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, func, select

from foldertrack.model import RecordRef
from foldertrack.state.schema import activities, activity_attachments, activity_parties


@dataclass(frozen=True)
class ActivityRow:
    """One stored activity with its parties and attachment metadata (never attachment content)."""

    key: str
    message_id: str | None
    conversation_id: str | None
    subject: str | None
    sender: str | None
    direction: str
    sent_at: datetime | None
    received_at: datetime | None
    mailbox: str
    folder_id: str
    folder: str
    regarding_type: str | None
    regarding_id: str | None
    regarding_name: str | None
    state: str
    tracked_at: datetime
    updated_at: datetime
    parties: tuple[dict[str, Any], ...] = field(default=())
    attachments: tuple[dict[str, Any], ...] = field(default=())

    @property
    def regarding(self) -> str:
        return f"{self.regarding_type}:{self.regarding_id}" if self.regarding_type else ""

    def to_json(self) -> dict[str, Any]:
        """Plain JSON values; times as ISO 8601 UTC."""
        out: dict[str, Any] = {}
        for name in self.__dataclass_fields__:
            value = getattr(self, name)
            out[name] = value.isoformat() if isinstance(value, datetime) else value
        out["parties"] = [dict(p) for p in self.parties]
        out["attachments"] = [dict(a) for a in self.attachments]
        return out


def _filtered(query, record: RecordRef | None, mailbox: str | None):
    if record is not None:
        query = query.where(
            activities.c.regarding_type == record.type, activities.c.regarding_id == record.id
        )
    if mailbox is not None:
        query = query.where(activities.c.mailbox == mailbox.strip().lower())
    return query


def count_activities(engine: Engine, *, record: RecordRef | None = None, mailbox: str | None = None) -> int:
    """How many activities ``list_activities`` with the same filters would return without a limit."""
    query = _filtered(select(func.count()).select_from(activities), record, mailbox)
    with engine.connect() as conn:
        return conn.execute(query).scalar_one()


def list_activities(
    engine: Engine,
    *,
    record: RecordRef | None = None,
    mailbox: str | None = None,
    limit: int | None = None,
    offset: int = 0,
) -> list[ActivityRow]:
    """Activities, newest tracked first, optionally regarding one record and/or from one mailbox;
    ``offset`` skips that many (paging)."""
    query = select(activities).order_by(activities.c.tracked_at.desc(), activities.c.key)
    query = _filtered(query, record, mailbox)
    if limit is not None:
        query = query.limit(limit)
    if offset:
        query = query.offset(offset)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
        keys = [r["key"] for r in rows]
        parties: dict[str, list[dict[str, Any]]] = {}
        attachments: dict[str, list[dict[str, Any]]] = {}
        for start in range(0, len(keys), 500):
            chunk = keys[start : start + 500]
            party_query = (
                select(activity_parties)
                .where(activity_parties.c.activity_key.in_(chunk))
                .order_by(activity_parties.c.activity_key, activity_parties.c.position)
            )
            for p in conn.execute(party_query).mappings():
                record_ref = f"{p['record_type']}:{p['record_id']}" if p["record_type"] else None
                parties.setdefault(p["activity_key"], []).append(
                    {"role": p["role"], "address": p["address"], "name": p["name"], "record": record_ref}
                )
            attachment_query = (
                select(
                    *(
                        activity_attachments.c[c]
                        for c in ("activity_key", "name", "content_type", "size", "stored")
                    )
                )
                .where(activity_attachments.c.activity_key.in_(chunk))
                .order_by(activity_attachments.c.activity_key, activity_attachments.c.position)
            )
            for a in conn.execute(attachment_query).mappings():
                attachments.setdefault(a["activity_key"], []).append(
                    {
                        "name": a["name"],
                        "content_type": a["content_type"],
                        "size": a["size"],
                        "stored": a["stored"],
                    }
                )
    return [
        ActivityRow(
            key=r["key"],
            message_id=r["message_id"],
            conversation_id=r["conversation_id"],
            subject=r["subject"],
            sender=r["sender"],
            direction=r["direction"],
            sent_at=r["sent_at"],
            received_at=r["received_at"],
            mailbox=r["mailbox"],
            folder_id=r["folder_id"],
            folder=r["folder_path"],
            regarding_type=r["regarding_type"],
            regarding_id=r["regarding_id"],
            regarding_name=r["regarding_name"],
            state=r["state"],
            tracked_at=r["tracked_at"],
            updated_at=r["updated_at"],
            parties=tuple(parties.get(r["key"], ())),
            attachments=tuple(attachments.get(r["key"], ())),
        )
        for r in rows
    ]
