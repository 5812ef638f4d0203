"""The one interface the watcher reads mailboxes through; EWS (:mod:`.ews`) and Microsoft Graph
(:mod:`.graph.source`) implement it, so rules, ledger, outbox and sinks never know which one is in use.

A source answers four questions: what the folder tree looks like (rule paths → folder ids), what changed
in a folder since a saved cursor (one page at a time, the cursor committed with the page's effects),
what a batch of items is as activities, and (optionally) how to put a category on a mail. Mail identity
is the Internet Message-ID (the activity key) whatever the source, so switching sources never doubles.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, ClassVar

from sqlalchemy import Engine

from foldertrack.errors import ExchangeError
from foldertrack.exchange.hierarchy import FolderTree
from foldertrack.model import Activity, RecordRef
from foldertrack.targets import Target


class CursorInvalid(Exception):
    """The saved cursor (EWS sync state, Graph delta link) is refused: resync the folder from scratch."""


class FolderMissing(Exception):
    """The folder no longer exists in the mailbox."""


class ItemGone(ExchangeError):
    """Write-back: the item id no longer exists (moved or deleted since the ledger saw it).
    EWS ``ErrorItemNotFound``, Graph 404."""

    def __init__(self, item_id: str):
        super().__init__(f"item {item_id} no longer exists")
        self.item_id = item_id


class WriteBackDenied(ExchangeError):
    """Write-back: the service account may read the mailbox but not change its mails (EWS
    ``ErrorAccessDenied``, Graph 403: ``Mail.Read`` only, or scoped out). ``reason`` is the server's own
    code and message, for ``status``."""

    def __init__(self, mailbox: str, reason: str):
        super().__init__(reason)
        self.mailbox = mailbox
        self.reason = reason


@dataclass(frozen=True)
class Change:
    """One item seen by a folder catch-up: ``id`` as the source names it, ``datetime_received`` if known
    (the backfill cutoff compares it)."""

    id: str
    datetime_received: datetime | None = None


@dataclass(frozen=True)
class ChangePage:
    """One page of a folder's changes: ``changes`` are ``("create" | "delete", Change)`` pairs (a delete is
    a departure: moved out or deleted), ``cursor`` the state to save with the page's effects, ``last``
    whether the folder is fully caught up after it."""

    changes: list[tuple[str, Any]]
    cursor: str
    last: bool


@dataclass
class FetchResult:
    """Items fetched for a page: activities by item id, when each copy arrived, items gone since the
    catch-up saw them, per-item failures ``(item id, error, None)``, and items skipped (not mails)."""

    activities: dict[str, Activity] = field(default_factory=dict)
    arrivals: dict[str, datetime | None] = field(default_factory=dict)
    gone: list[str] = field(default_factory=list)
    failed: list[tuple[str, BaseException, Activity | None]] = field(default_factory=list)
    skipped: int = 0


class MailSource(ABC):
    """How the watcher reads mailboxes. ``streams``: whether triggers come from the source's own
    subscriptions (EWS streaming) rather than the watcher's poll timer (or change notifications)."""

    name: ClassVar[str]
    streams: ClassVar[bool] = False

    @abstractmethod
    def load_tree(self, mailbox: str, tree: FolderTree | None) -> FolderTree:
        """The mailbox's folder tree, brought up to date from ``tree`` (its ``sync_state`` is the
        source's hierarchy cursor); ``revision`` bumps when anything changed."""

    @abstractmethod
    def changes(self, mailbox: str, folder_id: str, cursor: str | None, page_size: int) -> ChangePage:
        """The next page of the folder's changes since ``cursor`` (None: everything in it now).
        Raises :class:`CursorInvalid` or :class:`FolderMissing`."""

    @abstractmethod
    def fetch(
        self,
        engine: Engine,
        target: Target,
        item_ids: Sequence[str],
        *,
        max_attachment_bytes: int,
        resolve_address: Callable[[str], RecordRef | None],
    ) -> FetchResult:
        """The activities of ``item_ids`` (in ``target``'s folder). Failures that are about one item land
        in ``failed``; a failure of the whole source raises."""

    @abstractmethod
    def moved_copies(self, engine: Engine, target: Target, fetched: dict[str, Activity]) -> set[str]:
        """Keys (of ``fetched``, item id → activity) whose tracked copy in another tracked folder of this
        mailbox is gone from there although that folder has not caught up yet: the mail moved here."""

    def stale_copies(self, engine: Engine, target: Target, departed: list[str]) -> set[int]:
        """Ledger row ids, in other tracked folders of this mailbox, of mails leaving ``target`` whose items
        are gone from there although that folder has not caught up yet. The default (a source that cannot
        tell cheaply) is none: the other folder's own catch-up settles it."""
        return set()

    def set_categories(self, mailbox: str, item_id: str, add: str | None, remove: str | None) -> bool:
        """Add ``add`` (unless present) and remove ``remove`` (case-insensitively) among the item's Outlook
        categories, keeping the others; write nothing when that changes nothing (then False). Raises
        :class:`ItemGone` or :class:`WriteBackDenied`; other failures as the source raises them (transient
        ones are retried by the caller). Sources without write-back raise ``NotImplementedError``."""
        raise NotImplementedError(f"the {self.name} source cannot write categories")

    def close(self) -> None:  # noqa: B027 - optional hook, most sources hold nothing to release
        """Release connections."""
