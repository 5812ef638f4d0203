"""Plain value objects shared along the flow (rules → sync → sinks): frozen, so they can cross threads."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

#: CRM record types a folder can be mapped to (Dynamics 365 logical names of "regarding"-able tables).
RECORD_TYPES: tuple[str, ...] = ("account", "contact", "lead", "opportunity", "incident")
#: A custom table's logical name: the publisher's prefix (2-8 letters or digits), ``_``, the name; at most
#: 32 characters (the state database's record type columns). Rules may name any such table.
CUSTOM_RECORD_TYPE = re.compile(r"^[a-z][a-z0-9]{1,7}_[a-z0-9_]*[a-z0-9]$")
MAX_RECORD_TYPE_LENGTH = 32

_RECORD_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,99}$")


def check_record_type(kind: str) -> None:
    """Raise ValueError (a message fit for a rule-file problem) unless ``kind`` is a standard table in
    :data:`RECORD_TYPES` or a custom table's logical name like ``new_project``."""
    if kind in RECORD_TYPES:
        return
    if "_" not in kind:
        raise ValueError(f"record type {kind!r} is not one of {', '.join(RECORD_TYPES)}")
    if not CUSTOM_RECORD_TYPE.match(kind):
        raise ValueError(
            f"record type {kind!r} is not a custom table's logical name "
            "(publisher prefix, '_', name: lower-case letters, digits and '_', like new_project)"
        )
    if len(kind) > MAX_RECORD_TYPE_LENGTH:
        raise ValueError(f"record type {kind!r} is longer than {MAX_RECORD_TYPE_LENGTH} characters")

PartyRole = Literal["from", "to", "cc", "bcc"]
Direction = Literal["incoming", "outgoing"]
ActivityState = Literal["tracked", "untracked"]


@dataclass(frozen=True)
class RecordRef:
    """A CRM record, ``type:id``; ``name`` is for display only and does not take part in equality."""

    type: str
    id: str
    name: str | None = field(default=None, compare=False)

    def __str__(self) -> str:
        return f"{self.type}:{self.id}"

    @classmethod
    def parse(cls, text: str) -> RecordRef:
        """Parse ``TYPE:ID``; raises ValueError with a message fit for a rule-file problem."""
        if not isinstance(text, str) or ":" not in text:
            raise ValueError(f"record reference {text!r} is not TYPE:ID")
        kind, _, ident = text.partition(":")
        kind, ident = kind.strip().lower(), ident.strip()
        check_record_type(kind)
        if not _RECORD_ID.match(ident):
            raise ValueError(f"record id {ident!r} must be 1-100 letters, digits, '.', '_' or '-'")
        return cls(kind, ident)


@dataclass(frozen=True)
class Party:
    """A sender or recipient; ``record`` is set when the address belongs to a known record."""

    role: PartyRole
    address: str
    name: str | None = None
    record: RecordRef | None = None


@dataclass(frozen=True)
class Attachment:
    """Attachment metadata; ``content`` is None when it was larger than the configured limit."""

    name: str
    content_type: str | None
    size: int
    content: bytes | None = field(default=None, repr=False)
    is_inline: bool = False

    @property
    def stored(self) -> bool:
        return self.content is not None


@dataclass(frozen=True)
class Activity:
    """Everything a sink needs to create or update the email activity for one mail, identified by ``key``.

    ``key`` is the idempotency key: the normalised Internet Message-ID, or a hash of sender, sent time,
    subject and body when the mail has none. The same mail tracked from two mailboxes has one key.
    """

    key: str
    mailbox: str
    folder_id: str
    folder_path: str
    message_id: str | None
    subject: str | None
    direction: Direction
    regarding: RecordRef | None
    state: ActivityState = "tracked"
    conversation_id: str | None = None
    text_body: str | None = None
    html_body: str | None = field(default=None, repr=False)
    sender: str | None = None
    sent_at: datetime | None = None
    received_at: datetime | None = None
    parties: tuple[Party, ...] = ()
    attachments: tuple[Attachment, ...] = ()
