"""Graph ids over the EWS store: REST ids, immutable ids, and the mapping that keeps the latter stable.

Graph's default item ids are the EWS ids in URL-safe form (``/`` → ``-``, ``+`` → ``_``) and change when
a message moves, like EWS ids. With ``Prefer: IdType="ImmutableId"`` a message keeps one id for its life
in the mailbox (moves included; a copy is a new message).
https://learn.microsoft.com/graph/outlook-immutable-id

The EWS store gives a moved item a new serial; :class:`ImmutableIds` follows ``MovedEvent``s (published
by the store, seen through its listener hook) to keep ``serial → origin`` and ``origin → current serial``.
Folder ids never change, so folders use the REST form in both modes.
"""

from __future__ import annotations

import base64
import binascii
import struct
import zlib
from dataclasses import dataclass, field

from foldertrack.simulator import ids
from foldertrack.simulator.events import Event
from foldertrack.simulator.model import Folder, Item, Mailbox

_IMMUTABLE_PREFIX = b"\x00\x00\x00\x00\x4d\x49\x44"
_IMMUTABLE = struct.Struct(">IQ")  # mailbox number, origin serial


class GraphIdError(ValueError):
    """Not an id this server issued (``ErrorInvalidIdMalformed``)."""


def rest_id(ews_id: str) -> str:
    return ews_id.replace("/", "-").replace("+", "_")


def ews_id(rest: str) -> str:
    return rest.replace("-", "/").replace("_", "+")


def folder_rest_id(folder: Folder) -> str:
    return rest_id(folder.id)


def encode_immutable(mailbox: int, origin: int) -> str:
    body = _IMMUTABLE_PREFIX + _IMMUTABLE.pack(mailbox, origin)
    return base64.urlsafe_b64encode(body + struct.pack(">I", zlib.crc32(body))).decode().rstrip("=")


def decode_immutable(text: str) -> tuple[int, int] | None:
    """``(mailbox, origin)`` for an immutable id, None for anything else."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None
    if len(raw) != len(_IMMUTABLE_PREFIX) + _IMMUTABLE.size + 4 or not raw.startswith(_IMMUTABLE_PREFIX):
        return None
    body, crc = raw[:-4], struct.unpack(">I", raw[-4:])[0]
    if zlib.crc32(body) != crc:
        return None
    mailbox, origin = _IMMUTABLE.unpack(body[len(_IMMUTABLE_PREFIX) :])
    return mailbox, origin


def decode_rest(text: str, kind: str) -> ids.DecodedId:
    try:
        return ids.decode_id(ews_id(text), kind)
    except ids.MalformedId:
        raise GraphIdError(text) from None


@dataclass
class _MailboxIds:
    origin: dict[int, int] = field(default_factory=dict)  # item serial -> origin serial (moved items only)
    current: dict[int, int] = field(default_factory=dict)  # origin serial -> current item serial


class ImmutableIds:
    """Follows moves so a message's immutable id survives them. Called under ``store.lock``."""

    def __init__(self) -> None:
        self._boxes: dict[int, _MailboxIds] = {}

    def on_events(self, mb: Mailbox, events: list[Event]) -> None:
        for event in events:
            if event.type != "MovedEvent" or event.item_id is None or event.old_item_id is None:
                continue
            new = ids.decode_id(event.item_id[0], "I").serial
            old = ids.decode_id(event.old_item_id[0], "I").serial
            box = self._boxes.setdefault(mb.number, _MailboxIds())
            origin = box.origin.get(old, old)
            box.origin[new] = origin
            box.current[origin] = new

    def origin_of(self, item: Item) -> int:
        box = self._boxes.get(item.mailbox)
        return box.origin.get(item.serial, item.serial) if box is not None else item.serial

    def immutable_id(self, item: Item) -> str:
        return encode_immutable(item.mailbox, self.origin_of(item))

    def item_id(self, item: Item, immutable: bool) -> str:
        return self.immutable_id(item) if immutable else rest_id(item.id)

    def resolve(self, mb: Mailbox, text: str) -> int:
        """The serial of the item ``text`` names now (either id form); raises :class:`GraphIdError`."""
        decoded = decode_immutable(text)
        if decoded is not None:
            mailbox, origin = decoded
            if mailbox != mb.number:
                raise GraphIdError(text)
            box = self._boxes.get(mb.number)
            return box.current.get(origin, origin) if box is not None else origin
        found = decode_rest(text, "I")
        if found.mailbox != mb.number:
            raise GraphIdError(text)
        return found.serial
