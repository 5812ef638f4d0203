"""Read-only Exchange access for the inspection commands, through the watcher's own connector.

Folder listings use one ``FindFolder`` (deep traversal) from ``msgfolderroot`` with item and child counts;
item queries use ``FindItem`` with restrictions (received since, Message-ID, subject). Every failure leaves
as an :class:`~foldertrack.errors.ExchangeError` naming the mailbox and the EWS code, never a password.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime

from exchangelib import Account

from foldertrack.config import Config
from foldertrack.errors import ExchangeError
from foldertrack.exchange.connection import ExchangeConnector
from foldertrack.exchange.convert import normalise_message_id, plain_datetime
from foldertrack.exchange.hierarchy import FolderNode, FolderTree
from foldertrack.retry import describe, is_transient

MAIL_FOLDER_CLASS = "IPF.Note"


@dataclass(frozen=True)
class FolderInfo:
    """One folder of a mailbox as an admin sees it."""

    id: str
    path: str
    name: str
    parent_id: str | None
    folder_class: str | None
    total: int | None
    children: int | None

    @property
    def is_mail(self) -> bool:
        return (self.folder_class or MAIL_FOLDER_CLASS).startswith(MAIL_FOLDER_CLASS)


@dataclass(frozen=True)
class ItemInfo:
    """One mail found by a query: where it is and what it is."""

    folder_id: str
    subject: str
    message_id: str | None
    received: datetime | None
    item_class: str | None


@dataclass(frozen=True)
class Mailbox:
    """A mailbox's folder tree (for rule resolution) and its folders with counts (for display)."""

    address: str
    tree: FolderTree
    folders: tuple[FolderInfo, ...]

    def by_id(self) -> dict[str, FolderInfo]:
        return {f.id: f for f in self.folders}

    def mail_paths(self) -> list[str]:
        return [f.path for f in self.folders if f.is_mail]


class ExchangeReader:
    """Opens mailboxes read-only with the configured service account (impersonation or delegate)."""

    def __init__(self, connector: ExchangeConnector):
        self.connector = connector

    @classmethod
    def from_config(cls, config: Config) -> ExchangeReader:
        """Raises ConfigError when the configuration lacks what connecting needs."""
        from foldertrack.runtime import exchange_settings

        return cls(ExchangeConnector(exchange_settings(config), max_connections=2))

    def close(self) -> None:
        self.connector.close()

    def mailbox(self, address: str) -> Mailbox:
        """The mailbox's whole folder tree below ``msgfolderroot``, with item and child counts."""
        with _exchange(address, "reading the folder tree"):
            account = self.connector.account(address)
            root = account.msg_folder_root
            tree = FolderTree(root_id=root.id, trash_id=_trash_id(account))
            raw = []
            for folder in root.walk():
                if isinstance(folder, Exception):
                    raise folder
                parent = folder.parent_folder_id.id if folder.parent_folder_id else None
                tree.apply(
                    "create", folder.id, FolderNode(folder.id, folder.name or "", parent, folder.folder_class)
                )
                raw.append(folder)
        infos = []
        for folder in raw:
            path = tree.path_of(folder.id)
            if path is None:
                continue
            infos.append(
                FolderInfo(
                    id=folder.id,
                    path=path,
                    name=folder.name or "",
                    parent_id=folder.parent_folder_id.id if folder.parent_folder_id else None,
                    folder_class=folder.folder_class,
                    total=folder.total_count,
                    children=folder.child_folder_count,
                )
            )
        infos.sort(key=lambda f: f.path.casefold())
        return Mailbox(address, tree, tuple(infos))

    def items(
        self,
        address: str,
        folder_id: str,
        *,
        since: datetime | None = None,
        sample: int = 3,
    ) -> tuple[int, list[ItemInfo]]:
        """How many items the folder holds (received at or after ``since``), and the newest ``sample``."""
        with _exchange(address, "reading items"):
            query = self._folder(address, folder_id).all()
            if since is not None:
                query = query.filter(datetime_received__gte=since)
            count = query.count()
            newest = list(
                query.only("subject", "message_id", "datetime_received", "item_class").order_by(
                    "-datetime_received"
                )[:sample]
            )
        return count, [_item_info(folder_id, item) for item in newest if not isinstance(item, Exception)]

    def find(
        self,
        address: str,
        folder_ids: list[str],
        *,
        message_id: str | None = None,
        subject: str | None = None,
        limit: int = 20,
    ) -> list[ItemInfo]:
        """Items in the given folders with this Message-ID (exact) or a subject containing ``subject``."""
        found: list[ItemInfo] = []
        with _exchange(address, "searching items"):
            for folder_id in folder_ids:
                query = self._folder(address, folder_id).all()
                if message_id is not None:
                    query = query.filter(message_id=message_id)
                if subject is not None:
                    query = query.filter(subject__icontains=subject)
                fields = ("subject", "message_id", "datetime_received", "item_class")
                for item in query.only(*fields).order_by("-datetime_received")[:limit]:
                    if not isinstance(item, Exception):
                        found.append(_item_info(folder_id, item))
        return found[:limit]

    def _folder(self, address: str, folder_id: str):
        from exchangelib.folders import Folder

        account: Account = self.connector.account(address)
        return Folder(id=folder_id, root=account.root)


def _item_info(folder_id: str, item) -> ItemInfo:
    return ItemInfo(
        folder_id=folder_id,
        subject=item.subject or "",
        message_id=normalise_message_id(getattr(item, "message_id", None)),
        received=plain_datetime(item.datetime_received),
        item_class=item.item_class,
    )


def _trash_id(account: Account) -> str | None:
    try:
        return account.trash.id
    except Exception:  # display only: a tree without Deleted Items still lists every folder
        return None


class ExchangeRefused(ExchangeError):
    """Exchange answered, and asking again will not help (no such mailbox, no rights, wrong password):
    exit 1, where an unreachable or throttling server (plain ExchangeError) is exit 75, try again later."""

    exit_code = 1


@contextmanager
def _exchange(address: str, what: str) -> Iterator[None]:
    try:
        yield
    except ExchangeError:
        raise
    except Exception as exc:  # exchangelib's error classes carry the EWS code: keep it, drop the rest
        kind = ExchangeError if is_transient(exc) else ExchangeRefused
        raise kind(f"{address}: {what} failed: {describe(exc)}") from exc


__all__ = ["ExchangeReader", "ExchangeRefused", "FolderInfo", "ItemInfo", "Mailbox"]
