"""File attachments: GetAttachment, CreateAttachment, DeleteAttachment, and the ones CreateItem carries."""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from lxml import etree

from foldertrack.simulator.mime import add_attachment, remove_attachment
from foldertrack.simulator.model import EwsError, Item, Mailbox
from foldertrack.simulator.ops.base import Handler
from foldertrack.simulator.render import attachment_element
from foldertrack.simulator.soap import M, SoapFault, T, sub, xs_bool


@dataclass(frozen=True)
class NewAttachment:
    name: str
    content_type: str
    content: bytes
    is_inline: bool
    content_id: str | None


def new_attachments(container: etree._Element | None) -> list[NewAttachment]:
    """The ``t:FileAttachment`` elements of a ``t:Attachments`` container (CreateItem, CreateAttachment)."""
    out: list[NewAttachment] = []
    for elem in container if container is not None else []:
        if elem.tag == T("ItemAttachment"):
            raise EwsError("ErrorInvalidOperation", "The simulator stores file attachments only.")
        if elem.tag != T("FileAttachment"):
            continue
        try:
            content = base64.b64decode((elem.findtext(T("Content")) or "").strip(), validate=True)
        except (binascii.Error, ValueError):
            raise EwsError(
                "ErrorInvalidAttachmentId", "The attachment content is not valid base64."
            ) from None
        out.append(
            NewAttachment(
                name=elem.findtext(T("Name")) or "attachment",
                content_type=elem.findtext(T("ContentType")) or "application/octet-stream",
                content=content,
                is_inline=xs_bool(elem.findtext(T("IsInline"))),
                content_id=elem.findtext(T("ContentId")) or None,
            )
        )
    return out


def with_attachments(mime: bytes, attachments: list[NewAttachment]) -> bytes:
    for att in attachments:
        mime = add_attachment(
            mime, att.name, att.content_type, att.content, is_inline=att.is_inline, content_id=att.content_id
        )
    return mime


def attachment_ids(parent: etree._Element, item: Item, indexes: range | list[int], tag: str) -> None:
    """``<t:Attachments><t:FileAttachment><t:AttachmentId Id RootItemId RootItemChangeKey/>…`` as
    Exchange answers CreateItem and CreateAttachment."""
    container = sub(parent, tag)
    for index in indexes:
        sub(
            sub(container, T("FileAttachment")),
            T("AttachmentId"),
            Id=item.attachment_id(index),
            RootItemId=item.id,
            RootItemChangeKey=item.change_key,
        )


class GetAttachment(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getattachment-operation"""

    SERVICE_NAME = "GetAttachment"
    error_container = "Attachments"

    def call(self, payload: etree._Element) -> etree._Element:
        resp, messages = self.response()
        container = payload.find(M("AttachmentIds"))
        refs = [] if container is None else container.findall(T("AttachmentId"))
        with self.store.lock:
            for ref in refs:
                try:
                    item, index = self.store.attachment_by_id(self.mailbox, ref.get("Id"))
                except EwsError as exc:
                    self.message(messages, exc)
                    continue
                attachment_element(
                    sub(self.message(messages), M("Attachments")), item, index, with_content=True
                )
        return resp


class CreateAttachment(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/createattachment-operation"""

    SERVICE_NAME = "CreateAttachment"
    error_container = "Attachments"

    def call(self, payload: etree._Element) -> etree._Element:
        parent = payload.find(M("ParentItemId"))
        container = payload.find(M("Attachments"))
        if parent is None or container is None:
            raise SoapFault(
                "ErrorSchemaValidation", "CreateAttachment: ParentItemId and Attachments are required."
            )
        resp, messages = self.response()
        with self.store.lock:
            mb = self.mailbox
            try:
                item = self.store.item_by_id(mb, parent.get("Id"))
                added = new_attachments(container)
            except EwsError as exc:
                for _ in container:
                    self.message(messages, exc)
                return resp
            first = len(item.mail.attachments)
            keys = item.keys()
            next_key = max(keys, default=-1) + 1
            new_keys = [*keys, *range(next_key, next_key + len(added))]
            self.store.replace_mime(mb, item, with_attachments(item.mime, added), new_keys)
            for index in range(first, first + len(added)):
                attachment_ids(self.message(messages), item, [index], M("Attachments"))
        return resp


class DeleteAttachment(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/deleteattachment-operation"""

    SERVICE_NAME = "DeleteAttachment"

    def call(self, payload: etree._Element) -> etree._Element:
        container = payload.find(M("AttachmentIds"))
        refs = [] if container is None else container.findall(T("AttachmentId"))
        resp, messages = self.response()
        with self.store.lock:
            for ref in refs:
                try:
                    item, index = self.store.attachment_by_id(self.mailbox, ref.get("Id"))
                except EwsError as exc:
                    self.message(messages, exc)
                    continue
                _delete(self.store, self.mailbox, item, index)
                sub(
                    self.message(messages),
                    M("RootItemId"),
                    RootItemId=item.id,
                    RootItemChangeKey=item.change_key,
                )
        return resp


def _delete(store, mb: Mailbox, item: Item, index: int) -> None:
    keys = [k for i, k in enumerate(item.keys()) if i != index]
    store.replace_mime(mb, item, remove_attachment(item.mime, index), keys)
