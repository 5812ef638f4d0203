"""What changed in a folder (or a hierarchy) since a sync state: the heart of ``SyncFolderItems``.

A sync state is the mailbox change sequence number it was issued at. Changes are computed from the
folder's log net per item, the way Exchange reports them: an item added and removed in the window is not
reported; one added then modified is a single ``Create``; an item moved out is a ``Delete`` here (and a
``Create`` with its new id in the destination). Paging stops before the (N+1)-th item so that the returned
state covers exactly what was returned.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass

from foldertrack.simulator.model import Folder, Item, Mailbox


@dataclass
class _Net:
    existed_before: bool
    exists_after: bool
    updated: bool = False
    only_read: bool = True

    @classmethod
    def first_seen(cls, op: str) -> _Net:
        """The net state of an entry whose first logged op in the window is ``op``."""
        existed = op != "add"
        return cls(existed_before=existed, exists_after=existed)

    def apply(self, op: str) -> None:
        if op == "add":
            self.exists_after = True
        elif op == "remove":
            self.exists_after = False
        else:
            self.updated = True
            self.only_read = self.only_read and op == "read"


def item_changes(
    mb: Mailbox, folder: Folder, from_seq: int, max_changes: int
) -> tuple[list[tuple[str, Item]], int, bool]:
    """Return ``([(kind, item)], new_seq, includes_last)``.

    ``kind`` is Create, Update, Delete or ReadFlagChange.
    """
    log = folder.log
    start = bisect.bisect_right(log, from_seq, key=lambda entry: entry[0])
    net: dict[int, _Net] = {}
    new_seq = from_seq
    includes_last = True
    for seq, op, serial in log[start:]:
        state = net.get(serial)
        if state is None:
            if len(net) >= max_changes:
                includes_last = False
                break
            state = net[serial] = _Net.first_seen(op)
        state.apply(op)
        new_seq = seq
    if includes_last:
        new_seq = max(new_seq, mb.seq)
    changes: list[tuple[str, Item]] = []
    for serial, state in net.items():
        item = mb.items[serial]
        if state.existed_before and not state.exists_after:
            changes.append(("Delete", item))
        elif not state.existed_before and state.exists_after:
            changes.append(("Create", item))
        elif state.existed_before and state.updated:
            changes.append(("ReadFlagChange" if state.only_read else "Update", item))
    return changes, new_seq, includes_last


def hierarchy_changes(mb: Mailbox, root: Folder, from_seq: int) -> tuple[list[tuple[str, Folder]], int]:
    """Folder Create/Update/Delete below ``root`` since ``from_seq`` (root itself excluded)."""
    log = mb.hierarchy_log
    start = bisect.bisect_right(log, from_seq, key=lambda entry: entry[0])
    net: dict[int, _Net] = {}
    for _seq, op, serial in log[start:]:
        state = net.get(serial)
        if state is None:
            state = net[serial] = _Net.first_seen(op)
        state.apply(op)
    changes: list[tuple[str, Folder]] = []
    for serial, state in net.items():
        folder = mb.folders[serial]
        if folder is root or not mb.is_below(folder, root):
            continue
        if state.existed_before and not state.exists_after:
            changes.append(("Delete", folder))
        elif not state.existed_before and state.exists_after:
            changes.append(("Create", folder))
        elif state.existed_before and state.updated and state.exists_after:
            changes.append(("Update", folder))
    return changes, mb.seq
