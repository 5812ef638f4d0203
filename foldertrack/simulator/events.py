"""Notification events and subscriptions (push-free: streaming and pull).

The store publishes plain, frozen :class:`Event` objects after each change; every matching
subscription queues them with its own watermark. Streaming connections wait on a per-connection
``threading.Event`` so one change wakes only the streams that care.
"""

from __future__ import annotations

import base64
import datetime as dt
import secrets
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field

EVENT_TYPES = ("CopiedEvent", "CreatedEvent", "DeletedEvent", "ModifiedEvent", "MovedEvent", "NewMailEvent")
#: how many events one Notification element carries at most (Exchange: 50)
MAX_EVENTS_PER_NOTIFICATION = 50
#: a streaming subscription with no connection expires after this many minutes (Exchange: 30)
STREAMING_IDLE_MINUTES = 30


@dataclass(frozen=True)
class Event:
    type: str
    timestamp: dt.datetime
    parent_folder_id: str
    item_id: tuple[str, str] | None = None  # (id, change key)
    folder_id: tuple[str, str] | None = None
    old_item_id: tuple[str, str] | None = None
    old_folder_id: tuple[str, str] | None = None
    old_parent_folder_id: str | None = None
    unread_count: int | None = None
    # folder serials used to match subscriptions; not sent
    parent_serial: int = 0
    old_parent_serial: int | None = None
    folder_serial: int | None = None


@dataclass(eq=False)
class QueuedEvent:
    number: int
    ready_at: float
    event: Event


@dataclass(eq=False)
class Subscription:
    id: str
    mailbox: int
    kind: str  # "streaming" or "pull"
    folders: frozenset[int] | None  # None: all folders of the mailbox
    event_types: frozenset[str]
    timeout_minutes: int = 30
    owner: str = ""  # the authenticated principal that created it
    serial: int = 0
    number: int = 0  # watermark counter: number of the last queued event
    acked: int = 0  # pull: events up to this number were acknowledged by GetEvents
    queue: deque[QueuedEvent] = field(default_factory=deque)
    last_used: float = field(default_factory=time.monotonic)
    stream: object | None = None  # the StreamConnection currently carrying it
    expired: bool = False

    def matches(self, event: Event) -> bool:
        if event.type not in self.event_types:
            return False
        if self.folders is None:
            return True
        return (
            event.parent_serial in self.folders
            or (event.old_parent_serial is not None and event.old_parent_serial in self.folders)
            or (event.folder_serial is not None and event.folder_serial in self.folders)
        )

    def watermark(self, number: int | None = None) -> str:
        return encode_watermark(self.serial, self.number if number is None else number)


def new_subscription_id() -> str:
    """Exchange subscription ids are base64 too (GUID + server name); ours carry 32 random bytes."""
    return base64.b64encode(b"\x10\x00FT" + secrets.token_bytes(32)).decode()


def encode_watermark(serial: int, number: int) -> str:
    return base64.b64encode(b"WM" + struct.pack(">QQ", serial, number)).decode()


def decode_watermark(text: str) -> tuple[int, int]:
    try:
        raw = base64.b64decode(text.strip().encode("ascii"), validate=True)
    except ValueError:
        raise ValueError("bad watermark") from None
    if len(raw) != 18 or not raw.startswith(b"WM"):
        raise ValueError("bad watermark")
    serial, number = struct.unpack(">QQ", raw[2:])
    return serial, number


class StreamWaker:
    """What a streaming connection waits on: set when one of its subscriptions got an event."""

    def __init__(self) -> None:
        self.wake = threading.Event()
        self.closed_reason: str | None = None  # "replaced", "expired", "dropped", "stopped"
        self.expired_ids: list[str] = []

    def close(self, reason: str) -> None:
        if self.closed_reason is None:
            self.closed_reason = reason
        self.wake.set()
