"""Switching a deployment from EWS to Graph on the same database: the folder and item ids EWS pinned are
translated to Graph ids (``translateExchangeIds``) before the Graph source first reads the mailbox.

Mail identity (the Internet Message-ID key) is the same on both sides; what differs is how folders and
items are named. With the ledger's folder and item ids translated, the first Graph delta of a folder
finds every mail it lists already present: nothing is fetched, written or delivered again. The EWS sync
state means nothing to Graph, so the folder's cursor starts over (``backfill_done`` is kept: a resync, not a
backfill). Ids Graph cannot translate (the item is gone) are left as they are.
"""

from __future__ import annotations

import logging

from sqlalchemy import Engine, select, update

from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.ids import translate_ids
from foldertrack.state.schema import activities, activity_links, dead_letters, ledger, tracked_folders

log = logging.getLogger("foldertrack.sources.graph")


def _is_graph_cursor(state: str | None) -> bool:
    return state is not None and state.startswith(("https://", "http://"))


def adopt_ews_state(engine: Engine, client: GraphClient, mailbox: str) -> int:
    """Translate the EWS ids stored for ``mailbox``; returns how many folders had EWS state."""
    mailbox = mailbox.lower()
    with engine.connect() as conn:
        rows = conn.execute(
            select(tracked_folders.c.folder_id, tracked_folders.c.sync_state).where(
                tracked_folders.c.mailbox == mailbox
            )
        ).all()
    candidates = [
        r.folder_id for r in rows if r.sync_state is not None and not _is_graph_cursor(r.sync_state)
    ]
    if not candidates:
        return 0
    translated = translate_ids(client, mailbox, candidates)
    folders = {old: new or old for old, new in translated.items()}  # may be the same string as in EWS
    with engine.connect() as conn:
        item_ids = [
            r.item_id
            for r in conn.execute(
                select(ledger.c.item_id).where(ledger.c.mailbox == mailbox, ledger.c.folder_id.in_(folders))
            )
        ]
    items = {
        old: new
        for old, new in (translate_ids(client, mailbox, item_ids) if item_ids else {}).items()
        if new is not None and new != old
    }
    with engine.begin() as conn:
        for old, new in folders.items():
            conn.execute(
                update(tracked_folders)
                .where(tracked_folders.c.mailbox == mailbox, tracked_folders.c.folder_id == old)
                .values(folder_id=new, sync_state=None)  # an EWS sync state means nothing to Graph
            )
            if new == old:
                continue
            for table in (ledger, dead_letters, activities):
                conn.execute(
                    update(table)
                    .where(table.c.mailbox == mailbox, table.c.folder_id == old)
                    .values(folder_id=new)
                )
            conn.execute(
                update(activity_links)
                .where(activity_links.c.owner_mailbox == mailbox, activity_links.c.owner_folder_id == old)
                .values(owner_folder_id=new)
            )
        for old, new in items.items():
            conn.execute(
                update(ledger).where(ledger.c.mailbox == mailbox, ledger.c.item_id == old).values(item_id=new)
            )
    log.info(
        "%s: adopted the EWS state of %d folder(s); %d item id(s) translated to Graph ids",
        mailbox,
        len(folders),
        len(items),
    )
    return len(folders)
