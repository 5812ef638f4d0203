"""The in-memory Exchange store: accounts, mailboxes, id resolution and event publishing.

One re-entrant lock guards everything; every operation holds it only for in-memory work. Mutations
(:mod:`.mutations`) append to each folder's change log (read by sync states, :mod:`.changes`) and publish
:class:`~.events.Event` objects to the matching subscriptions (:mod:`.subscriptions`).
"""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from foldertrack.simulator import ids
from foldertrack.simulator.events import Event, QueuedEvent, StreamWaker, Subscription
from foldertrack.simulator.model import DISTINGUISHED_FOLDERS, EwsError, Folder, Item, Mailbox
from foldertrack.simulator.mutations import Mutations
from foldertrack.simulator.profiles import EXCHANGE, ServerProfile
from foldertrack.simulator.subscriptions import SubscriptionRegistry

MAX_QUEUED_EVENTS = 10_000


@dataclass
class ServiceAccount:
    address: str
    password: str
    impersonation: bool


@dataclass(frozen=True)
class Principal:
    """Who authenticated: a mailbox owner or a service account."""

    address: str
    mailbox: Mailbox | None
    can_impersonate: bool


class Store(Mutations, SubscriptionRegistry):
    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.mailboxes: dict[str, Mailbox] = {}
        self.by_number: dict[int, Mailbox] = {}
        self.service_accounts: dict[str, ServiceAccount] = {}
        self._serials = itertools.count(1)
        self.subscriptions: dict[str, Subscription] = {}
        self.subs_by_mailbox: dict[int, list[Subscription]] = {}
        self.notification_delay = 0.0  # seconds; set by the delay_notifications fault
        self.minute = 60.0  # seconds per "minute" of subscription/connection timeouts (tests shorten it)
        self.profile: ServerProfile = EXCHANGE  # how this server differs from Exchange (:mod:`.profiles`)
        #: mailboxes (lower-case) others may read but not change: UpdateItem -> ErrorAccessDenied (Reviewer rights)
        self.read_only: set[str] = set()
        #: called with (mailbox, events) for every published batch, under the lock (Graph: ids, notifications)
        self.listeners: list[Callable[[Mailbox, list[Event]], None]] = []

    def next_serial(self) -> int:
        return next(self._serials)

    # -- accounts ---------------------------------------------------------------------------------
    def add_mailbox(self, address: str, password: str, display_name: str | None = None) -> Mailbox:
        key = address.lower()
        with self.lock:
            if key in self.mailboxes or key in self.service_accounts:
                raise ValueError(f"account {address} exists already")
            mb = Mailbox(number=len(self.by_number) + 1, address=address, password=password)
            mb.display_name = display_name or address.split("@")[0].replace(".", " ").title()
            for dist, parent, name, folder_class in DISTINGUISHED_FOLDERS:
                parent_serial = mb.distinguished[parent] if parent else None
                folder = Folder(mb.number, self.next_serial(), name, parent_serial, dist, folder_class)
                mb.folders[folder.serial] = folder
                mb.distinguished[dist] = folder.serial
                if parent_serial is not None:
                    mb.folders[parent_serial].children[folder.serial] = None
                mb.hierarchy_log.append((mb.next_seq(), "add", folder.serial))
            self.mailboxes[key] = mb
            self.by_number[mb.number] = mb
            return mb

    def add_service_account(self, address: str, password: str, impersonation: bool = True) -> None:
        with self.lock:
            if address.lower() in self.mailboxes:
                raise ValueError(f"account {address} exists already")
            self.service_accounts[address.lower()] = ServiceAccount(address, password, impersonation)

    def authenticate(self, user: str, password: str) -> Principal | None:
        key = user.lower()
        if "\\" in key:  # DOMAIN\user
            key = key.split("\\", 1)[1]
        with self.lock:
            mb = self.mailboxes.get(key)
            if mb is not None and mb.password == password:
                return Principal(mb.address, mb, False)
            svc = self.service_accounts.get(key)
            if svc is not None and svc.password == password:
                return Principal(svc.address, None, svc.impersonation)
        return None

    def mailbox(self, address: str) -> Mailbox:
        mb = self.mailboxes.get(address.lower())
        if mb is None:
            raise EwsError("ErrorNonExistentMailbox", f"No mailbox with such guid or SMTP address: {address}")
        return mb

    # -- ids --------------------------------------------------------------------------------------
    def _decode(self, mb: Mailbox, text: str | None, kind: str) -> int:
        if not text:
            raise EwsError("ErrorInvalidIdEmpty", "Id must be non-empty.")
        try:
            decoded = ids.decode_id(text, kind)
        except ids.MalformedId:
            raise EwsError("ErrorInvalidIdMalformed", "Id is malformed.") from None
        if decoded.mailbox != mb.number:
            if decoded.mailbox in self.by_number:
                raise EwsError("ErrorAccessDenied", "Access is denied. Check credentials and try again.")
            raise EwsError("ErrorInvalidIdMalformed", "Id is malformed.")
        return decoded.serial

    def folder_by_id(self, mb: Mailbox, text: str | None) -> Folder:
        return mb.folder(self._decode(mb, text, "F"))

    def item_by_id(self, mb: Mailbox, text: str | None) -> Item:
        return mb.item(self._decode(mb, text, "I"))

    def attachment_by_id(self, mb: Mailbox, text: str | None) -> tuple[Item, int]:
        if not text:
            raise EwsError("ErrorInvalidIdEmpty", "Id must be non-empty.")
        try:
            decoded = ids.decode_id(text, "A")
        except ids.MalformedId:
            raise EwsError("ErrorInvalidIdMalformed", "Id is malformed.") from None
        if decoded.mailbox != mb.number:
            raise EwsError("ErrorAccessDenied", "Access is denied. Check credentials and try again.")
        item = mb.items.get(decoded.serial)
        index = item.attachment_index(decoded.extra) if item is not None and not item.gone else None
        if item is None or index is None:
            raise EwsError("ErrorItemNotFound", "The specified object was not found in the store.")
        return item, index

    def distinguished(self, mb: Mailbox, name: str) -> Folder:
        serial = mb.distinguished.get(name)
        if serial is None:
            raise EwsError("ErrorFolderNotFound", "The specified folder could not be found in the store.")
        return mb.folder(serial)

    def folder_by_path(self, mb: Mailbox, path: str) -> Folder:
        """``Inbox/Customers/Contoso``, relative to msgfolderroot; names compare case-insensitively."""
        folder = mb.msg_root()
        for part in [p for p in path.strip("/").split("/") if p]:
            child = mb.child_by_name(folder, part)
            if child is None:
                raise EwsError("ErrorFolderNotFound", f"No folder {path!r} in {mb.address}")
            folder = child
        return folder

    # -- events -----------------------------------------------------------------------------------
    def publish(self, mb: Mailbox, events: list[Event]) -> None:
        for listener in self.listeners:
            listener(mb, events)
        subs = self.subs_by_mailbox.get(mb.number)
        if not subs:
            return
        ready_at = time.monotonic() + self.notification_delay
        batch = self.profile.notification_batch_seconds
        if batch:  # held, then released with everything else of the same window
            ready_at = math.ceil(ready_at / batch) * batch
        for sub in subs:
            wake = False
            for event in events:
                if sub.matches(event):
                    sub.number += 1
                    sub.queue.append(QueuedEvent(sub.number, ready_at, event))
                    if len(sub.queue) > MAX_QUEUED_EVENTS:  # nobody reads it: keep memory bounded
                        sub.queue.popleft()
                    wake = True
            if wake and isinstance(sub.stream, StreamWaker):
                sub.stream.wake.set()
