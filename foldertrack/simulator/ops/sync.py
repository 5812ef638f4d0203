"""SyncFolderItems and SyncFolderHierarchy: opaque, incremental sync states over the change log."""

from __future__ import annotations

from lxml import etree

from foldertrack.simulator import ids
from foldertrack.simulator.changes import hierarchy_changes, item_changes
from foldertrack.simulator.model import EwsError, Folder, Mailbox
from foldertrack.simulator.ops.base import Handler
from foldertrack.simulator.render import Shape, folder_element, item_element
from foldertrack.simulator.soap import M, SoapFault, T, bool_text, sub

ITEMS_MAGIC = b"SFIS"
HIERARCHY_MAGIC = b"SFHS"
_BAD_STATE = "Synchronization state data is corrupt or otherwise invalid."


def _position(mb: Mailbox, folder: Folder, text: str | None, magic: bytes) -> ids.SyncPosition:
    if not text or not text.strip():
        return ids.SyncPosition(mb.number, folder.serial, 0)
    try:
        position = ids.decode_sync_state(text, magic)
    except ids.MalformedId:
        raise EwsError("ErrorInvalidSyncStateData", _BAD_STATE) from None
    if (
        position.mailbox != mb.number
        or position.folder_serial != folder.serial
        or max(position.base, position.end) > mb.seq
    ):
        raise EwsError("ErrorInvalidSyncStateData", _BAD_STATE)
    return position


def _sync_error(msg: etree._Element, last_tag: str) -> None:
    """Exchange's sync error messages still carry an empty SyncState (clients read it unconditionally)."""
    sub(msg, M("SyncState"))
    sub(msg, M(last_tag), "true")


class SyncFolderItems(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/syncfolderitems-operation"""

    SERVICE_NAME = "SyncFolderItems"

    def call(self, payload: etree._Element) -> etree._Element:
        shape = Shape.parse(payload.find(M("ItemShape")))
        try:
            max_changes = int(payload.findtext(M("MaxChangesReturned")) or "")
        except ValueError:
            raise SoapFault(
                "ErrorSchemaValidation", "SyncFolderItems: MaxChangesReturned is required."
            ) from None
        if not 1 <= max_changes <= 512:
            raise SoapFault("ErrorSchemaValidation", "MaxChangesReturned must be between 1 and 512.")
        resp, messages = self.response()
        with self.store.lock:
            mb = self.mailbox
            try:
                folder = self.target_folder(payload, "SyncFolderId")
                position = _position(mb, folder, payload.findtext(M("SyncState")), ITEMS_MAGIC)
                changes, position, last = item_changes(mb, folder, position, max_changes)
            except EwsError as exc:
                _sync_error(self.message(messages, exc), "IncludesLastItemInRange")
                return resp
            msg = self.message(messages)
            sub(msg, M("SyncState"), ids.encode_sync_state(ITEMS_MAGIC, position))
            sub(msg, M("IncludesLastItemInRange"), bool_text(last))
            container = sub(msg, M("Changes"))
            for kind, item in changes:
                change = sub(container, T(kind))
                if kind in ("Create", "Update"):
                    item_element(change, mb, item, shape)
                else:
                    sub(change, T("ItemId"), Id=item.id, ChangeKey=item.change_key)
                    if kind == "ReadFlagChange":
                        sub(change, T("IsRead"), bool_text(item.is_read))
        return resp


class SyncFolderHierarchy(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/syncfolderhierarchy-operation"""

    SERVICE_NAME = "SyncFolderHierarchy"

    def call(self, payload: etree._Element) -> etree._Element:
        shape = Shape.parse(payload.find(M("FolderShape")))
        resp, messages = self.response()
        with self.store.lock:
            mb = self.mailbox
            try:
                holder = payload.find(M("SyncFolderId"))
                root = self.folder_from(holder[0]) if holder is not None and len(holder) else mb.root()
                position = _position(mb, root, payload.findtext(M("SyncState")), HIERARCHY_MAGIC)
                changes, new_seq = hierarchy_changes(mb, root, position.base)
            except EwsError as exc:
                _sync_error(self.message(messages, exc), "IncludesLastFolderInRange")
                return resp
            msg = self.message(messages)
            state = ids.SyncPosition(mb.number, root.serial, new_seq)
            sub(msg, M("SyncState"), ids.encode_sync_state(HIERARCHY_MAGIC, state))
            sub(msg, M("IncludesLastFolderInRange"), "true")
            container = sub(msg, M("Changes"))
            for kind, folder in changes:
                change = sub(container, T(kind))
                if kind == "Delete":
                    sub(change, T("FolderId"), Id=folder.id, ChangeKey=folder.change_key)
                else:
                    folder_element(change, mb, folder, shape)
        return resp
