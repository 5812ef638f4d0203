"""Opaque EWS identifiers: item ids, folder ids, change keys, attachment ids, sync states, subscriptions.

Real Exchange ids are base64 blobs the client must not interpret; ours are too. Each one carries a kind
tag, the mailbox number and a serial, plus a checksum so that a mangled id is reported as
``ErrorInvalidIdMalformed`` (or ``ErrorInvalidSyncStateData``) rather than silently pointing elsewhere.
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from dataclasses import dataclass

# A fixed prefix makes the ids look like (and be as long as) Exchange's, e.g. "AAMkAD..." for items.
_PREFIXES = {
    b"I": b"\x00\x00\x03\x24\x00\x46\x54",  # item
    b"F": b"\x00\x00\x02\x2e\x00\x46\x54",  # folder
    b"A": b"\x00\x00\x03\x24\x00\x41\x54",  # attachment
}
_BODY = struct.Struct(">cIQI")  # kind, mailbox number, serial, extra


class MalformedId(ValueError):
    """The text is not an id this server issued."""


@dataclass(frozen=True)
class DecodedId:
    kind: str
    mailbox: int
    serial: int
    extra: int = 0


def encode_id(kind: str, mailbox: int, serial: int, extra: int = 0) -> str:
    k = kind.encode()
    body = _PREFIXES[k] + _BODY.pack(k, mailbox, serial, extra)
    return base64.b64encode(body + struct.pack(">I", zlib.crc32(body))).decode()


def decode_id(text: str | None, kind: str) -> DecodedId:
    if not text:
        raise MalformedId("empty id")
    try:
        raw = base64.b64decode(text.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedId(str(exc)) from None
    k = kind.encode()
    prefix = _PREFIXES[k]
    if len(raw) != len(prefix) + _BODY.size + 4 or not raw.startswith(prefix):
        raise MalformedId("bad id length or prefix")
    body, crc = raw[:-4], struct.unpack(">I", raw[-4:])[0]
    if zlib.crc32(body) != crc:
        raise MalformedId("bad id checksum")
    got_kind, mailbox, serial, extra = _BODY.unpack(body[len(prefix) :])
    if got_kind != k:
        raise MalformedId("wrong id kind")
    return DecodedId(kind, mailbox, serial, extra)


def change_key(kind: str, version: int) -> str:
    """Change keys change on every update of the object (Exchange: "CQAAABYAAAA...")."""
    tag = b"\x09\x00\x00\x00\x16\x00\x00\x00" if kind == "I" else b"\x01\x00\x00\x00"
    return base64.b64encode(tag + struct.pack(">Q", version)).decode()


_STATE = struct.Struct(">4sIQQQI")  # magic, mailbox, folder serial, base seq, round end seq, round offset


@dataclass(frozen=True)
class SyncPosition:
    """Where a sync state stands: everything up to ``base`` was reported; when ``end`` is set, the net
    changes of (``base``, ``end``] are being paged out and the first ``offset`` of them were reported."""

    mailbox: int
    folder_serial: int
    base: int
    end: int = 0
    offset: int = 0


def encode_sync_state(magic: bytes, position: SyncPosition) -> str:
    p = position
    body = _STATE.pack(magic, p.mailbox, p.folder_serial, p.base, p.end, p.offset)
    return base64.b64encode(body + struct.pack(">I", zlib.crc32(body))).decode()


def decode_sync_state(text: str, magic: bytes) -> SyncPosition:
    """Raise :class:`MalformedId` for anything we did not issue."""
    try:
        raw = base64.b64decode(text.strip().encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError, ValueError) as exc:
        raise MalformedId(str(exc)) from None
    if len(raw) != _STATE.size + 4:
        raise MalformedId("bad sync state length")
    body, crc = raw[:-4], struct.unpack(">I", raw[-4:])[0]
    if zlib.crc32(body) != crc:
        raise MalformedId("bad sync state checksum")
    got_magic, mailbox, folder_serial, base, end, offset = _STATE.unpack(body)
    if got_magic != magic or (end and end < base):
        raise MalformedId("not a sync state of this kind")
    return SyncPosition(mailbox, folder_serial, base, end, offset)
