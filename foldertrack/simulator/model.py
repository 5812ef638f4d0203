"""The mailbox data model: folders, items and the per-folder change log that feeds sync states."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

from foldertrack.simulator import ids
from foldertrack.simulator.mime import ParsedMail

#: (distinguished id, parent distinguished id, display name, folder class)
DISTINGUISHED_FOLDERS: tuple[tuple[str, str | None, str, str | None], ...] = (
    ("root", None, "", None),
    ("msgfolderroot", "root", "Top of Information Store", "IPF.Note"),
    ("inbox", "msgfolderroot", "Inbox", "IPF.Note"),
    ("outbox", "msgfolderroot", "Outbox", "IPF.Note"),
    ("sentitems", "msgfolderroot", "Sent Items", "IPF.Note"),
    ("drafts", "msgfolderroot", "Drafts", "IPF.Note"),
    ("deleteditems", "msgfolderroot", "Deleted Items", "IPF.Note"),
    ("junkemail", "msgfolderroot", "Junk Email", "IPF.Note"),
    ("calendar", "msgfolderroot", "Calendar", "IPF.Appointment"),
    ("contacts", "msgfolderroot", "Contacts", "IPF.Contact"),
    ("tasks", "msgfolderroot", "Tasks", "IPF.Task"),
)


def now() -> dt.datetime:
    """Microseconds are kept (rendered as whole seconds unless DateTimePrecision or a profile asks)."""
    return dt.datetime.now(dt.UTC)


class EwsError(Exception):
    """An EWS response code (``ErrorItemNotFound`` …) for one item or for the whole request."""

    def __init__(self, code: str, text: str = "", message_xml: dict[str, str] | None = None):
        super().__init__(f"{code}: {text}")
        self.code = code
        self.text = text or code
        self.message_xml = message_xml or {}


@dataclass(eq=False)
class Folder:
    mailbox: int
    serial: int
    name: str
    parent: int | None
    distinguished: str | None = None
    folder_class: str | None = "IPF.Note"
    version: int = 1
    deleted: bool = False
    items: dict[int, None] = field(default_factory=dict)  # insertion-ordered set of item serials
    children: dict[int, None] = field(default_factory=dict)
    # (seq, op, item serial); op is "add", "remove", "update" or "read" (only the read flag changed)
    log: list[tuple[int, str, int]] = field(default_factory=list)

    @property
    def id(self) -> str:
        return ids.encode_id("F", self.mailbox, self.serial)

    @property
    def change_key(self) -> str:
        return ids.change_key("F", self.serial * 1000 + self.version)


@dataclass(eq=False)
class Item:
    mailbox: int
    serial: int
    folder: int
    mime: bytes
    mail: ParsedMail
    received: dt.datetime
    created: dt.datetime
    modified: dt.datetime
    is_read: bool = False
    is_draft: bool = False
    categories: list[str] = field(default_factory=list)
    version: int = 1
    gone: bool = False  # moved away (it has a new id now) or deleted
    item_class: str = "IPM.Note"
    #: a stable key per attachment (parallel to ``mail.attachments``): ids survive deleting another one
    attachment_keys: list[int] | None = None

    @property
    def id(self) -> str:
        return ids.encode_id("I", self.mailbox, self.serial)

    @property
    def change_key(self) -> str:
        return ids.change_key("I", self.serial * 1000 + self.version)

    def keys(self) -> list[int]:
        if self.attachment_keys is None or len(self.attachment_keys) != len(self.mail.attachments):
            self.attachment_keys = list(range(len(self.mail.attachments)))
        return self.attachment_keys

    def attachment_id(self, index: int) -> str:
        return ids.encode_id("A", self.mailbox, self.serial, self.keys()[index])

    def attachment_index(self, key: int) -> int | None:
        keys = self.keys()
        return keys.index(key) if key in keys else None

    @property
    def size(self) -> int:
        return len(self.mime)

    def clone(self, serial: int, folder: int, when: dt.datetime) -> Item:
        return Item(
            mailbox=self.mailbox,
            serial=serial,
            folder=folder,
            mime=self.mime,
            mail=self.mail,
            received=self.received,
            created=self.created,
            modified=when,
            is_read=self.is_read,
            is_draft=self.is_draft,
            categories=list(self.categories),
            item_class=self.item_class,
            attachment_keys=list(self.attachment_keys) if self.attachment_keys is not None else None,
        )


@dataclass(eq=False)
class Mailbox:
    number: int
    address: str
    password: str
    display_name: str = ""
    folders: dict[int, Folder] = field(default_factory=dict)
    items: dict[int, Item] = field(default_factory=dict)
    distinguished: dict[str, int] = field(default_factory=dict)
    seq: int = 0
    hierarchy_log: list[tuple[int, str, int]] = field(default_factory=list)  # (seq, op, folder serial)

    def next_seq(self) -> int:
        self.seq += 1
        return self.seq

    def folder(self, serial: int) -> Folder:
        folder = self.folders.get(serial)
        if folder is None or folder.deleted:
            raise EwsError("ErrorFolderNotFound", "The specified folder could not be found in the store.")
        return folder

    def item(self, serial: int) -> Item:
        item = self.items.get(serial)
        if item is None or item.gone:
            raise EwsError("ErrorItemNotFound", "The specified object was not found in the store.")
        return item

    def root(self) -> Folder:
        return self.folders[self.distinguished["root"]]

    def msg_root(self) -> Folder:
        return self.folders[self.distinguished["msgfolderroot"]]

    def unread_count(self, folder: Folder) -> int:
        return sum(1 for s in folder.items if not self.items[s].is_read)

    def is_below(self, folder: Folder, ancestor: Folder) -> bool:
        current: Folder | None = folder
        while current is not None:
            if current is ancestor:
                return True
            current = self.folders.get(current.parent) if current.parent is not None else None
        return False

    def child_by_name(self, parent: Folder, name: str) -> Folder | None:
        wanted = name.casefold()
        for serial in parent.children:
            child = self.folders[serial]
            if not child.deleted and child.name.casefold() == wanted:
                return child
        return None

    def descendants(self, folder: Folder) -> list[Folder]:
        out: list[Folder] = []
        stack = [folder]
        while stack:
            current = stack.pop()
            for serial in current.children:
                child = self.folders[serial]
                if not child.deleted:
                    out.append(child)
                    stack.append(child)
        return out

    def path(self, folder: Folder) -> str:
        parts = []
        current = folder
        root = self.msg_root()
        while current is not root and current.parent is not None:
            parts.append(current.name)
            current = self.folders[current.parent]
        return "/".join(reversed(parts))
