"""Delta chains: a tracked folder's ``messages/delta`` and the mailbox's ``mailFolders/delta``.

https://learn.microsoft.com/graph/delta-query-messages. A chain is followed page by page through
``@odata.nextLink`` until ``@odata.deltaLink``. Each :class:`DeltaPage` carries the link to continue from
as its ``cursor`` — the whole URL, saved as is (it encodes the query options) and committed together with
the page's effects, like an EWS sync state. A 410 (expired token) restarts the chain from scratch; the
first page of the new chain says ``restarted`` (the ledger makes the replay idempotent).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.errors import GraphSyncStateNotFound

#: what sync needs from the delta itself; content is fetched per message (:mod:`.items`)
DELTA_SELECT = ("internetMessageId", "parentFolderId", "receivedDateTime", "subject")
DEFAULT_PAGE_SIZE = 100


@dataclass(frozen=True)
class DeltaPage:
    changed: tuple[dict[str, Any], ...]  # added or updated (selected properties)
    removed: tuple[str, ...]  # ids that left (moved out or deleted)
    cursor: str  # the link to continue from: a nextLink, or the deltaLink when ``complete``
    complete: bool
    restarted: bool = False


def _page(body: dict[str, Any], restarted: bool) -> DeltaPage:
    changed, removed = [], []
    for entry in body.get("value", []):
        if "@removed" in entry:
            removed.append(str(entry["id"]))
        else:
            changed.append(entry)
    next_link = body.get("@odata.nextLink")
    cursor = next_link or body.get("@odata.deltaLink")
    if not cursor:
        raise GraphSyncStateNotFound("Graph delta page without @odata.nextLink or @odata.deltaLink")
    return DeltaPage(tuple(changed), tuple(removed), str(cursor), next_link is None, restarted)


class DeltaChain:
    """One delta chain: ``pages(cursor)`` walks from a saved cursor (None: from scratch) to the end."""

    def __init__(self, client: GraphClient, mailbox: str, start: str, page_size: int = DEFAULT_PAGE_SIZE):
        self.client = client
        self.mailbox = mailbox
        self.start = start  # the first request's path with its query options
        self.page_size = page_size

    def pages(self, cursor: str | None = None) -> Iterator[DeltaPage]:
        link, restarted = cursor or self.start, False
        while True:
            try:
                body = self.client.get(self.mailbox, link, page_size=self.page_size)
            except GraphSyncStateNotFound:
                if link == self.start:
                    raise
                link, restarted = self.start, True
                continue
            page = _page(body, restarted)
            restarted = False
            yield page
            if page.complete:
                return
            link = page.cursor

    def catch_up(self, cursor: str | None = None) -> tuple[list[DeltaPage], str]:
        """Every page up to the end and the final delta link (for callers that commit once)."""
        pages = list(self.pages(cursor))
        return pages, pages[-1].cursor


def user_path(mailbox: str) -> str:
    return f"users/{quote(mailbox, safe='@')}"


def message_delta(
    client: GraphClient,
    mailbox: str,
    folder_id: str,
    select: tuple[str, ...] = DELTA_SELECT,
    page_size: int = DEFAULT_PAGE_SIZE,
) -> DeltaChain:
    path = f"{user_path(mailbox)}/mailFolders/{quote(folder_id, safe='')}/messages/delta?$select={','.join(select)}"
    return DeltaChain(client, mailbox, path, page_size)


def folder_delta(client: GraphClient, mailbox: str, page_size: int = DEFAULT_PAGE_SIZE) -> DeltaChain:
    select = "displayName,parentFolderId,childFolderCount"
    return DeltaChain(client, mailbox, f"{user_path(mailbox)}/mailFolders/delta?$select={select}", page_size)
