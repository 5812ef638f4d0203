"""Turn a fetched Exchange message into the ``Activity`` a sink stores.

The mail's identity is its Internet Message-ID, so the same mail filed from two mailboxes, or moved
between folders (which gives it a new EWS item id), keeps one key. A server that sends only an HTML body
gets a text body derived from it. A mail without a Message-ID gets a
key hashed from sender, sent time, subject and body.
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime

from exchangelib.attachments import FileAttachment, ItemAttachment
from exchangelib.items import Item

from foldertrack.exchange import datetimes
from foldertrack.exchange.htmltext import html_to_text
from foldertrack.model import Activity, Attachment, Party, RecordRef

log = logging.getLogger(__name__)
datetimes.install()  # fractional-second timestamps of non-Exchange servers: see exchange/datetimes.py

MAX_KEY_LENGTH = 255
AddressResolver = Callable[[str], RecordRef | None]


class NotAMail(Exception):
    """The item is not an email (a meeting request, contact, task…): it is skipped, not tracked."""


def normalise_message_id(message_id: str | None) -> str | None:
    if not message_id:
        return None
    text = "".join(message_id.split())
    return text or None


def mail_key(
    message_id: str | None, sender: str | None, sent: datetime | None, subject: str | None, body: str | None
) -> str:
    """The activity's idempotency key: ``mid:<Message-ID>``, or ``hash:<sha256>`` without one."""
    normalised = normalise_message_id(message_id)
    if normalised:
        key = f"mid:{normalised}"
        if len(key) <= MAX_KEY_LENGTH:
            return key
        return "mid-sha256:" + hashlib.sha256(normalised.encode()).hexdigest()
    material = "\x1f".join(
        [
            (sender or "").lower(),
            sent.isoformat() if sent else "",
            subject or "",
            body or "",
        ]
    )
    return "hash:" + hashlib.sha256(material.encode("utf-8", "surrogatepass")).hexdigest()


def is_mail(item: Item) -> bool:
    item_class = getattr(item, "item_class", None) or "IPM.Note"
    return item_class.upper().startswith("IPM.NOTE") and hasattr(item, "to_recipients")


def to_activity(
    item: Item,
    *,
    mailbox: str,
    folder_id: str,
    folder_path: str,
    regarding: RecordRef | None,
    max_attachment_bytes: int,
    resolve_address: AddressResolver,
) -> Activity:
    """Build the activity for ``item`` as filed in ``folder_path`` of ``mailbox``."""
    if not is_mail(item):
        raise NotAMail(f"item class {getattr(item, 'item_class', None)!r} is not a mail")
    sender_box = item.sender or getattr(item, "author", None)
    sender = _address(sender_box)
    text_body = _text(getattr(item, "text_body", None))
    html_body = _text(item.body) if _is_html(item.body) else None
    if text_body is None and item.body is not None and html_body is None:
        text_body = _text(item.body)
    key_body = text_body or html_body  # the fallback key hashes what the server sent, as it always did
    if (text_body is None or not text_body.strip()) and html_body:
        text_body = html_to_text(html_body)  # servers that ignore item:TextBody send HTML only
    parties = list(_parties("from", [sender_box] if sender_box else [], resolve_address))
    for role, boxes in (("to", item.to_recipients), ("cc", item.cc_recipients), ("bcc", item.bcc_recipients)):
        parties.extend(_parties(role, boxes or [], resolve_address))
    conversation = item.conversation_id.id if getattr(item, "conversation_id", None) else None
    return Activity(
        key=mail_key(item.message_id, sender, plain_datetime(item.datetime_sent), item.subject, key_body),
        mailbox=mailbox,
        folder_id=folder_id,
        folder_path=folder_path,
        message_id=normalise_message_id(item.message_id),
        subject=item.subject,
        direction="outgoing" if sender and sender.lower() == mailbox.lower() else "incoming",
        regarding=regarding,
        conversation_id=conversation,
        text_body=text_body,
        html_body=html_body,
        sender=sender,
        sent_at=plain_datetime(item.datetime_sent),
        received_at=plain_datetime(item.datetime_received),
        parties=tuple(parties),
        attachments=tuple(_attachments(item, max_attachment_bytes)),
    )


def plain_datetime(value) -> datetime | None:
    """exchangelib's EWSDateTime as a plain aware UTC datetime (its own tz type leaks into nothing else)."""
    if value is None:
        return None
    if value.tzinfo is None:
        return datetime(*value.timetuple()[:6], value.microsecond, tzinfo=UTC)
    return datetime.fromtimestamp(value.timestamp(), UTC)


def _address(mailbox_obj) -> str | None:
    address = getattr(mailbox_obj, "email_address", None)
    return address.strip().lower() if address else None


def _text(body) -> str | None:
    return str(body) if body is not None else None


def _is_html(body) -> bool:
    return body is not None and type(body).__name__ == "HTMLBody"


def _parties(role: str, boxes, resolve_address: AddressResolver):
    seen: set[str] = set()
    for box in boxes:
        address = _address(box)
        if not address or address in seen:
            continue
        seen.add(address)
        yield Party(
            role=role,
            address=address,
            name=getattr(box, "name", None) or None,
            record=resolve_address(address),
        )


def _attachments(item: Item, limit: int):
    for attachment in item.attachments or []:
        size = int(getattr(attachment, "size", None) or 0)
        name = attachment.name or "(unnamed)"
        if isinstance(attachment, ItemAttachment):
            yield Attachment(
                name=name,
                content_type="message/rfc822",
                size=size,
                content=None,
                is_inline=bool(attachment.is_inline),
            )
            continue
        content: bytes | None = None
        if isinstance(attachment, FileAttachment) and size <= limit:
            content = attachment.content  # GetAttachment, only for what we keep
            size = size or len(content or b"")
            if content is not None and len(content) > limit:
                content = None
        yield Attachment(
            name=name,
            content_type=attachment.content_type,
            size=size,
            content=content,
            is_inline=bool(attachment.is_inline),
        )
