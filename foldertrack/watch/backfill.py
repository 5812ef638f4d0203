"""Is a folder's next catch-up its backfill (first sync), and how many mails does the backfill face?

A first sync tracks the mails already in the folder when its rule appeared: not moves, so the watcher keeps
them out of the move → activity latency (``WatchObserver.backfilled``). As it begins, the folder's item
count is read once from Exchange (``GetFolder`` ``TotalCount``) and stored, so ``status`` shows
``done/total`` while it pages through.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from exchangelib.folders import Folder
from exchangelib.properties import FieldPath
from exchangelib.services import GetFolder
from sqlalchemy import Engine, update

from foldertrack.exchange.connection import ExchangeConnector
from foldertrack.retry import describe
from foldertrack.state import watch_store as store
from foldertrack.state.schema import tracked_folders

log = logging.getLogger("foldertrack.watch")

_TOTAL_COUNT = [FieldPath(field=Folder.get_field_by_fieldname("total_count"))]


def backfilling(
    engine: Engine,
    connector: ExchangeConnector,
    mailbox: str,
    folder_id: str,
    on_error: Callable[[BaseException], None] | None = None,
) -> bool:
    """Whether the folder's next catch-up is (part of) its first sync; at its very start, note the total
    (``on_error``: told when reading it fails, so the errors metric counts it)."""
    with engine.connect() as conn:
        row = store.folder(conn, mailbox, folder_id)
    if row is None:
        return False
    if row.sync_state is None and row.backfill_total is None:
        _note_total(engine, connector, mailbox, folder_id, on_error)
    return row.sync_state is None or not row.backfill_done


def _note_total(
    engine: Engine,
    connector: ExchangeConnector,
    mailbox: str,
    folder_id: str,
    on_error: Callable[[BaseException], None] | None = None,
) -> None:
    """Read the folder's item count from Exchange and store it; progress stays "so far" if that fails."""
    try:
        if hasattr(connector, "folder_total"):  # a mail source (Graph: the folder's totalItemCount)
            total = connector.folder_total(mailbox, folder_id)
            folder = None
        else:
            account = connector.account(mailbox)
            (folder,) = GetFolder(account=account).call(
                folders=[Folder(root=account.root, id=folder_id)],
                additional_fields=_TOTAL_COUNT,
                shape="IdOnly",
            )
            total = getattr(folder, "total_count", None)
        if isinstance(folder, Exception) or total is None:
            return
        with store.writing(engine) as conn:
            conn.execute(
                update(tracked_folders)
                .where(tracked_folders.c.mailbox == mailbox, tracked_folders.c.folder_id == folder_id)
                .values(backfill_total=int(total))
            )
    except Exception as exc:  # advisory: the sync goes on; the error is still counted, never silent
        log.debug("%s: folder item count for backfill progress unavailable: %s", mailbox, describe(exc))
        if on_error is not None:
            on_error(exc)
