"""What a mail may put into the database: bounded field sizes, and the fingerprint that tells a true
duplicate of a tracked mail from a different mail reusing its Message-ID.

Sizes are the same on every database (SQLite would store anything, PostgreSQL refuses what exceeds a
column): text fields longer than their cap are cut and end with a note saying so; identifiers and
addresses are cut to their column.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import replace
from datetime import UTC

from foldertrack.model import Activity
from foldertrack.state.schema import ITEM_ID_LEN, KEY_LEN, MAILBOX_LEN, NAME_LEN

log = logging.getLogger("foldertrack.sync")

MAX_SUBJECT_CHARS = 4_000
MAX_BODY_CHARS = 4_000_000
TRUNCATION_NOTE = " [… truncated by foldertrack: {total:,} characters]"


def _cut(text: str | None, limit: int) -> str | None:
    return text if text is None or len(text) <= limit else text[:limit]


def _noted(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    note = TRUNCATION_NOTE.format(total=len(text))
    return text[: limit - len(note)] + note


def bound_activity(activity: Activity) -> tuple[Activity, list[str]]:
    """The activity with every field within its stored size, and the names of the fields that were cut."""
    cut = [
        name
        for name, value, limit in (
            ("subject", activity.subject, MAX_SUBJECT_CHARS),
            ("text_body", activity.text_body, MAX_BODY_CHARS),
            ("html_body", activity.html_body, MAX_BODY_CHARS),
            ("message_id", activity.message_id, KEY_LEN),
            ("sender", activity.sender, MAILBOX_LEN),
            ("conversation_id", activity.conversation_id, ITEM_ID_LEN),
        )
        if value is not None and len(value) > limit
    ]
    parties = tuple(
        replace(p, address=_cut(p.address, MAILBOX_LEN) or "", name=_cut(p.name, NAME_LEN))
        if len(p.address) > MAILBOX_LEN or (p.name and len(p.name) > NAME_LEN)
        else p
        for p in activity.parties
    )
    attachments = tuple(
        replace(a, name=_cut(a.name, NAME_LEN) or "", content_type=_cut(a.content_type, NAME_LEN))
        if len(a.name) > NAME_LEN or (a.content_type and len(a.content_type) > NAME_LEN)
        else a
        for a in activity.attachments
    )
    if not cut and parties == activity.parties and attachments == activity.attachments:
        return activity, []
    bounded = replace(
        activity,
        subject=_noted(activity.subject, MAX_SUBJECT_CHARS),
        text_body=_noted(activity.text_body, MAX_BODY_CHARS),
        html_body=_noted(activity.html_body, MAX_BODY_CHARS),
        message_id=_cut(activity.message_id, KEY_LEN),
        sender=_cut(activity.sender, MAILBOX_LEN),
        conversation_id=_cut(activity.conversation_id, ITEM_ID_LEN),
        parties=parties,
        attachments=attachments,
    )
    return bounded, cut + (["parties"] if parties != activity.parties else []) + (
        ["attachments"] if attachments != activity.attachments else []
    )


def fingerprint(activity: Activity) -> str:
    """Sender, sent time (to the second) and subject: what every copy of one mail shares, in any mailbox,
    while a different mail that reuses the Message-ID (it is visible in every reply's headers) differs.
    The body is left out on purpose: a disclaimer a transport rule appends differs between the sender's
    copy and the recipients'."""
    sent = activity.sent_at.astimezone(UTC).replace(microsecond=0).isoformat() if activity.sent_at else ""
    subject = " ".join((activity.subject or "").split()).casefold()
    material = "\x1f".join(((activity.sender or "").lower(), sent, subject))
    return hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


def bounded(activity: Activity, mailbox: str, path: str) -> Activity:
    """:func:`bound_activity`, logging which fields of which mail were cut."""
    result, cut = bound_activity(activity)
    if cut:
        log.warning(
            "%s %s: %s: %s too long; stored cut, with a note",
            mailbox,
            path,
            activity.key[:200],
            ", ".join(cut),
        )
    return result
