"""ConvertId: only what clients use to probe a server (exchangelib's version guess)."""

from __future__ import annotations

from lxml import etree

from foldertrack.simulator.model import EwsError
from foldertrack.simulator.ops.base import Handler
from foldertrack.simulator.soap import M, T, sub


class ConvertId(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/convertid-operation"""

    SERVICE_NAME = "ConvertId"

    def call(self, payload: etree._Element) -> etree._Element:
        resp, messages = self.response()
        container = payload.find(M("SourceIds"))
        for ref in container if container is not None else []:
            if not isinstance(ref.tag, str):
                continue
            if ref.tag == T("AlternateId") and ref.get("Format") == ref.getparent().getparent().get(
                "DestinationFormat"
            ):
                msg = self.message(messages)
                sub(
                    msg,
                    M("AlternateId"),
                    Format=ref.get("Format"),
                    Id=ref.get("Id"),
                    Mailbox=ref.get("Mailbox"),
                )
                continue
            self.message(messages, EwsError("ErrorInvalidIdMalformed", "Id is malformed."))
        return resp
