"""Folders: resolve ``Inbox/Customers/Contoso`` to a Graph folder id, and keep the mailbox's folder tree
current from ``mailFolders/delta`` (renames, moves, deletes, new subfolders).

Paths are relative to the message folder root and compare case-insensitively, as on the EWS side.
https://learn.microsoft.com/graph/api/mailfolder-list-childfolders
"""

from __future__ import annotations

from dataclasses import dataclass, field
from urllib.parse import quote

from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.delta import DeltaPage, folder_delta, user_path
from foldertrack.sources.graph.errors import GraphNotFound

ROOT = "msgfolderroot"


@dataclass(frozen=True)
class GraphFolder:
    id: str
    parent_id: str | None
    name: str


def child_folders(client: GraphClient, mailbox: str, folder_id: str) -> list[GraphFolder]:
    values = client.get_all(
        mailbox,
        f"{user_path(mailbox)}/mailFolders/{quote(folder_id, safe='')}/childFolders",
        params={"$select": "displayName,parentFolderId", "$top": "100"},
    )
    return [GraphFolder(v["id"], v.get("parentFolderId"), v.get("displayName") or "") for v in values]


def resolve_path(client: GraphClient, mailbox: str, path: str) -> str:
    """The id of the folder at ``path``; :class:`GraphNotFound` names the first missing part."""
    current = client.get(
        mailbox, f"{user_path(mailbox)}/mailFolders/{ROOT}", params={"$select": "displayName"}
    )
    folder_id = str(current["id"])
    walked: list[str] = []
    for part in [p for p in path.strip("/").split("/") if p]:
        wanted = part.casefold()
        match = next(
            (f for f in child_folders(client, mailbox, folder_id) if f.name.casefold() == wanted), None
        )
        walked.append(part)
        if match is None:
            raise GraphNotFound(f"mailbox {mailbox}: no folder {'/'.join(walked)!r}")
        folder_id = match.id
    return folder_id


@dataclass
class TreeChanges:
    added: list[str] = field(default_factory=list)  # ids
    changed: list[str] = field(default_factory=list)  # renamed or moved (path differs)
    removed: list[str] = field(default_factory=list)


class FolderTree:
    """The mailbox's mail folders, flat by id, kept current by applying ``mailFolders/delta`` pages."""

    def __init__(self, root_id: str) -> None:
        self.root_id = root_id
        self.folders: dict[str, GraphFolder] = {}

    @classmethod
    def load(cls, client: GraphClient, mailbox: str) -> tuple[FolderTree, str]:
        """The whole tree and the delta link to follow it with."""
        root = client.get(mailbox, f"{user_path(mailbox)}/mailFolders/{ROOT}", params={"$select": "id"})
        tree = cls(str(root["id"]))
        pages, cursor = folder_delta(client, mailbox).catch_up()
        for page in pages:
            tree.apply(page)
        return tree, cursor

    def path(self, folder_id: str) -> str | None:
        parts: list[str] = []
        current = self.folders.get(folder_id)
        seen: set[str] = set()
        while current is not None and current.id not in seen:
            seen.add(current.id)
            parts.append(current.name)
            if current.parent_id == self.root_id:
                return "/".join(reversed(parts))
            current = self.folders.get(current.parent_id or "")
        return None

    def find(self, path: str) -> str | None:
        wanted = "/".join(p for p in path.strip("/").split("/") if p).casefold()
        return next((fid for fid in self.folders if (self.path(fid) or "").casefold() == wanted), None)

    def apply(self, page: DeltaPage) -> TreeChanges:
        changes = TreeChanges()
        before = {fid: self.path(fid) for fid in self.folders}
        for entry in page.changed:
            folder = GraphFolder(
                str(entry["id"]), entry.get("parentFolderId"), entry.get("displayName") or ""
            )
            (changes.added if folder.id not in self.folders else changes.changed).append(folder.id)
            self.folders[folder.id] = folder
        for folder_id in page.removed:
            if self.folders.pop(folder_id, None) is not None:
                changes.removed.append(folder_id)
        for fid, old in before.items():  # a parent's rename or move changes every path below it
            if fid in self.folders and fid not in changes.changed and self.path(fid) != old:
                changes.changed.append(fid)
        changes.changed = [fid for fid in changes.changed if before.get(fid) != self.path(fid)]
        return changes
