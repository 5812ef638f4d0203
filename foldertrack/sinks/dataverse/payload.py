"""An :class:`~foldertrack.model.Activity` as the Dataverse ``email`` row server-side synchronisation would
create: columns, activity parties, regarding, state, and which attachments go along.

Over-long values are cut to the column's length (one log line each), never rejected; a cut body sets
``notifications`` = Truncated body, as Dataverse itself does.

Reference: https://learn.microsoft.com/power-apps/developer/data-platform/reference/entities/email and
https://learn.microsoft.com/power-apps/developer/data-platform/activityparty-entity
"""

from __future__ import annotations

import html
import logging
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from foldertrack.config.units import format_size
from foldertrack.crm import metadata as md
from foldertrack.crm.names import EntityNames, party_property, regarding_property
from foldertrack.model import Activity, Attachment

log = logging.getLogger("foldertrack.sinks.dataverse")

#: uuid5 namespace of email activity ids: ``activityid = uuid5(ACTIVITY_NAMESPACE, Activity.key)``. Fixed
#: forever: changing it would create every mail again under a new id.
ACTIVITY_NAMESPACE = uuid.UUID("9c0f6a52-3d1e-5b7a-8f43-6f6c64657274")


def activity_id(key: str) -> str:
    """The email's ``activityid`` for a mail key: the same mail always gets the same row."""
    return str(uuid.uuid5(ACTIVITY_NAMESPACE, key))


def attachment_id(activity: str, position: int, attachment: Attachment) -> str:
    """A deterministic ``activitymimeattachmentid``, so a repeated upload finds its row (412)."""
    return str(uuid.uuid5(uuid.UUID(activity), f"{position}:{attachment.name}:{attachment.size}"))


def limited(entity: str, column: str, value: str | None, key: str) -> str | None:
    """``value`` cut to the column's maximum length, with a log line when it had to be cut."""
    if value is None:
        return None
    limit = md.MAX_LENGTH[(entity, column)]
    shortened = md.cut(value, limit)
    if shortened != value:
        log.warning(
            "Dataverse %s.%s of %r is %d characters, cut to %d",
            entity,
            column,
            key[:80],
            md.utf16_length(value),
            limit,
        )
    return shortened


@dataclass(frozen=True)
class EmailRow:
    """What the sink wants the email row to hold."""

    id: str
    fields: dict[str, Any]  # plain columns
    regarding: tuple[str, str] | None  # (logical name, GUID)
    parties: tuple[tuple[int, str | None, str | None, str | None], ...]  # (mask, logical, id, address)
    attachments: tuple[tuple[str, Attachment], ...]  # (attachment id, attachment) to upload
    final_state: tuple[int, int]  # (statecode, statuscode) once complete

    def party_set(self) -> set[tuple[int, str | None, str]]:
        """Parties as compared with what Dataverse returns: (mask, record id, address)."""
        return {
            (mask, (rid or "").lower() or None, (address or "").lower())
            for mask, _, rid, address in self.parties
        }

    def create_body(self, names: EntityNames, *, complete: bool) -> dict[str, Any]:
        body: dict[str, Any] = {k: v for k, v in self.fields.items() if v is not None}
        if self.regarding:
            body[f"{regarding_property(self.regarding[0])}@odata.bind"] = names.bind(*self.regarding)
        body["email_activity_parties"] = self.parties_body(names)
        state = self.final_state if complete else (md.EMAIL_STATE_OPEN, md.EMAIL_STATUS_DRAFT)
        body["statecode"], body["statuscode"] = state
        return body

    def parties_body(self, names: EntityNames) -> list[dict[str, Any]]:
        out = []
        for mask, logical, record_id, address in self.parties:
            party: dict[str, Any] = {"participationtypemask": mask}
            if logical and record_id:
                party[f"{party_property(logical)}@odata.bind"] = names.bind(logical, record_id)
            if address:
                party["addressused"] = address
            out.append(party)
        return out


def email_row(activity: Activity, *, over_limit: str = "footer") -> EmailRow:
    """The email row for ``activity``; ``over_limit`` (``footer``/``skip``) says what happens to attachments
    whose content was not stored (larger than ``sink.max_attachment_bytes``)."""
    key = activity.key
    row_id = activity_id(key)
    uploads: list[tuple[str, Attachment]] = []
    too_big: list[Attachment] = []
    for position, attachment in enumerate(activity.attachments):
        if attachment.stored:
            uploads.append((attachment_id(row_id, position, attachment), attachment))
        else:
            too_big.append(attachment)
    body_html = activity.html_body is not None
    description = activity.html_body if body_html else activity.text_body
    if too_big and over_limit == "footer":
        description = _with_footer(description, too_big, body_html)
    cut_description = limited("email", "description", description, key)
    to = [p.address for p in activity.parties if p.role == "to" and p.address]
    outgoing = activity.direction == "outgoing"
    when = activity.sent_at if outgoing else (activity.received_at or activity.sent_at)
    fields: dict[str, Any] = {
        "subject": limited("email", "subject", activity.subject, key),
        "description": cut_description,
        "messageid": limited("email", "messageid", activity.message_id, key),
        "sender": limited("email", "sender", activity.sender, key),
        "torecipients": limited("email", "torecipients", ";".join(to) or None, key),
        "directioncode": outgoing,
        "actualend": _timestamp(when),
    }
    if cut_description != description:
        fields["notifications"] = md.EMAIL_NOTIFICATION_TRUNCATED_BODY
    regarding = (activity.regarding.type, activity.regarding.id) if activity.regarding else None
    parties = tuple(
        (
            md.PARTICIPATION[p.role],
            p.record.type if p.record else None,
            p.record.id if p.record else None,
            limited("activityparty", "addressused", p.address, key) if p.address else None,
        )
        for p in activity.parties
        if p.role in md.PARTICIPATION
    )
    status = md.EMAIL_STATUS_SENT if outgoing else md.EMAIL_STATUS_RECEIVED
    return EmailRow(row_id, fields, regarding, parties, tuple(uploads), (md.EMAIL_STATE_COMPLETED, status))


def attachment_body(row_id: str, attachment_row: str, attachment: Attachment, key: str) -> dict[str, Any]:
    """An ``activitymimeattachment`` row for one stored attachment of the email ``row_id``."""
    import base64

    return {
        "activitymimeattachmentid": attachment_row,
        "filename": limited("activitymimeattachment", "filename", attachment.name, key),
        "mimetype": limited(
            "activitymimeattachment", "mimetype", attachment.content_type or "application/octet-stream", key
        ),
        "body": base64.b64encode(attachment.content or b"").decode("ascii"),
        "objecttypecode": "email",
        "objectid_email@odata.bind": f"/emails({row_id})",
    }


def _with_footer(description: str | None, too_big: list[Attachment], body_html: bool) -> str:
    names = ", ".join(f"{a.name} ({format_size(a.size)})" for a in too_big)
    line = f"Attachments not copied to the CRM (over the size limit): {names}"
    if body_html:
        return (description or "") + f"<p><small>{html.escape(line)}</small></p>"
    return ((description or "").rstrip("\n") + "\n\n" if description else "") + line


def _timestamp(value: datetime | None) -> str | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
