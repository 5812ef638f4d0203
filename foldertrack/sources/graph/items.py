"""Messages as activities: fetch a message with its attachments' metadata, the content of file
attachments up to the limit, and map it to the same :class:`~foldertrack.model.Activity` the EWS source
builds (:mod:`foldertrack.exchange.convert`): key from the Internet Message-ID (or the fallback hash),
parties by role, ``outgoing`` when the mailbox sent it. Item attachments are named, never downloaded.

https://learn.microsoft.com/graph/api/message-get, https://learn.microsoft.com/graph/api/attachment-get
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any
from urllib.parse import quote, urlencode

from foldertrack.exchange.convert import mail_key, normalise_message_id
from foldertrack.exchange.htmltext import html_to_text
from foldertrack.model import Activity, Attachment, Party, RecordRef
from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.delta import user_path
from foldertrack.sources.graph.errors import GraphError

AddressResolver = Callable[[str], RecordRef | None]
MESSAGE_SELECT = (
    "internetMessageId",
    "subject",
    "body",
    "from",
    "sender",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "sentDateTime",
    "receivedDateTime",
    "conversationId",
    "parentFolderId",
    "hasAttachments",
    "categories",
)
ATTACHMENT_SELECT = ("id", "name", "contentType", "size", "isInline")
#: PidTagMessageClass: a mail folder may hold contacts, appointments, tasks… which Graph lists as messages;
#: only the item class tells them apart (https://learn.microsoft.com/graph/api/resources/extended-properties-overview)
MESSAGE_CLASS_PROPERTY = "String 0x001A"
MESSAGE_EXPAND = (
    f"attachments($select={','.join(ATTACHMENT_SELECT)}),"
    f"singleValueExtendedProperties($filter=id eq '{MESSAGE_CLASS_PROPERTY}')"
)
FILE_ATTACHMENT = "#microsoft.graph.fileAttachment"
ITEM_ATTACHMENT = "#microsoft.graph.itemAttachment"


def message_path(mailbox: str, message_id: str) -> str:
    return f"{user_path(mailbox)}/messages/{quote(message_id, safe='')}"


def fetch_message(client: GraphClient, mailbox: str, message_id: str) -> dict[str, Any]:
    """One request: the properties we store and every attachment's metadata (no content)."""
    return client.get(
        mailbox,
        message_path(mailbox, message_id),
        params={
            "$select": ",".join(MESSAGE_SELECT),
            "$expand": MESSAGE_EXPAND,
        },
    )


def fetch_messages(
    client: GraphClient, mailbox: str, message_ids: list[str]
) -> dict[str, dict[str, Any] | GraphError]:
    """Several messages (as :func:`fetch_message`) through ``$batch``: 20 per HTTP request. A message that
    failed (gone meanwhile, throttled) maps to its error, so the caller decides per message."""
    query = urlencode(
        {
            "$select": ",".join(MESSAGE_SELECT),
            "$expand": MESSAGE_EXPAND,
        }
    )
    calls = [("GET", f"{message_path(mailbox, mid)}?{query}", None) for mid in message_ids]
    out: dict[str, dict[str, Any] | GraphError] = {}
    for message_id, result in zip(message_ids, client.batch(mailbox, calls), strict=True):
        out[message_id] = result.body if result.error is None else result.error
    return out


def message_class(message: dict[str, Any]) -> str:
    """The item class (``IPM.Note``, ``IPM.Contact``…) from the expanded PidTagMessageClass; Graph names the
    property ``String 0x1a`` in answers. Not there: a mail (``IPM.Note``)."""
    for prop in message.get("singleValueExtendedProperties") or []:
        kind, _, tag = str(prop.get("id") or "").strip().partition(" ")
        try:
            if kind.lower() == "string" and int(tag, 16) == 0x001A and prop.get("value"):
                return str(prop["value"])
        except ValueError:
            continue
    return "IPM.Note"


def is_mail(message: dict[str, Any]) -> bool:
    """Only mails are tracked (as with EWS: the item class is ``IPM.Note`` or one of its subclasses)."""
    return message_class(message).upper().startswith("IPM.NOTE")


def fetch_attachment_content(client: GraphClient, mailbox: str, message_id: str, attachment_id: str) -> bytes:
    body = client.get(
        mailbox, f"{message_path(mailbox, message_id)}/attachments/{quote(attachment_id, safe='')}"
    )
    try:
        return base64.b64decode(body.get("contentBytes") or "", validate=True)
    except (binascii.Error, ValueError):
        return b""


def fetch_text_body(client: GraphClient, mailbox: str, message_id: str) -> str | None:
    """The body as the server renders it as text (what EWS ``TextBody`` gives): the fallback key's input."""
    body = client.get(
        mailbox,
        message_path(mailbox, message_id),
        params={"$select": "body"},
        prefer=('outlook.body-content-type="text"',),
    )
    content = body.get("body", {}).get("content") if isinstance(body.get("body"), dict) else None
    return str(content) if content is not None else None


def set_categories(client: GraphClient, mailbox: str, message_id: str, categories: list[str]) -> None:
    """Feedback (an Outlook category) on the message: ``PATCH`` with the whole category list."""
    client.request("PATCH", mailbox, message_path(mailbox, message_id), json={"categories": categories})


def parse_time(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo is not None else parsed.replace(tzinfo=dt.UTC)


def _address(recipient: Any) -> tuple[str | None, str | None]:
    if not isinstance(recipient, dict) or not isinstance(recipient.get("emailAddress"), dict):
        return None, None
    box = recipient["emailAddress"]
    address = str(box.get("address") or "").strip().lower() or None
    name = str(box.get("name") or "").strip() or None
    if name is not None and name.lower() == address:  # Graph repeats the address when there is no name
        name = None
    return address, name


def _parties(role: str, recipients: Iterable[Any], resolve: AddressResolver) -> list[Party]:
    out, seen = [], set()
    for recipient in recipients or []:
        address, name = _address(recipient)
        if not address or address in seen:
            continue
        seen.add(address)
        out.append(Party(role=role, address=address, name=name, record=resolve(address)))  # type: ignore[arg-type]
    return out


def attachments(
    client: GraphClient, mailbox: str, message: dict[str, Any], max_bytes: int
) -> tuple[Attachment, ...]:
    """Metadata for all, content for file attachments of at most ``max_bytes`` (one request each)."""
    out = []
    for entry in message.get("attachments") or []:
        kind = entry.get("@odata.type")
        size = int(entry.get("size") or 0)
        name = entry.get("name") or "(unnamed)"
        inline = bool(entry.get("isInline"))
        if kind == ITEM_ATTACHMENT:
            out.append(Attachment(name=name, content_type="message/rfc822", size=size, is_inline=inline))
            continue
        content = None
        if kind == FILE_ATTACHMENT and size <= max_bytes:
            content = fetch_attachment_content(client, mailbox, str(message["id"]), str(entry["id"]))
            if len(content) > max_bytes:
                content = None
        out.append(
            Attachment(
                name=name, content_type=entry.get("contentType"), size=size, content=content, is_inline=inline
            )
        )
    return tuple(out)


def to_activity(
    message: dict[str, Any],
    *,
    mailbox: str,
    folder_id: str,
    folder_path: str,
    regarding: RecordRef | None,
    resolve_address: AddressResolver,
    attachments: tuple[Attachment, ...] = (),
    key_body: str | None = None,
) -> Activity:
    """The activity for ``message`` (JSON with :data:`MESSAGE_SELECT`) as filed in ``folder_path``.

    ``key_body`` is the server's text rendering of the body (:func:`fetch_text_body`); only a mail without
    a Message-ID needs it, so its fallback key is the one the EWS source computed (no double after a switch).
    """
    body = message.get("body") if isinstance(message.get("body"), dict) else {}
    content = body.get("content")
    is_html = str(body.get("contentType") or "").lower() == "html"
    html_body = content if is_html else None
    text_body = html_to_text(content) if is_html else content
    sender, _name = _address(message.get("from") or message.get("sender"))
    parties = _parties("from", [message.get("from") or message.get("sender")], resolve_address)
    for role, field in (("to", "toRecipients"), ("cc", "ccRecipients"), ("bcc", "bccRecipients")):
        parties.extend(_parties(role, message.get(field) or [], resolve_address))
    sent = parse_time(message.get("sentDateTime"))
    message_id = message.get("internetMessageId")
    return Activity(
        key=mail_key(message_id, sender, sent, message.get("subject"), key_body or text_body or content),
        mailbox=mailbox,
        folder_id=folder_id,
        folder_path=folder_path,
        message_id=normalise_message_id(message_id),
        subject=message.get("subject"),
        direction="outgoing" if sender and sender == mailbox.lower() else "incoming",
        regarding=regarding,
        conversation_id=message.get("conversationId"),
        text_body=text_body,
        html_body=html_body,
        sender=sender,
        sent_at=sent,
        received_at=parse_time(message.get("receivedDateTime")),
        parties=tuple(parties),
        attachments=attachments,
    )


def fetch_activity(
    client: GraphClient,
    mailbox: str,
    message_id: str,
    *,
    folder_id: str,
    folder_path: str,
    regarding: RecordRef | None,
    max_attachment_bytes: int,
    resolve_address: AddressResolver,
) -> Activity:
    message = fetch_message(client, mailbox, message_id)
    files = attachments(client, mailbox, message, max_attachment_bytes) if message.get("attachments") else ()
    key_body = None if message.get("internetMessageId") else fetch_text_body(client, mailbox, message_id)
    return to_activity(
        message,
        mailbox=mailbox,
        folder_id=folder_id,
        folder_path=folder_path,
        regarding=regarding,
        resolve_address=resolve_address,
        attachments=files,
        key_body=key_body,
    )
