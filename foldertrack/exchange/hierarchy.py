"""A mailbox's folder tree, read with SyncFolderHierarchy, so rule paths can be resolved to folder ids.

Paths are relative to the top of the information store (``msgfolderroot``) and use ``/`` between names,
like the rules: ``Inbox/Customers/Contoso``. Names compare case-insensitively, as Exchange does.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from dataclasses import dataclass, field

from exchangelib import Account

from foldertrack.retry import describe, is_transient
from foldertrack.rules.paths import join_folder_path, name_key

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FolderNode:
    id: str
    name: str
    parent_id: str | None
    folder_class: str | None = None


@dataclass
class FolderTree:
    """Folder ids, names and parents of one mailbox; ``root_id`` is ``msgfolderroot``."""

    root_id: str
    nodes: dict[str, FolderNode] = field(default_factory=dict)
    sync_state: str | None = None
    trash_id: str | None = None  # Deleted Items: a folder moved below it counts as deleted
    revision: int = 0  # bumped by every change applied: unchanged means nothing to re-resolve

    def in_trash(self, folder_id: str) -> bool:
        """True when the folder is Deleted Items or below it (how Outlook deletes a folder)."""
        if self.trash_id is None:
            return False
        current: str | None = folder_id
        seen: set[str] = set()
        while current and current != self.root_id and current not in seen:
            if current == self.trash_id:
                return True
            seen.add(current)
            node = self.nodes.get(current)
            current = node.parent_id if node else None
        return False

    def path_of(self, folder_id: str) -> str | None:
        """The folder's current path, or None when it is not (or no longer) under the root."""
        names: list[str] = []
        seen: set[str] = set()
        current = folder_id
        while current != self.root_id:
            node = self.nodes.get(current)
            if node is None or current in seen:
                return None
            seen.add(current)
            names.append(node.name)
            current = node.parent_id or ""
        return join_folder_path(list(reversed(names)))

    def find(self, segments: tuple[str, ...] | list[str]) -> str | None:
        """The id of the folder with these names from the root down (case-insensitive), or None."""
        current = self.root_id
        for part in segments:
            wanted = name_key(part)
            match = next((n.id for n in self.children(current) if name_key(n.name) == wanted), None)
            if match is None:
                return None
            current = match
        return current

    def nearest(self, segments: tuple[str, ...] | list[str]) -> str:
        """The id of the deepest existing folder along ``segments`` (the root when not even the first exists)."""
        current = self.root_id
        for part in segments:
            wanted = name_key(part)
            match = next((n.id for n in self.children(current) if name_key(n.name) == wanted), None)
            if match is None:
                break
            current = match
        return current

    def children(self, folder_id: str) -> list[FolderNode]:
        return sorted(
            (n for n in self.nodes.values() if n.parent_id == folder_id), key=lambda n: name_key(n.name)
        )

    def descendants(self, folder_id: str) -> Iterator[FolderNode]:
        for child in self.children(folder_id):
            yield child
            yield from self.descendants(child.id)

    def apply(self, change_type: str, folder_id: str, node: FolderNode | None) -> None:
        self.revision += 1
        if change_type == "delete":
            self.nodes.pop(folder_id, None)
        elif node is not None:
            self.nodes[folder_id] = node


def load_tree(account: Account, tree: FolderTree | None = None) -> FolderTree:
    """Read (or bring up to date) the folder tree with SyncFolderHierarchy from ``msgfolderroot``."""
    root = account.msg_folder_root
    if tree is None or tree.root_id != root.id:
        tree = FolderTree(root_id=root.id, trash_id=_trash_id(account))
    changes = root.sync_hierarchy(
        sync_state=tree.sync_state, only_fields=["name", "parent_folder_id", "folder_class"]
    )
    for change_type, folder in changes:
        if change_type == "delete":
            tree.apply("delete", folder.id, None)
            continue
        parent = folder.parent_folder_id.id if folder.parent_folder_id else None
        tree.apply(
            change_type, folder.id, FolderNode(folder.id, folder.name or "", parent, folder.folder_class)
        )
    tree.sync_state = root.folder_sync_state
    return tree


def _trash_id(account: Account) -> str | None:
    """The id of the mailbox's Deleted Items (one GetFolder, once per tree); None if it cannot be read."""
    try:
        return account.trash.id
    except Exception as exc:  # without it a deleted folder is only reported once it is emptied
        if is_transient(exc):
            raise  # the resolve is retried
        log.warning("%s: cannot read Deleted Items: %s", account.primary_smtp_address, describe(exc))
        return None
