"""GetAttachment: file attachment content, base64 in ``t:Content``."""

from __future__ import annotations

from lxml import etree

from foldertrack.simulator.model import EwsError
from foldertrack.simulator.ops.base import Handler
from foldertrack.simulator.render import attachment_element
from foldertrack.simulator.soap import M, T, sub


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
