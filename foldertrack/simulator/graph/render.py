"""Store objects as Graph v1.0 JSON: ``message``, ``mailFolder``, ``fileAttachment``/``itemAttachment``.

Property names and types follow the v1.0 CSDL (``../shared/graph/v1.0-metadata.xml``; the test suite
checks every response against it). ``$select`` narrows a message to ``id`` plus the named properties;
``internetMessageHeaders`` and ``uniqueBody`` come only when selected, as on Graph.
https://learn.microsoft.com/graph/api/resources/message
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import re
from typing import Any

from foldertrack.simulator import ids as ews_ids
from foldertrack.simulator.graph import errors
from foldertrack.simulator.graph.ids import ImmutableIds, folder_rest_id, rest_id
from foldertrack.simulator.mime import Address, ParsedMail
from foldertrack.simulator.model import Folder, Item, Mailbox
from foldertrack.simulator.render import html_to_text  # the EWS TextBody converter: one server, one text

MESSAGE_DEFAULT = [
    "createdDateTime",
    "lastModifiedDateTime",
    "changeKey",
    "categories",
    "receivedDateTime",
    "sentDateTime",
    "hasAttachments",
    "internetMessageId",
    "subject",
    "bodyPreview",
    "importance",
    "parentFolderId",
    "conversationId",
    "conversationIndex",
    "isDeliveryReceiptRequested",
    "isReadReceiptRequested",
    "isRead",
    "isDraft",
    "webLink",
    "inferenceClassification",
    "body",
    "sender",
    "from",
    "toRecipients",
    "ccRecipients",
    "bccRecipients",
    "replyTo",
    "flag",
]
MESSAGE_ONLY_SELECTED = ("internetMessageHeaders", "uniqueBody")
MESSAGE_PROPERTIES = {name.lower(): name for name in ("id", *MESSAGE_DEFAULT, *MESSAGE_ONLY_SELECTED)}
FOLDER_PROPERTIES = {
    name.lower(): name
    for name in (
        [
            "id",
            "displayName",
            "parentFolderId",
            "childFolderCount",
            "unreadItemCount",
            "totalItemCount",
            "isHidden",
        ]
    )
}
ATTACHMENT_PROPERTIES = {
    name.lower(): name
    for name in [
        "id",
        "lastModifiedDateTime",
        "name",
        "contentType",
        "size",
        "isInline",
        "contentId",
        "contentLocation",
        "contentBytes",
    ]
}
MAIL_FOLDER_CLASSES = ("IPF.Note", None)


def timestamp(value: dt.datetime | None) -> str | None:
    if value is None:
        return None
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def resolve_select(select: tuple[str, ...] | None, known: dict[str, str], type_name: str) -> list[str] | None:
    """Canonical names of a ``$select`` (case-insensitive, like Graph); unknown names are a 400."""
    if select is None:
        return None
    out = []
    for name in select:
        canonical = known.get(name.lower())
        if canonical is None:
            raise errors.GraphError(
                400,
                "RequestBroker--ParseUri",
                f"Could not find a property named '{name}' on type 'microsoft.graph.{type_name}'.",
            )
        out.append(canonical)
    return out


def _recipient(address: Address | None) -> dict[str, Any] | None:
    if address is None:
        return None
    return {"emailAddress": {"name": address.name or address.email, "address": address.email}}


def _body(mail: ParsedMail, body_type: str | None) -> dict[str, str]:
    if body_type == "text" or (body_type is None and mail.html_body is None):
        text = mail.text_body if mail.text_body is not None else html_to_text(mail.html_body or "")
        return {"contentType": "text", "content": text}
    if mail.html_body is not None:
        return {"contentType": "html", "content": mail.html_body}
    escaped = html.escape(mail.text_body or "")
    return {"contentType": "html", "content": f"<html><body><div>{escaped}</div></body></html>"}


def _preview(mail: ParsedMail) -> str:
    text = mail.text_body if mail.text_body is not None else html_to_text(mail.html_body or "")
    return " ".join(text.split())[:255]


def message(
    item: Item,
    ids: ImmutableIds,
    *,
    immutable: bool,
    select: list[str] | None = None,
    body_type: str | None = None,
) -> dict[str, Any]:
    mail = item.mail
    wanted = MESSAGE_DEFAULT if select is None else select
    item_id = ids.item_id(item, immutable)
    values: dict[str, Any] = {
        "createdDateTime": lambda: timestamp(item.created),
        "lastModifiedDateTime": lambda: timestamp(item.modified),
        "changeKey": lambda: item.change_key,
        "categories": lambda: list(item.categories),
        "receivedDateTime": lambda: timestamp(item.received),
        "sentDateTime": lambda: timestamp(mail.sent_at or item.created),
        "hasAttachments": lambda: any(not a.is_inline for a in mail.attachments),
        "internetMessageId": lambda: mail.message_id,
        "subject": lambda: mail.subject,
        "bodyPreview": lambda: _preview(mail),
        "importance": lambda: mail.importance.lower(),
        "parentFolderId": lambda: rest_id(ids_folder(item)),
        "conversationId": lambda: base64.urlsafe_b64encode(b"\x00\x10" + mail.conversation_key).decode(),
        "conversationIndex": lambda: base64.b64encode(b"\x01" + mail.conversation_key[:21]).decode(),
        "isDeliveryReceiptRequested": lambda: False,
        "isReadReceiptRequested": lambda: False,
        "isRead": lambda: item.is_read,
        "isDraft": lambda: item.is_draft,
        "webLink": lambda: (
            f"https://outlook.office365.com/owa/?ItemID={item_id}&exvsurl=1&viewmodel=ReadMessageItem"
        ),
        "inferenceClassification": lambda: "focused",
        "body": lambda: _body(mail, body_type),
        "uniqueBody": lambda: _body(mail, body_type),
        "sender": lambda: _recipient(mail.sender),
        "from": lambda: _recipient(mail.sender),
        "toRecipients": lambda: [_recipient(a) for a in mail.to],
        "ccRecipients": lambda: [_recipient(a) for a in mail.cc],
        "bccRecipients": lambda: [_recipient(a) for a in mail.bcc],
        "replyTo": lambda: [_recipient(a) for a in mail.reply_to],
        "flag": lambda: {"flagStatus": "notFlagged"},
        "internetMessageHeaders": lambda: [{"name": k, "value": v} for k, v in mail.headers],
    }
    out: dict[str, Any] = {"@odata.etag": f'W/"{item.change_key}"', "id": item_id}
    for name in wanted:
        if name != "id":
            out[name] = values[name]()
    return out


#: ``{"String 0x001A"}``-style ids of the MAPI properties the simulator can answer (``type``, ``tag``)
_PROPERTY_ID = re.compile(r"^\s*(\w+)\s+0x([0-9a-f]{1,4})\s*$", re.IGNORECASE)
_ID_EQ = re.compile(r"^\s*id\s+eq\s+'([^']*)'\s*$", re.IGNORECASE)


def extended_property_ids(filter_text: str | None) -> list[tuple[str, int]]:
    """The ``(type, proptag)`` pairs of ``$expand=singleValueExtendedProperties($filter=id eq '…' or …)``:
    Graph only expands extended properties by id (a filter is required)."""
    if not filter_text:
        raise errors.bad_request("singleValueExtendedProperties can only be expanded with a $filter on id.")
    out = []
    for clause in re.split(r"\s+or\s+", filter_text.strip(), flags=re.IGNORECASE):
        eq, prop = _ID_EQ.match(clause), None
        if eq is not None:
            prop = _PROPERTY_ID.match(eq.group(1))
        if prop is None:
            raise errors.bad_request(f"Invalid filter clause '{clause.strip()}'.")
        out.append((prop.group(1).lower(), int(prop.group(2), 16)))
    return out


def extended_properties(item: Item, wanted: list[tuple[str, int]]) -> list[dict[str, str]]:
    """``singleValueLegacyExtendedProperty`` values of ``item`` (only PidTagMessageClass, ``String 0x001A``,
    is known here); Graph names them in lower-case hex (``String 0x1a``) and leaves out the unset ones."""
    known = {("string", 0x001A): item.item_class}
    return [
        {"id": f"{kind.capitalize()} 0x{tag:x}", "value": known[(kind, tag)]}
        for kind, tag in wanted
        if (kind, tag) in known
    ]


def ids_folder(item: Item) -> str:
    """The EWS id of the item's folder (serial → id without a store lookup)."""
    return ews_ids.encode_id("F", item.mailbox, item.folder)


def attachments(item: Item, select: list[str] | None, with_content: bool = True) -> list[dict[str, Any]]:
    return [attachment(item, index, select, with_content) for index in range(len(item.mail.attachments))]


def attachment(item: Item, index: int, select: list[str] | None, with_content: bool = True) -> dict[str, Any]:
    part = item.mail.attachments[index]
    is_item = part.content_type.lower() == "message/rfc822"
    kind = "itemAttachment" if is_item else "fileAttachment"
    values: dict[str, Any] = {
        "id": rest_id(item.attachment_id(index)),
        "lastModifiedDateTime": timestamp(item.modified),
        "name": part.name,
        "contentType": part.content_type,
        "size": len(part.content),
        "isInline": part.is_inline,
    }
    if not is_item:
        values["contentId"] = part.content_id
        values["contentLocation"] = None
        if with_content:
            values["contentBytes"] = base64.b64encode(part.content).decode()
    out: dict[str, Any] = {"@odata.type": f"#microsoft.graph.{kind}"}
    if not is_item and (select is None or "contentBytes" in select):
        out["@odata.mediaContentType"] = part.content_type
    for name, value in values.items():
        if select is None or name in select or name == "id":
            out[name] = value
    return out


def folder(mb: Mailbox, found: Folder, select: list[str] | None = None) -> dict[str, Any]:
    parent = folder_rest_id(mb.folders[found.parent]) if found.parent is not None else None
    values = {
        "id": folder_rest_id(found),
        "displayName": found.name,
        "parentFolderId": parent,
        "childFolderCount": sum(1 for f in visible_children(mb, found)),
        "unreadItemCount": mb.unread_count(found),
        "totalItemCount": len(found.items),
        "isHidden": False,
    }
    return {k: v for k, v in values.items() if select is None or k in select or k == "id"}


def visible_children(mb: Mailbox, parent: Folder) -> list[Folder]:
    """The mail folders below ``parent`` Graph lists (calendar, contacts and tasks folders are not)."""
    out = []
    for serial in parent.children:
        child = mb.folders[serial]
        if not child.deleted and child.folder_class in MAIL_FOLDER_CLASSES:
            out.append(child)
    return out
