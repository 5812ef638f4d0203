"""The handler base class: one subclass per EWS operation, like exchangelib's services."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

from lxml import etree

from foldertrack.simulator.model import EwsError, Folder, Mailbox
from foldertrack.simulator.soap import NSMAP, M, Request, SoapFault, T, sub

if TYPE_CHECKING:
    from foldertrack.simulator.faults import Faults
    from foldertrack.simulator.store import Principal, Store


@dataclass
class Context:
    store: Store
    principal: Principal
    mailbox: Mailbox | None  # whose mailbox the request acts on (own, or impersonated)
    request: Request
    faults: Faults
    stopping: threading.Event = field(default_factory=threading.Event)
    heartbeat: float = 30.0


class StreamingResponse:
    """Returned by streaming handlers: the server writes each yielded envelope as one HTTP chunk."""

    def __init__(self, chunks: Iterator[etree._Element], on_close=None):
        self.chunks = chunks
        self.on_close = on_close
        self.drop = False  # set when the connection must be cut without a proper end (fault)


class Handler:
    SERVICE_NAME: ClassVar[str] = ""
    #: a container the schema requires even in error messages (Exchange sends it empty: ``<m:Items/>``)
    error_container: ClassVar[str | None] = None

    def __init__(self, ctx: Context):
        self.ctx = ctx
        self.store = ctx.store

    @property
    def mailbox(self) -> Mailbox:
        mb = self.ctx.mailbox
        if mb is None:
            raise SoapFault(
                "ErrorNonExistentMailbox", "The account has no mailbox; use ExchangeImpersonation."
            )
        return mb

    def call(self, payload: etree._Element) -> etree._Element | StreamingResponse:
        raise NotImplementedError

    # -- building responses -----------------------------------------------------------------------
    def response(self) -> tuple[etree._Element, etree._Element]:
        resp = etree.Element(M(f"{self.SERVICE_NAME}Response"), nsmap=NSMAP)
        return resp, sub(resp, M("ResponseMessages"))

    def message(self, messages: etree._Element, error: EwsError | None = None) -> etree._Element:
        msg = response_message(messages, f"{self.SERVICE_NAME}ResponseMessage", error)
        if error is not None and self.error_container:
            sub(msg, M(self.error_container))
        return msg

    # -- reading requests -------------------------------------------------------------------------
    def folder_from(self, elem: etree._Element) -> Folder:
        """A ``t:FolderId`` or ``t:DistinguishedFolderId`` (with an optional ``t:Mailbox``)."""
        mb = self.mailbox
        if elem.tag == T("DistinguishedFolderId"):
            address = elem.findtext(f"{T('Mailbox')}/{T('EmailAddress')}")
            if address and address.strip().lower() != mb.address.lower():
                other = self.store.mailbox(address.strip())
                if other is not mb:
                    raise EwsError("ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            return self.store.distinguished(mb, (elem.get("Id") or "").strip())
        if elem.tag == T("FolderId"):
            return self.store.folder_by_id(mb, elem.get("Id"))
        raise EwsError(
            "ErrorInvalidIdMalformed", f"Unsupported folder id element {etree.QName(elem).localname}."
        )

    def folder_ids(self, container: etree._Element | None) -> list[etree._Element]:
        if container is None:
            raise SoapFault("ErrorSchemaValidation", f"{self.SERVICE_NAME}: folder ids are missing.")
        return [c for c in container if isinstance(c.tag, str)]

    def item_ids(self, container: etree._Element | None) -> list[etree._Element]:
        if container is None:
            raise SoapFault("ErrorSchemaValidation", f"{self.SERVICE_NAME}: item ids are missing.")
        return [c for c in container if isinstance(c.tag, str)]

    def target_folder(self, payload: etree._Element, tag: str) -> Folder:
        holder = payload.find(M(tag))
        if holder is None or len(holder) == 0:
            raise SoapFault("ErrorSchemaValidation", f"{self.SERVICE_NAME}: {tag} is missing.")
        return self.folder_from(holder[0])

    def target_folder_or_errors(
        self, payload: etree._Element, tag: str, messages: etree._Element, requests
    ) -> Folder | None:
        """:meth:`target_folder`, or ``None`` once each of ``requests`` is answered with its error."""
        try:
            return self.target_folder(payload, tag)
        except EwsError as exc:
            for _ in requests:
                self.message(messages, exc)
            return None


def response_message(messages: etree._Element, tag: str, error: EwsError | None = None) -> etree._Element:
    if error is None:
        msg = sub(messages, M(tag), ResponseClass="Success")
        sub(msg, M("ResponseCode"), "NoError")
        return msg
    msg = sub(messages, M(tag), ResponseClass="Error")
    sub(msg, M("MessageText"), error.text)
    sub(msg, M("ResponseCode"), error.code)
    sub(msg, M("DescriptiveLinkKey"), 0)
    if error.message_xml:
        xml = sub(msg, M("MessageXml"))
        for name, value in error.message_xml.items():
            sub(xml, T("Value"), value, Name=name)
    return msg
