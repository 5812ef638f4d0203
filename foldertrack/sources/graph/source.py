"""The Microsoft Graph source behind :class:`~foldertrack.sources.base.MailSource`.

- Folder tree: ``mailFolders/delta`` from ``msgfolderroot`` (the tree's ``sync_state`` is its delta link),
  built into the same :class:`~foldertrack.exchange.hierarchy.FolderTree` the rules resolve against.
- A folder's changes: one ``messages/delta`` page per call; the whole next/delta link is the cursor the
  synchroniser commits with the page's effects; ``@removed`` = departure; 410 → :class:`CursorInvalid`.
- Items: ``$batch`` GETs (20 per request) with attachment metadata, then file contents up to the limit.
- Ids are immutable (``Prefer: IdType="ImmutableId"``), so a mail moved between two tracked folders keeps
  its id: that alone tells the move (no request).

https://learn.microsoft.com/graph/delta-query-messages
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any
from urllib.parse import quote, urlencode

from sqlalchemy import Engine, select

from foldertrack import copies
from foldertrack.exchange.bounds import bounded
from foldertrack.exchange.hierarchy import FolderNode, FolderTree
from foldertrack.model import Activity, RecordRef
from foldertrack.sources.base import (
    Change,
    ChangePage,
    CursorInvalid,
    FetchResult,
    FolderMissing,
    ItemGone,
    MailSource,
    WriteBackDenied,
)
from foldertrack.sources.graph import items
from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.delta import DEFAULT_PAGE_SIZE, folder_delta, message_delta, user_path
from foldertrack.sources.graph.errors import (
    GraphAuthError,
    GraphNotFound,
    GraphSyncStateNotFound,
    GraphTransientError,
)
from foldertrack.sources.graph.migrate import adopt_ews_state
from foldertrack.state import ledger_store
from foldertrack.state.schema import ledger
from foldertrack.targets import Target

log = logging.getLogger("foldertrack.sync")

#: what an activity is built from, plus when the copy arrived in its folder (see sync._track)
FETCH_SELECT = (*items.MESSAGE_SELECT, "lastModifiedDateTime")


class GraphSource(MailSource):
    """Mailboxes read through Microsoft Graph (app-only, ``Mail.Read`` or ``Mail.ReadWrite``)."""

    name = "graph"
    streams = False  # triggers: the watcher's short delta poll (or change notifications)

    def __init__(
        self, client: GraphClient, *, page_size: int = DEFAULT_PAGE_SIZE, engine: Engine | None = None
    ):
        self.client = client
        self.page_size = page_size
        self.engine = engine  # given: EWS ids stored for a mailbox are translated on its first read
        self._listed: dict[tuple[str, str], set[str]] = {}  # ids a from-scratch chain listed so far

    # -- folders ---------------------------------------------------------------------------------------------

    def load_tree(self, mailbox: str, tree: FolderTree | None) -> FolderTree:
        if tree is None and self.engine is not None:
            adopt_ews_state(self.engine, self.client, mailbox)  # a deployment moved from EWS (once)
        if tree is None or tree.sync_state is None:
            root = self.client.get(
                mailbox, f"{user_path(mailbox)}/mailFolders/msgfolderroot", params={"$select": "id"}
            )
            trash = self.client.get(
                mailbox, f"{user_path(mailbox)}/mailFolders/deleteditems", params={"$select": "id"}
            )
            tree = FolderTree(root_id=str(root["id"]), trash_id=str(trash["id"]))
        chain = folder_delta(self.client, mailbox, self.page_size)
        for page in chain.pages(tree.sync_state):
            if page.restarted:  # the folder delta link expired: the whole tree again
                tree.nodes.clear()
                tree.revision += 1
            for entry in page.changed:
                old = tree.nodes.get(str(entry["id"]))
                node = FolderNode(
                    str(entry["id"]),
                    str(entry.get("displayName") or (old.name if old else "")),
                    entry.get("parentFolderId") or (old.parent_id if old else None),
                )
                if node != old:
                    tree.apply("update" if old else "create", node.id, node)
            for folder_id in page.removed:
                if folder_id in tree.nodes:
                    tree.apply("delete", folder_id, None)
            tree.sync_state = page.cursor
        return tree

    def folder_total(self, mailbox: str, folder_id: str) -> int | None:
        """How many items the folder holds (``status`` shows backfill progress against it)."""
        body = self.client.get(
            mailbox,
            f"{user_path(mailbox)}/mailFolders/{quote(folder_id, safe='')}",
            params={"$select": "totalItemCount"},
        )
        total = body.get("totalItemCount")
        return int(total) if isinstance(total, int) else None

    # -- a folder's changes ----------------------------------------------------------------------------------

    def changes(self, mailbox: str, folder_id: str, cursor: str | None, page_size: int) -> ChangePage:
        link = cursor or message_delta(self.client, mailbox, folder_id, page_size=self.page_size).start
        try:
            body = self.client.get(mailbox, link, page_size=min(page_size, self.page_size))
        except GraphSyncStateNotFound as exc:
            raise CursorInvalid(str(exc)) from exc
        except GraphNotFound as exc:
            raise FolderMissing(folder_id) from exc
        # an immutable id keeps its identity through moves: a mail moved out and back (or onto its own
        # folder) may show as removed and changed in one page; only its last state counts
        latest: dict[str, tuple[str, Any]] = {}
        for entry in body.get("value", []):
            item_id = str(entry["id"])
            latest.pop(item_id, None)
            if "@removed" in entry:
                latest[item_id] = ("delete", Change(item_id))
            else:
                received = items.parse_time(entry.get("receivedDateTime"))
                latest[item_id] = ("create", Change(item_id, received))
        next_link = body.get("@odata.nextLink")
        new_cursor = next_link or body.get("@odata.deltaLink")
        if not new_cursor:
            raise GraphTransientError("Graph delta page without @odata.nextLink or @odata.deltaLink")
        changes = list(latest.values()) + self._unlisted(
            mailbox, folder_id, cursor, latest, next_link is None
        )
        return ChangePage(changes, str(new_cursor), next_link is None)

    def _unlisted(
        self, mailbox: str, folder_id: str, cursor: str | None, latest: dict, complete: bool
    ) -> list[tuple[str, Any]]:
        """A chain from scratch (first sync, 410 resync, switch from EWS) lists what is in the folder, never
        what left it meanwhile: on its last page, the ledger's present items it did not list are departures."""
        if self.engine is None:
            return []
        key = (mailbox.lower(), folder_id)
        if cursor is None:
            self._listed[key] = set()
        listed = self._listed.get(key)
        if listed is None:
            return []  # a chain resumed after a restart: no full listing to compare with
        listed.update(i for i, (kind, _) in latest.items() if kind == "create")
        if not complete:
            return []
        del self._listed[key]
        with self.engine.connect() as conn:
            present = {
                r.item_id
                for r in conn.execute(
                    select(ledger.c.item_id).where(
                        ledger.c.mailbox == mailbox.lower(),
                        ledger.c.folder_id == folder_id,
                        ledger.c.state == "present",
                    )
                )
            }
        return [("delete", Change(i)) for i in sorted(present - listed) if i not in latest]

    # -- items -----------------------------------------------------------------------------------------------

    def fetch(
        self,
        engine: Engine,
        target: Target,
        item_ids: Sequence[str],
        *,
        max_attachment_bytes: int,
        resolve_address: Callable[[str], RecordRef | None],
    ) -> FetchResult:
        out = FetchResult()
        wanted = list(dict.fromkeys(item_ids))
        if not wanted:
            return out
        mailbox = target.mailbox
        query = urlencode({"$select": ",".join(FETCH_SELECT), "$expand": items.MESSAGE_EXPAND})
        calls = [("GET", f"{items.message_path(mailbox, i)}?{query}", None) for i in wanted]
        for item_id, answer in zip(wanted, self.client.batch(mailbox, calls), strict=True):
            if answer.error is not None:
                if isinstance(answer.error, GraphNotFound):
                    out.gone.append(item_id)  # moved on or deleted since the delta saw it
                elif isinstance(answer.error, GraphTransientError):
                    raise answer.error  # throttled, server trouble: retry the folder, not the item
                else:
                    out.failed.append((item_id, answer.error, None))
                continue
            if not items.is_mail(answer.body):
                log.info(
                    "%s %s: skipping item that is not a mail (item class %r is not a mail)",
                    mailbox,
                    target.path,
                    items.message_class(answer.body),
                )
                out.skipped += 1
                continue
            out.arrivals[item_id] = items.parse_time(answer.body.get("lastModifiedDateTime"))
            try:
                activity = self._activity(target, answer.body, max_attachment_bytes, resolve_address)
            except GraphNotFound:
                out.gone.append(item_id)
            except GraphTransientError:
                raise
            except Exception as exc:  # a malformed message must not stop the folder
                out.failed.append((item_id, exc, None))
            else:
                out.activities[item_id] = bounded(activity, mailbox, target.path)
        return out

    def _activity(
        self,
        target: Target,
        message: dict[str, Any],
        max_attachment_bytes: int,
        resolve_address: Callable[[str], RecordRef | None],
    ) -> Activity:
        mailbox, message_id = target.mailbox, str(message["id"])
        files = (
            items.attachments(self.client, mailbox, message, max_attachment_bytes)
            if message.get("attachments")
            else ()
        )
        key_body = (
            None
            if message.get("internetMessageId")
            else items.fetch_text_body(self.client, mailbox, message_id)
        )
        return items.to_activity(
            message,
            mailbox=mailbox,
            folder_id=target.folder_id,
            folder_path=target.path,
            regarding=target.record,
            resolve_address=resolve_address,
            attachments=files,
            key_body=key_body,
        )

    def moved_copies(self, engine: Engine, target: Target, fetched: dict[str, Activity]) -> set[str]:
        """An immutable id seen here that the owner folder's ledger row also holds is the same item: moved.
        A different id (a copy) moved only if the owner's item left its folder (one GET each)."""
        owners: dict[str, tuple[str, str, str]] = {}  # key -> (item id here, owner's item id, owner folder)
        with engine.connect() as conn:
            for item_id, activity in fetched.items():
                link = ledger_store.link(conn, activity.key)
                if (
                    link is None
                    or link.state != "tracked"
                    or link.owner_mailbox != target.mailbox
                    or link.owner_folder_id == target.folder_id
                ):
                    continue
                entry = ledger_store.ledger_entry(conn, target.mailbox, activity.key, link.owner_folder_id)
                if entry is not None and entry.state == "present":
                    owners[activity.key] = (item_id, entry.item_id, link.owner_folder_id)
        moved: set[str] = set()
        for key, (here, owner_item, owner_folder) in owners.items():
            if here == owner_item or not self._still_in(target.mailbox, owner_item, owner_folder):
                moved.add(key)
        return moved

    def stale_copies(self, engine: Engine, target: Target, departed: list[str]) -> set[int]:
        """Rows of mails leaving ``target`` still marked present in another tracked folder whose message is
        no longer there (one GET each, only for such departures): that folder's delta is behind."""
        rows = copies.present_elsewhere(engine, target, departed)
        return {
            row_id
            for row_id, (item, folder) in rows.items()
            if not self._still_in(target.mailbox, item, folder)
        }

    def _still_in(self, mailbox: str, item_id: str, folder_id: str) -> bool:
        try:
            body = self.client.get(
                mailbox, items.message_path(mailbox, item_id), params={"$select": "parentFolderId"}
            )
        except GraphNotFound:
            return False
        return str(body.get("parentFolderId")) == folder_id

    # -- write-back ------------------------------------------------------------------------------------------

    def set_categories(self, mailbox: str, item_id: str, add: str | None, remove: str | None) -> bool:
        """Read the message's categories, write the new list with one PATCH (nothing when unchanged).
        404 → :class:`ItemGone`; 403 (``Mail.Read`` only, or scoped out) → :class:`WriteBackDenied`."""
        path = items.message_path(mailbox, item_id)
        try:
            current = list(
                self.client.get(mailbox, path, params={"$select": "categories"}).get("categories") or []
            )
            wanted = [c for c in current if remove is None or c.casefold() != remove.casefold()]
            if add is not None and all(c.casefold() != add.casefold() for c in wanted):
                wanted.append(add)
            if wanted == current:
                return False
            items.set_categories(self.client, mailbox, item_id, wanted)
        except GraphNotFound:
            raise ItemGone(item_id) from None
        except GraphAuthError as error:
            if error.status != 403:
                raise  # no usable token (401): not about this mailbox's rights
            raise WriteBackDenied(mailbox, f"{error.code or 'HTTP 403'}: {error}") from error
        return True

    def close(self) -> None:
        self.client.close()
