"""Item operations: FindItem, GetItem, CreateItem, UpdateItem."""

from __future__ import annotations

import base64
import binascii

from lxml import etree

from foldertrack.simulator.mime import MailSpec
from foldertrack.simulator.model import EwsError, Item, Mailbox
from foldertrack.simulator.ops.attachments import attachment_ids, new_attachments, with_attachments
from foldertrack.simulator.ops.base import Handler
from foldertrack.simulator.ops.folders import _page
from foldertrack.simulator.render import Shape, ews_datetime, html_to_text, item_element
from foldertrack.simulator.restrictions import matches
from foldertrack.simulator.soap import M, SoapFault, T, bool_text, sub, xs_bool

PR_MESSAGE_FLAGS = 0x0E07
MSGFLAG_UNSENT = 0x8
MSGFLAG_READ = 0x1


def item_getter(item: Item):
    mail = item.mail
    values: dict[str, object] = {
        "Subject": mail.subject,
        "InternetMessageId": mail.message_id,
        "DateTimeReceived": ews_datetime(item.received),
        "DateTimeSent": ews_datetime(mail.sent_at or item.received),
        "DateTimeCreated": ews_datetime(item.created),
        "LastModifiedTime": ews_datetime(item.modified),
        "IsRead": item.is_read,
        "IsDraft": item.is_draft,
        "HasAttachments": any(not a.is_inline for a in mail.attachments),
        "Size": item.size,
        "Categories": item.categories or None,
        "From": mail.sender.email if mail.sender else None,
        "Sender": mail.sender.email if mail.sender else None,
        "ItemClass": item.item_class,
        "ConversationTopic": mail.conversation_topic,
        "InReplyTo": mail.in_reply_to,
        "References": mail.references,
        "Importance": mail.importance,
        "Body": mail.text_body if mail.text_body is not None else html_to_text(mail.html_body or ""),
        "ToRecipients": [a.email for a in mail.to] or None,
        "CcRecipients": [a.email for a in mail.cc] or None,
    }
    return values.get


class FindItem(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/finditem-operation"""

    SERVICE_NAME = "FindItem"

    def call(self, payload: etree._Element) -> etree._Element:
        traversal = payload.get("Traversal", "Shallow")
        if traversal not in ("Shallow", "Deep", "SoftDeleted", "Associated"):
            raise SoapFault("ErrorSchemaValidation", f"Invalid Traversal {traversal!r}.")
        shape = Shape.parse(payload.find(M("ItemShape")))
        shape.find = True
        view = payload.find(M("IndexedPageItemView"))
        restriction = payload.find(M("Restriction"))
        order = payload.find(M("SortOrder"))
        resp, messages = self.response()
        with self.store.lock:
            mb = self.mailbox
            for ref in self.folder_ids(payload.find(M("ParentFolderIds"))):
                try:
                    folder = self.folder_from(ref)
                    found = (
                        []
                        if traversal in ("SoftDeleted", "Associated")
                        else [mb.items[s] for s in folder.items]
                    )
                    if restriction is not None:
                        found = [i for i in found if matches(restriction, item_getter(i))]
                    found = _sort(found, order)
                except EwsError as exc:
                    self.message(messages, exc)
                    continue
                msg = self.message(messages)
                offset, page = _page(view, found)
                root = sub(
                    msg, M("RootFolder"), IndexedPagingOffset=offset + len(page), TotalItemsInView=len(found)
                )
                root.set("IncludesLastItemInRange", bool_text(offset + len(page) >= len(found)))
                container = sub(root, T("Items"))
                for item in page:
                    item_element(container, mb, item, shape)
        return resp


def _sort(items: list[Item], order: etree._Element | None) -> list[Item]:
    """Exchange's default order is DateTimeReceived descending; SortOrder FieldOrders apply last-first."""
    result = sorted(items, key=lambda i: (i.received, i.serial), reverse=True)
    if order is None:
        return result
    for field_order in reversed(order.findall(T("FieldOrder"))):
        uri = field_order.find(T("FieldURI"))
        if uri is None:
            continue
        name = (uri.get("FieldURI") or "").rpartition(":")[2]
        reverse = field_order.get("Order", "Ascending") == "Descending"
        result.sort(key=lambda i, n=name: _sort_key(item_getter(i)(n)), reverse=reverse)
    return result


def _sort_key(value: object) -> tuple[int, object]:
    if value is None:
        return (0, "")
    if isinstance(value, bool | int):
        return (1, int(value))
    return (2, str(value).casefold())


class GetItem(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getitem-operation"""

    SERVICE_NAME = "GetItem"
    error_container = "Items"

    def call(self, payload: etree._Element) -> etree._Element:
        shape = Shape.parse(payload.find(M("ItemShape")))
        resp, messages = self.response()
        with self.store.lock:
            for ref in self.item_ids(payload.find(M("ItemIds"))):
                try:
                    item = self.store.item_by_id(self.mailbox, ref.get("Id"))
                except EwsError as exc:
                    self.message(messages, exc)
                    continue
                item_element(sub(self.message(messages), M("Items")), self.mailbox, item, shape)
        return resp


def _message_flags(message: etree._Element) -> int | None:
    for prop in message.findall(T("ExtendedProperty")):
        uri = prop.find(T("ExtendedFieldURI"))
        if uri is None:
            continue
        tag = uri.get("PropertyTag") or ""
        try:
            number = int(tag, 16) if tag.lower().startswith("0x") else int(tag)
        except ValueError:
            continue
        if number == PR_MESSAGE_FLAGS:
            try:
                return int(prop.findtext(T("Value")) or "0")
            except ValueError:
                return None
    return None


def _addresses(message: etree._Element, tag: str) -> list[str]:
    holder = message.find(T(tag))
    if holder is None:
        return []
    return [(m.findtext(T("EmailAddress")) or "").strip() for m in holder.iter(T("Mailbox"))]


def mime_from_element(message: etree._Element, default_sender: str = "") -> bytes:
    """The MIME of a ``t:Message`` to create: its MimeContent, else built from its properties. A sent
    message without From gets ``default_sender`` (the mailbox owner), as Exchange does."""
    mime = message.findtext(T("MimeContent"))
    if mime is not None:
        try:
            return base64.b64decode(mime.strip(), validate=False)
        except (binascii.Error, ValueError):
            raise EwsError(
                "ErrorMimeContentInvalidBase64String", "The MimeContent is not valid base64."
            ) from None
    body = message.find(T("Body"))
    is_html = body is not None and body.get("BodyType") == "HTML"
    senders = _addresses(message, "From") or _addresses(message, "Sender")
    spec = MailSpec(
        subject=message.findtext(T("Subject")) or "",
        sender=senders[0] if senders else default_sender,
        to=_addresses(message, "ToRecipients"),
        cc=_addresses(message, "CcRecipients"),
        bcc=_addresses(message, "BccRecipients"),
        body=None if is_html else (body.text or "" if body is not None else ""),
        html_body=(body.text or "") if is_html and body is not None else None,
        message_id=message.findtext(T("InternetMessageId")) or None,
    )
    return spec.to_mime()


class CreateItem(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/createitem-operation"""

    SERVICE_NAME = "CreateItem"
    error_container = "Items"

    def call(self, payload: etree._Element) -> etree._Element:
        disposition = payload.get("MessageDisposition", "SaveOnly")
        if disposition not in ("SaveOnly", "SendOnly", "SendAndSaveCopy"):
            raise SoapFault("ErrorSchemaValidation", f"Invalid MessageDisposition {disposition!r}.")
        container = payload.find(M("Items"))
        if container is None:
            raise SoapFault("ErrorSchemaValidation", "CreateItem: Items is missing.")
        resp, messages = self.response()
        with self.store.lock:
            mb = self.mailbox
            for message in container:
                try:
                    if message.tag != T("Message"):
                        raise EwsError("ErrorInvalidOperation", "The simulator creates messages only.")
                    item = self._create(mb, payload, message, disposition)
                except EwsError as exc:
                    self.message(messages, exc)
                    continue
                out = sub(self.message(messages), M("Items"))
                if item is not None:
                    created = sub(out, T("Message"))
                    sub(created, T("ItemId"), Id=item.id, ChangeKey=item.change_key)
                    if item.mail.attachments:
                        attachment_ids(created, item, range(len(item.mail.attachments)), T("Attachments"))
        return resp

    def _create(self, mb: Mailbox, payload: etree._Element, message: etree._Element, disposition: str):
        mime = mime_from_element(message, "" if disposition == "SaveOnly" else mb.address)
        mime = with_attachments(mime, new_attachments(message.find(T("Attachments"))))
        flags = _message_flags(message)
        is_read = xs_bool(message.findtext(T("IsRead")), bool(flags and flags & MSGFLAG_READ))
        categories = [c.text or "" for c in message.iter(T("String")) if c.getparent().tag == T("Categories")]
        if disposition == "SaveOnly":
            holder = payload.find(M("SavedItemFolderId"))
            folder = self.folder_from(holder[0]) if holder is not None and len(holder) else None
            folder = folder or self.store.distinguished(mb, "drafts")
            is_draft = flags is None or bool(flags & MSGFLAG_UNSENT)
            return self.store.create_item(
                mb, folder, mime, delivered=False, is_read=is_read, is_draft=is_draft, categories=categories
            )
        item = self.store.create_item(
            mb, self.store.distinguished(mb, "sentitems"), mime, delivered=False, is_read=True
        )
        if disposition == "SendOnly":
            self.store.delete_item(mb, item, "HardDelete")
        recipients = {a.email.lower() for a in item.mail.to + item.mail.cc + item.mail.bcc}
        for address in recipients:
            target = self.store.mailboxes.get(address)
            if target is not None:
                self.store.create_item(
                    target, self.store.distinguished(target, "inbox"), mime, delivered=True
                )
        return None


class UpdateItem(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/updateitem-operation"""

    SERVICE_NAME = "UpdateItem"
    error_container = "Items"

    def call(self, payload: etree._Element) -> etree._Element:
        conflicts = payload.get("ConflictResolution", "AutoResolve")
        changes = payload.find(M("ItemChanges"))
        if changes is None:
            raise SoapFault("ErrorSchemaValidation", "UpdateItem: ItemChanges is missing.")
        resp, messages = self.response()
        with self.store.lock:
            for change in changes.findall(T("ItemChange")):
                try:
                    ref = change.find(T("ItemId"))
                    if ref is None:
                        raise EwsError("ErrorInvalidIdMalformed", "ItemChange has no ItemId.")
                    item = self.store.item_by_id(self.mailbox, ref.get("Id"))
                    others = self.ctx.principal.mailbox is not self.mailbox
                    if others and self.mailbox.address.lower() in self.store.read_only:
                        raise EwsError(
                            "ErrorAccessDenied", "Access is denied. Check credentials and try again."
                        )
                    key = ref.get("ChangeKey")
                    if key and key != item.change_key and conflicts == "NeverOverwrite":
                        raise EwsError("ErrorIrresolvableConflict", "The change key is out of date.")
                    self._apply(item, change.find(T("Updates")))
                except EwsError as exc:
                    self.message(messages, exc)
                    continue
                msg = self.message(messages)
                sub(
                    sub(sub(msg, M("Items")), T("Message")),
                    T("ItemId"),
                    Id=item.id,
                    ChangeKey=item.change_key,
                )
                sub(sub(msg, M("ConflictResults")), T("Count"), 0)
        return resp

    def _apply(self, item: Item, updates: etree._Element | None) -> None:
        changes: dict[str, object] = {}
        for update in updates if updates is not None else []:
            uri = update.find(T("FieldURI"))
            if uri is None:
                continue  # extended and indexed properties are accepted and ignored
            name = (uri.get("FieldURI") or "").rpartition(":")[2]
            value_elem = next((c for c in update if c.tag != T("FieldURI")), None)
            field = value_elem.find(T(name)) if value_elem is not None else None
            kind = etree.QName(update).localname
            if name == "IsRead":
                changes["is_read"] = kind != "DeleteItemField" and field is not None and xs_bool(field.text)
            elif name == "Categories":
                values = [s.text or "" for s in field.iter(T("String"))] if field is not None else []
                if kind == "AppendToItemField":
                    values = list(dict.fromkeys([*item.categories, *values]))
                changes["categories"] = [] if kind == "DeleteItemField" else values
            elif name == "Importance":
                changes["importance"] = (field.text if field is not None else None) or "Normal"
            elif name in ("Subject", "Body", "Sensitivity", "ReminderIsSet", "Flag", "IsDraft"):
                continue  # accepted, but not modelled: the MIME stays as delivered
            else:
                raise EwsError(
                    "ErrorInvalidPropertySet", f"The simulator cannot update {uri.get('FieldURI')}."
                )
        self.store.update_item(self.mailbox, item, **changes)  # type: ignore[arg-type]
