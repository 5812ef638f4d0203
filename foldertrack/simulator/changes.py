"""What changed in a folder (or a hierarchy) since a sync state: the heart of ``SyncFolderItems``.

A sync state is the mailbox change sequence number it was issued at. Changes are computed from the
folder's log net per item, the way Exchange reports them: an item added and removed in the window is not
reported; one added then modified is a single ``Create``; an item moved out is a ``Delete`` here (and a
``Create`` with its new id in the destination). A sync state is a position in a round of such net
changes (see :func:`item_changes`), so pages never split one item's history.
"""

from __future__ import annotations

import bisect
from dataclasses import dataclass, replace

from foldertrack.simulator.ids import SyncPosition
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


def _net_changes(mb: Mailbox, log: list[tuple[int, str, int]], base: int, end: int) -> list[tuple[str, int]]:
    """The net (kind, serial) of every entry logged in (``base``, ``end``], in first-logged order."""
    start = bisect.bisect_right(log, base, key=lambda entry: entry[0])
    net: dict[int, _Net] = {}
    for seq, op, serial in log[start:]:
        if seq > end:
            break
        state = net.get(serial)
        if state is None:
            state = net[serial] = _Net.first_seen(op)
        state.apply(op)
    changes: list[tuple[str, int]] = []
    for serial, state in net.items():
        if state.existed_before and not state.exists_after:
            changes.append(("Delete", serial))
        elif not state.existed_before and state.exists_after:
            changes.append(("Create", serial))
        elif state.existed_before and state.updated and state.exists_after:
            changes.append(("ReadFlagChange" if state.only_read else "Update", serial))
    return changes


def item_changes(
    mb: Mailbox, folder: Folder, position: SyncPosition, max_changes: int
) -> tuple[list[tuple[str, Item]], SyncPosition, bool]:
    """Return ``([(kind, item)], new position, includes_last)``; ``kind`` is Create, Update, Delete or
    ReadFlagChange.

    A round reports the net change from ``base`` to the mailbox's sequence number when the round began
    (``end``): a first sync (base 0) lists what is in the folder, and an item that came and went within
    the round is never reported, however small the pages. The round is paged by an offset into that
    fixed list; changes made meanwhile belong to the next round."""
    end = position.end or mb.seq
    net = _net_changes(mb, folder.log, position.base, end)
    page = net[position.offset : position.offset + max_changes]
    done = position.offset + len(page)
    changes = [(kind, mb.items[serial]) for kind, serial in page]
    if done < len(net):
        return changes, replace(position, end=end, offset=done), False
    newer = bool(folder.log) and folder.log[-1][0] > end
    return changes, replace(position, base=end, end=0, offset=0), not newer


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
