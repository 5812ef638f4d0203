"""The in-process API: start a simulator, add mailboxes, deliver mail, act as a user, inject faults."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from lxml import etree

from foldertrack.simulator import ids
from foldertrack.simulator.dataverse.store import Crm
from foldertrack.simulator.faults import Faults
from foldertrack.simulator.graph import GraphService
from foldertrack.simulator.identity import Identity
from foldertrack.simulator.mime import MailSpec
from foldertrack.simulator.model import EwsError, Folder, Mailbox
from foldertrack.simulator.profiles import ServerProfile, profile_named
from foldertrack.simulator.server import SimHTTPServer
from foldertrack.simulator.stats import Stats
from foldertrack.simulator.store import Store
from foldertrack.simulator.tls import TlsListener

log = logging.getLogger(__name__)

Observer = Callable[[etree._Element], None]


@dataclass(frozen=True)
class ItemSummary:
    id: str
    subject: str
    message_id: str | None
    is_read: bool
    categories: tuple[str, ...]


class MailboxHandle:
    """Act as the mailbox's user (Outlook, a phone, an inbox rule): every change fires the usual events."""

    def __init__(self, sim: Simulator, mailbox: Mailbox):
        self._sim = sim
        self._store = sim.store
        self._mb = mailbox

    @property
    def address(self) -> str:
        return self._mb.address

    def _folder(self, ref: str) -> Folder:
        try:
            ids.decode_id(ref, "F")
        except ids.MalformedId:
            return self._store.folder_by_path(self._mb, ref)
        return self._store.folder_by_id(self._mb, ref)

    def create_folder(self, path: str) -> str:
        """Create ``path`` (relative to msgfolderroot) and any missing parents; return the folder id."""
        with self._store.lock:
            folder = self._mb.msg_root()
            for part in [p for p in path.strip("/").split("/") if p]:
                child = self._mb.child_by_name(folder, part)
                folder = child if child is not None else self._store.create_folder(self._mb, folder, part)
            return folder.id

    def folder_id(self, path: str) -> str:
        with self._store.lock:
            return self._folder(path).id

    def folder_path(self, folder_id: str) -> str:
        with self._store.lock:
            return self._mb.path(self._store.folder_by_id(self._mb, folder_id))

    def folders(self) -> list[str]:
        with self._store.lock:
            return sorted(self._mb.path(f) for f in self._mb.descendants(self._mb.msg_root()))

    def deliver(self, mail: MailSpec | bytes, folder: str = "Inbox") -> str:
        return self._sim.deliver(self._mb.address, mail, folder=folder)

    def move_item(self, item_id: str, folder: str) -> str:
        with self._store.lock:
            item = self._store.item_by_id(self._mb, item_id)
            return self._store.move_item(self._mb, item, self._folder(folder)).id

    def copy_item(self, item_id: str, folder: str) -> str:
        with self._store.lock:
            item = self._store.item_by_id(self._mb, item_id)
            return self._store.copy_item(self._mb, item, self._folder(folder)).id

    def delete_item(self, item_id: str, hard: bool = False) -> str | None:
        """Soft (default): move to Deleted Items and return the new id; hard: gone, returns None."""
        with self._store.lock:
            item = self._store.item_by_id(self._mb, item_id)
            moved = self._store.delete_item(self._mb, item, "HardDelete" if hard else "MoveToDeletedItems")
            return moved.id if moved is not None else None

    def mark_read(self, item_id: str, is_read: bool = True) -> None:
        with self._store.lock:
            self._store.update_item(self._mb, self._store.item_by_id(self._mb, item_id), is_read=is_read)

    def set_categories(self, item_id: str, categories: list[str]) -> None:
        with self._store.lock:
            self._store.update_item(
                self._mb, self._store.item_by_id(self._mb, item_id), categories=categories
            )

    def rename_folder(self, folder: str, new_name: str) -> str:
        with self._store.lock:
            return self._store.rename_folder(self._mb, self._folder(folder), new_name).id

    def move_folder(self, folder: str, new_parent: str) -> str:
        with self._store.lock:
            return self._store.move_folder(self._mb, self._folder(folder), self._folder(new_parent)).id

    def delete_folder(self, folder: str, hard: bool = False) -> None:
        with self._store.lock:
            self._store.delete_folder(
                self._mb, self._folder(folder), "HardDelete" if hard else "MoveToDeletedItems"
            )

    def items(self, folder: str = "Inbox") -> list[ItemSummary]:
        with self._store.lock:
            found = self._folder(folder)
            out = []
            for serial in found.items:
                item = self._mb.items[serial]
                out.append(
                    ItemSummary(
                        item.id, item.mail.subject, item.mail.message_id, item.is_read, tuple(item.categories)
                    )
                )
            return out

    def item_ids(self, folder: str = "Inbox") -> list[str]:
        return [s.id for s in self.items(folder)]


class Simulator:
    """An EWS server with in-memory mailboxes. ``with Simulator() as sim:`` starts it on a free port.

    ``minute`` is how many seconds one minute of a ``ConnectionTimeout`` or pull ``Timeout`` lasts (tests
    shorten it); ``heartbeat`` is the seconds between keep-alive envelopes on an idle stream.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        heartbeat: float = 30.0,
        minute: float = 60.0,
        tls: bool = True,
        tls_port: int = 0,
    ):
        self.host = host
        self.port = port
        self.heartbeat = heartbeat
        self.store = Store()
        self.store.minute = minute
        self.faults = Faults(self.store)
        self.stats = Stats()
        # Entra ID token endpoint + Dataverse + the HTTPS listener (identity.py, dataverse/, tls.py)
        self.identity = Identity()
        self.crm = Crm()
        self.crm.faults.expire_tokens_hook = self.identity.expire_tokens
        self.graph = GraphService(self)  # Microsoft Graph under /v1.0/ (simulator/graph/)
        self._tls = TlsListener(self, host, tls_port) if tls else None
        self.stopping = threading.Event()
        self._observers: list[Observer] = []
        self._server: SimHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> Simulator:
        if self._server is not None:
            return self
        self.stopping.clear()
        self._server = SimHTTPServer((self.host, self.port), self)
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="ews-sim-server",
            daemon=True,
        )
        self._thread.start()
        if self._tls is not None:
            try:
                self._tls.start()
            except BaseException:
                self.stop()
                raise
        return self

    def stop(self) -> None:
        """Stop accepting, end every stream and connection, and join every thread the server started."""
        server, self._server = self._server, None
        if server is None:
            return
        self.stopping.set()
        for waker in list(self.faults.streams):
            waker.close("stopped")
        server.shutdown()
        server.server_close()
        server.close_connections()
        server.join_threads()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None
        if self._tls is not None:
            self._tls.stop()
        self.graph.stop()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/EWS/Exchange.asmx"

    @property
    def control_url(self) -> str:
        return self.url.replace("/EWS/Exchange.asmx", "/control/faults")

    @property
    def https_base(self) -> str:
        """``https://127.0.0.1:PORT``: the HTTPS listener (same routes); the Dataverse org URL."""
        if self._tls is None:
            raise RuntimeError("this simulator was started with tls=False")
        return self._tls.base_url

    @property
    def ca_path(self) -> str:
        """The PEM file of the CA that signed the HTTPS listener's certificate (``verify=sim.ca_path``)."""
        if self._tls is None:
            raise RuntimeError("this simulator was started with tls=False")
        return self._tls.ca_path

    # -- server profile ---------------------------------------------------------------------------
    @property
    def profile(self) -> ServerProfile:
        return self.store.profile

    def use_profile(self, profile: str | ServerProfile) -> ServerProfile:
        """Switch the server profile (:data:`~.profiles.PROFILES` name or a ``ServerProfile``), any time."""
        chosen = profile_named(profile)
        with self.store.lock:
            self.store.profile = chosen
        return chosen

    # -- accounts ---------------------------------------------------------------------------------
    def add_mailbox(
        self, address: str, password: str = "pw", display_name: str | None = None
    ) -> MailboxHandle:
        return MailboxHandle(self, self.store.add_mailbox(address, password, display_name))

    def add_service_account(self, address: str, password: str = "pw", impersonation: bool = True) -> None:
        self.store.add_service_account(address, password, impersonation)

    def mailbox(self, address: str) -> MailboxHandle:
        with self.store.lock:
            return MailboxHandle(self, self.store.mailbox(address))

    def mailboxes(self) -> list[str]:
        with self.store.lock:
            return [mb.address for mb in self.store.by_number.values()]

    def subscriptions(self) -> list[dict[str, object]]:
        """Live subscriptions (expired ones are dropped first): id, mailbox, kind, streaming or not."""
        with self.store.lock:
            return [
                {
                    "id": sub.id,
                    "mailbox": self.store.by_number[sub.mailbox].address,
                    "kind": sub.kind,
                    "connected": sub.stream is not None,
                    "queued": len(sub.queue),
                }
                for sub in self.store.live_subscriptions()
            ]

    # -- mail -------------------------------------------------------------------------------------
    def deliver(self, address: str, mail: MailSpec | bytes, folder: str = "Inbox") -> str:
        """Deliver like SMTP (or an inbox rule when ``folder`` is not the Inbox): Created + NewMail events."""
        mime = mail.to_mime() if isinstance(mail, MailSpec) else bytes(mail)
        with self.store.lock:
            mb = self.store.mailbox(address)
            target = self.store.folder_by_path(mb, folder)
            return self.store.create_item(mb, target, mime, delivered=True).id

    # -- observers --------------------------------------------------------------------------------
    def add_observer(self, observer: Observer) -> None:
        """Call ``observer(response_element)`` with every ``m:*Response`` sent (stream chunks too)."""
        self._observers.append(observer)

    def remove_observer(self, observer: Observer) -> None:
        self._observers.remove(observer)

    def observe(self, response: etree._Element) -> None:
        for observer in list(self._observers):
            try:
                observer(response)
            except Exception:
                log.exception("simulator response observer failed")


__all__ = ["EwsError", "ItemSummary", "MailboxHandle", "Simulator"]
