"""The EWS source: SyncFolderHierarchy for the tree, SyncFolderItems for a folder's changes, GetItem in
batches (bisecting a batch a bad item breaks, :mod:`foldertrack.exchange.items`) for the activities, and
GetItem + UpdateItem (``NeverOverwrite``) for the feedback category.

The code is what :mod:`foldertrack.sync` did inline before the source interface; behaviour is unchanged.
https://learn.microsoft.com/exchange/client-developer/web-service-reference/syncfolderitems
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from exchangelib import Account, Message
from exchangelib.errors import (
    ErrorAccessDenied,
    ErrorChangeKeyRequired,
    ErrorChangeKeyRequiredForWriteOperations,
    ErrorFolderNotFound,
    ErrorInvalidChangeKey,
    ErrorInvalidSyncStateData,
    ErrorIrresolvableConflict,
    ErrorItemNotFound,
    ErrorStaleObject,
)
from exchangelib.fields import FieldPath
from exchangelib.items import ID_ONLY, NEVER_OVERWRITE
from exchangelib.properties import FolderId
from exchangelib.services import GetItem, SyncFolderItems
from sqlalchemy import Engine

from foldertrack import copies
from foldertrack.exchange.bounds import bounded
from foldertrack.exchange.connection import ExchangeConnector
from foldertrack.exchange.convert import NotAMail, plain_datetime, to_activity
from foldertrack.exchange.hierarchy import FolderTree, load_tree
from foldertrack.exchange.items import counts_against_item, fetch_items
from foldertrack.model import Activity, RecordRef
from foldertrack.retry import describe
from foldertrack.sources.base import (
    ChangePage,
    CursorInvalid,
    FetchResult,
    FolderMissing,
    ItemGone,
    MailSource,
    WriteBackDenied,
)
from foldertrack.targets import Target

log = logging.getLogger("foldertrack.sync")

_RECEIVED = frozenset({FieldPath(field=Message.get_field_by_fieldname("datetime_received"))})
_CATEGORIES = frozenset({FieldPath(field=Message.get_field_by_fieldname("categories"))})
#: the category write raced a change (or lacked a key): read the item again and write once more
_STALE = (
    ErrorIrresolvableConflict,
    ErrorChangeKeyRequiredForWriteOperations,
    ErrorChangeKeyRequired,
    ErrorInvalidChangeKey,
    ErrorStaleObject,
)


class EwsSource(MailSource):
    """Exchange Web Services through exchangelib (impersonation or delegate, per :class:`ExchangeConnector`)."""

    name = "ews"
    streams = True

    def __init__(self, connector: ExchangeConnector):
        self.connector = connector

    def load_tree(self, mailbox: str, tree: FolderTree | None) -> FolderTree:
        return load_tree(self.connector.account(mailbox), tree)

    def changes(self, mailbox: str, folder_id: str, cursor: str | None, page_size: int) -> ChangePage:
        service = SyncFolderItems(account=self.connector.account(mailbox))
        try:
            changes = list(
                service.call(
                    folder=FolderId(id=folder_id),
                    shape=ID_ONLY,
                    additional_fields=_RECEIVED,
                    sync_state=cursor,
                    ignore=None,
                    max_changes_returned=page_size,
                    sync_scope=None,
                )
            )
        except ErrorInvalidSyncStateData as exc:
            raise CursorInvalid(str(exc)) from exc
        except ErrorFolderNotFound as exc:
            raise FolderMissing(folder_id) from exc
        return ChangePage(changes, service.sync_state, bool(service.includes_last_item_in_range))

    def fetch(
        self,
        engine: Engine,
        target: Target,
        item_ids: Sequence[str],
        *,
        max_attachment_bytes: int,
        resolve_address: Callable[[str], RecordRef | None],
    ) -> FetchResult:
        wanted = list(item_ids)
        out = FetchResult()
        if not wanted:
            return out
        account = self.connector.account(target.mailbox)
        fetched = fetch_items(account, wanted, probe=lambda: copies.probe_item(engine, target, wanted))
        for item_id in wanted:
            item = fetched.get(item_id)
            if isinstance(item, ErrorItemNotFound):
                out.gone.append(item_id)  # moved on since the sync saw it; the next sync shows where it went
                continue
            if isinstance(item, Exception):
                if not counts_against_item(item):
                    raise item
                out.failed.append((item_id, item, None))
                continue
            out.arrivals[item_id] = plain_datetime(getattr(item, "last_modified_time", None))
            try:
                activity = to_activity(
                    item,
                    mailbox=target.mailbox,
                    folder_id=target.folder_id,
                    folder_path=target.path,
                    regarding=target.record,
                    max_attachment_bytes=max_attachment_bytes,
                    resolve_address=resolve_address,
                )
            except NotAMail as exc:
                log.info("%s %s: skipping item that is not a mail (%s)", target.mailbox, target.path, exc)
                out.skipped += 1
            except ErrorItemNotFound:  # moved away while its attachments were read: gone, not failing
                out.gone.append(item_id)
            except Exception as exc:  # a malformed mail must not stop the folder
                if not counts_against_item(exc):
                    raise
                out.failed.append((item_id, exc, None))
            else:
                out.activities[item_id] = bounded(activity, target.mailbox, target.path)
        return out

    def moved_copies(self, engine: Engine, target: Target, fetched: dict[str, Activity]) -> set[str]:
        account = self.connector.account(target.mailbox)
        return copies.moved_owner_copies(engine, target, account, fetched.values())

    def stale_copies(self, engine: Engine, target: Target, departed: list[str]) -> set[int]:
        account = self.connector.account(target.mailbox)
        return copies.stale_copies(engine, target, account, departed)

    def set_categories(self, mailbox: str, item_id: str, add: str | None, remove: str | None) -> bool:
        """GetItem (categories and ChangeKey), then UpdateItem with ``ConflictResolution="NeverOverwrite"``:
        a change the owner made since the read refuses the write instead of being overwritten, so the item is
        read and written once more.
        https://learn.microsoft.com/exchange/client-developer/web-service-reference/updateitem-operation"""
        account = self.connector.account(mailbox)
        try:
            try:
                return _write_categories(account, item_id, add, remove)
            except _STALE as error:
                log.debug("%s %s: %s; reading the item again", mailbox, item_id, type(error).__name__)
                return _write_categories(account, item_id, add, remove)
        except ErrorItemNotFound:
            raise ItemGone(item_id) from None
        except ErrorAccessDenied as error:
            raise WriteBackDenied(mailbox, describe(error)) from error

    def close(self) -> None:
        self.connector.close()


def _write_categories(account: Account, item_id: str, add: str | None, remove: str | None) -> bool:
    """One read and (when anything changes) one write of the item's categories."""
    [item] = list(
        GetItem(account=account).call(items=[(item_id, None)], additional_fields=_CATEGORIES, shape=ID_ONLY)
    )
    if isinstance(item, Exception):
        raise item  # ErrorItemNotFound, ErrorAccessDenied, ...
    current = list(item.categories or [])
    wanted = [c for c in current if remove is None or c.casefold() != remove.casefold()]
    if add is not None and not any(c.casefold() == add.casefold() for c in wanted):
        wanted.append(add)
    if wanted == current:
        return False
    item.account = account
    item.categories = wanted
    item.save(update_fields=["categories"], conflict_resolution=NEVER_OVERWRITE)
    return True
