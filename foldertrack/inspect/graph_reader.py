"""Read-only mailbox access for the inspection commands through Microsoft Graph (``exchange.source =
"graph"``), on the Graph source's own client (MSAL app token, per-mailbox throttle, immutable ids).

- Folder tree: ``mailFolders/msgfolderroot``, then ``childFolders`` of every folder that has children, with
  ``totalItemCount`` and ``childFolderCount`` (Graph lists mail folders only: no calendar or contacts).
- A folder's items: ``mailFolders/{id}/messages`` with ``$count=true`` (``@odata.count``), ``$top``,
  ``$orderby=receivedDateTime desc`` and, for a cutoff, ``$filter=receivedDateTime ge …`` (the ordered
  property filtered first, as Graph requires with ``$orderby``).
- A search: ``$filter=internetMessageId eq '…'`` and/or ``contains(subject,'…')``, without ``$orderby``
  (Graph refuses that combination: ``InefficientFilter``), newest first sorted here.
- The item class comes from ``singleValueExtendedProperties`` ``String 0x001A``, as the Graph source reads it.

https://learn.microsoft.com/graph/api/mailfolder-list-childfolders,
https://learn.microsoft.com/graph/api/mailfolder-list-messages, https://learn.microsoft.com/graph/query-parameters
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import requests

from foldertrack.config import Config
from foldertrack.errors import ExchangeError
from foldertrack.exchange.convert import normalise_message_id
from foldertrack.exchange.hierarchy import FolderNode, FolderTree
from foldertrack.inspect.exchange import ExchangeRefused, FolderInfo, ItemInfo, Mailbox
from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.delta import user_path
from foldertrack.sources.graph.errors import GraphError, GraphTransientError
from foldertrack.sources.graph.items import MESSAGE_CLASS_PROPERTY, message_class, parse_time

FOLDER_SELECT = "displayName,parentFolderId,childFolderCount,totalItemCount"
ITEM_SELECT = "subject,internetMessageId,receivedDateTime"
CLASS_EXPAND = f"singleValueExtendedProperties($filter=id eq '{MESSAGE_CLASS_PROPERTY}')"
PAGE = 100
_REQUEST_PREFIX = re.compile(r"^Graph [A-Z]+ \S+: ")


class GraphReader:
    """Opens mailboxes read-only with the app registration of ``[graph]`` (``Mail.Read`` suffices)."""

    def __init__(self, client: GraphClient):
        self.client = client

    @classmethod
    def from_config(cls, config: Config) -> GraphReader:
        """Raises ConfigError listing what ``[graph]`` lacks; the client is the watcher's own."""
        from foldertrack.sources.graph.config import graph_source

        return cls(graph_source(config).client)

    def close(self) -> None:
        self.client.close()

    def mailbox(self, address: str) -> Mailbox:
        """The mailbox's mail folders below ``msgfolderroot``, with item and child counts."""
        user = user_path(address)
        with _graph(address, "reading the folder tree"):
            root = self.client.get(address, f"{user}/mailFolders/msgfolderroot", params={"$select": "id"})
            trash = self.client.get(address, f"{user}/mailFolders/deleteditems", params={"$select": "id"})
            tree = FolderTree(root_id=str(root["id"]), trash_id=str(trash["id"]))
            raw: list[dict[str, Any]] = []
            parents = [tree.root_id]
            while parents:
                parent = parents.pop(0)
                children = self.client.get_all(
                    address,
                    f"{user}/mailFolders/{quote(parent, safe='')}/childFolders",
                    params={"$select": FOLDER_SELECT, "$top": str(PAGE)},
                )
                for folder in children:
                    folder_id = str(folder["id"])
                    name = str(folder.get("displayName") or "")
                    tree.apply("create", folder_id, FolderNode(folder_id, name, parent))
                    raw.append(folder)
                    if folder.get("childFolderCount"):
                        parents.append(folder_id)
        infos = []
        for folder in raw:
            path = tree.path_of(str(folder["id"]))
            if path is None:
                continue
            infos.append(
                FolderInfo(
                    id=str(folder["id"]),
                    path=path,
                    name=str(folder.get("displayName") or ""),
                    parent_id=folder.get("parentFolderId"),
                    folder_class=None,  # Graph's mailFolders are mail folders
                    total=_int(folder.get("totalItemCount")),
                    children=_int(folder.get("childFolderCount")),
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
        params = {
            "$count": "true",
            "$top": str(max(sample, 1)),
            "$orderby": "receivedDateTime desc",
            "$select": ITEM_SELECT,
            "$expand": CLASS_EXPAND,
        }
        if since is not None:
            params["$filter"] = f"receivedDateTime ge {_timestamp(since)}"
        path = _messages_path(address, folder_id)
        with _graph(address, "reading items"):
            page = self.client.get(address, path, params=params)
            count = page.get("@odata.count")
            if not isinstance(count, int):  # $count not honoured: count the ids
                ids = {k: v for k, v in params.items() if k in ("$filter", "$orderby")}
                count = len(self.client.get_all(address, path, {**ids, "$select": "id", "$top": "1000"}))
        newest = [_item_info(folder_id, m) for m in page.get("value", [])[:sample]]
        return count, newest

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
        clauses = []
        if message_id is not None:
            clauses.append(f"internetMessageId eq {_literal(message_id)}")
        if subject is not None:
            clauses.append(f"contains(subject,{_literal(subject)})")
        params = {"$top": str(max(limit, 1)), "$select": ITEM_SELECT, "$expand": CLASS_EXPAND}
        if clauses:
            params["$filter"] = " and ".join(clauses)
        found: list[ItemInfo] = []
        with _graph(address, "searching items"):
            for folder_id in folder_ids:
                page = self.client.get(address, _messages_path(address, folder_id), params=params)
                infos = [_item_info(folder_id, m) for m in page.get("value", [])]
                infos.sort(key=_newest_first)
                found += infos[:limit]
        return found[:limit]


def _messages_path(address: str, folder_id: str) -> str:
    return f"{user_path(address)}/mailFolders/{quote(folder_id, safe='')}/messages"


def _item_info(folder_id: str, message: dict[str, Any]) -> ItemInfo:
    return ItemInfo(
        folder_id=folder_id,
        subject=str(message.get("subject") or ""),
        message_id=normalise_message_id(message.get("internetMessageId")),
        received=parse_time(message.get("receivedDateTime")),
        item_class=message_class(message),
    )


def _newest_first(item: ItemInfo) -> float:
    return -(item.received.timestamp() if item.received else 0.0)


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _timestamp(value: datetime) -> str:
    value = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
    return value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _literal(text: str) -> str:
    """An OData string literal (a quote is doubled)."""
    return "'" + text.replace("'", "''") + "'"


def _transient(exc: GraphError) -> bool:
    """429/503/5xx and transport failures (also the token endpoint's, which MSAL's wrapper reports as an
    auth error with the ``requests`` exception as its context)."""
    return isinstance(exc, GraphTransientError) or isinstance(exc.__context__, requests.RequestException)


@contextmanager
def _graph(address: str, what: str) -> Iterator[None]:
    try:
        yield
    except GraphError as exc:  # the status and Graph's code stay; the request path (long ids) goes
        kind = ExchangeError if _transient(exc) else ExchangeRefused
        cause = _REQUEST_PREFIX.sub("Graph ", str(exc), count=1)
        raise kind(f"{address}: {what} failed: {cause}") from exc


__all__ = ["GraphReader"]
