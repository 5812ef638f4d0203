"""ConvertId: an item, folder or attachment id of this server from one id format into another."""

from __future__ import annotations

import base64
import binascii

from lxml import etree

from foldertrack.simulator import ids
from foldertrack.simulator.model import EwsError
from foldertrack.simulator.ops.base import Handler
from foldertrack.simulator.soap import M, SoapFault, T, sub

XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
_ENTRY_FLAGS = b"\x00\x00\x00\x00"  # MAPI entry ids start with four flag bytes
_STORE_PREFIX = b"\x01"
FORMATS = ("EwsLegacyId", "EwsId", "EntryId", "HexEntryId", "StoreId", "OwaId")


def _raw(format_: str, text: str) -> bytes:
    """The id's bytes (what ``ids.encode_id`` base64-encodes), from any format; ValueError if not ours."""
    if format_ in ("EwsId", "EwsLegacyId"):
        raw = base64.b64decode(text, validate=True)
    elif format_ == "OwaId":
        raw = base64.urlsafe_b64decode(text.encode("ascii") + b"=" * (-len(text) % 4))
    elif format_ == "StoreId":
        raw = base64.b64decode(text, validate=True)
        raw = raw[len(_STORE_PREFIX) :] if raw.startswith(_STORE_PREFIX) else b""
    else:
        raw = bytes.fromhex(text) if format_ == "HexEntryId" else base64.b64decode(text, validate=True)
        raw = raw[len(_ENTRY_FLAGS) :] if raw.startswith(_ENTRY_FLAGS) else b""
    ews = base64.b64encode(raw).decode()
    for kind in ("I", "F", "A"):
        try:
            ids.decode_id(ews, kind)
            return raw
        except ids.MalformedId:
            continue
    raise ValueError("not an id of this server")


def _encode(format_: str, raw: bytes) -> str:
    if format_ in ("EwsId", "EwsLegacyId"):
        return base64.b64encode(raw).decode()
    if format_ == "OwaId":
        return base64.urlsafe_b64encode(raw).decode().rstrip("=")
    if format_ == "StoreId":
        return base64.b64encode(_STORE_PREFIX + raw).decode()
    if format_ == "HexEntryId":
        return (_ENTRY_FLAGS + raw).hex().upper()
    return base64.b64encode(_ENTRY_FLAGS + raw).decode()


class ConvertId(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/convertid-operation"""

    SERVICE_NAME = "ConvertId"

    def call(self, payload: etree._Element) -> etree._Element:
        destination = payload.get("DestinationFormat")
        if destination not in FORMATS:
            raise SoapFault("ErrorSchemaValidation", f"Invalid DestinationFormat {destination!r}.")
        resp, messages = self.response()
        container = payload.find(M("SourceIds"))
        for ref in container if container is not None else []:
            if not isinstance(ref.tag, str):
                continue
            source = ref.get("Format") or ""
            text = (ref.get("Id") or "").strip()
            if ref.tag != T("AlternateId") or source not in FORMATS:
                self.message(messages, EwsError("ErrorInvalidIdMalformed", "Id is malformed."))
                continue
            if not text:
                self.message(messages, EwsError("ErrorInvalidIdEmpty", "Id must be non-empty."))
                continue
            try:
                converted = _encode(destination, _raw(source, text))
            except (ValueError, binascii.Error, UnicodeEncodeError):
                self.message(messages, EwsError("ErrorInvalidIdMalformed", "Id is malformed."))
                continue
            alternate = sub(
                self.message(messages),
                M("AlternateId"),
                Format=destination,
                Id=converted,
                Mailbox=ref.get("Mailbox"),
            )
            alternate.set(XSI_TYPE, "t:AlternateIdType")
        return resp
