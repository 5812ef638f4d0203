"""The activity an external sink receives, rebuilt from the local activity tables at delivery time.

The outbox holds decisions, not content: the local tables (written in the sync transaction) are the
system of record, so a delivery always sends the mail's current content, parties, attachments, regarding
and state, and a retried or replayed entry can never send something older than what is stored. Fields
the rule does not send (``send: {body: false, attachments: false}``) are blanked here.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from sqlalchemy import Connection, select

from foldertrack.model import Activity, Attachment, Party, RecordRef
from foldertrack.state.schema import activities, activity_attachments, activity_parties


@dataclass(frozen=True)
class StoredActivity:
    """The local activity, and whether ``on_leave: delete`` removed its CRM copy (then nothing is sent)."""

    activity: Activity
    deleted: bool


def load_activity(conn: Connection, key: str) -> StoredActivity | None:
    """The stored activity for ``key`` as the sinks' :class:`Activity`, or None when there is none."""
    row = conn.execute(select(activities).where(activities.c.key == key)).first()
    if row is None:
        return None
    parties = tuple(
        Party(
            role=p.role,
            address=p.address,
            name=p.name,
            record=RecordRef(p.record_type, p.record_id) if p.record_type and p.record_id else None,
        )
        for p in conn.execute(
            select(activity_parties)
            .where(activity_parties.c.activity_key == key)
            .order_by(activity_parties.c.position)
        )
    )
    attachments = tuple(
        Attachment(
            name=a.name,
            content_type=a.content_type,
            size=a.size,
            content=a.content if a.stored else None,
            is_inline=a.is_inline,
        )
        for a in conn.execute(
            select(activity_attachments)
            .where(activity_attachments.c.activity_key == key)
            .order_by(activity_attachments.c.position)
        )
    )
    regarding = (
        RecordRef(row.regarding_type, row.regarding_id, row.regarding_name)
        if row.regarding_type and row.regarding_id
        else None
    )
    activity = Activity(
        key=row.key,
        mailbox=row.mailbox,
        folder_id=row.folder_id,
        folder_path=row.folder_path,
        message_id=row.message_id,
        subject=row.subject,
        direction=row.direction,
        regarding=regarding,
        state=row.state,
        conversation_id=row.conversation_id,
        text_body=row.text_body,
        html_body=row.html_body,
        sender=row.sender,
        sent_at=row.sent_at,
        received_at=row.received_at,
        parties=parties,
        attachments=attachments,
    )
    return StoredActivity(activity, deleted=row.deleted_at is not None)


def apply_send_options(activity: Activity, send: dict[str, bool]) -> Activity:
    """Blank what the rule does not send: the body (text and HTML), the attachments (all of them)."""
    changes: dict[str, object] = {}
    if not send.get("body", True):
        changes.update(text_body=None, html_body=None)
    if not send.get("attachments", True):
        changes["attachments"] = ()
    return replace(activity, **changes) if changes else activity
