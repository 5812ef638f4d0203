"""Folder operations: GetFolder, FindFolder, CreateFolder, UpdateFolder, MoveFolder, DeleteFolder."""

from __future__ import annotations

from lxml import etree

from foldertrack.simulator.model import EwsError, Folder
from foldertrack.simulator.ops.base import Handler
from foldertrack.simulator.render import Shape, folder_element
from foldertrack.simulator.restrictions import matches
from foldertrack.simulator.soap import M, SoapFault, T, bool_text, sub


class GetFolder(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getfolder-operation"""

    SERVICE_NAME = "GetFolder"

    def call(self, payload: etree._Element) -> etree._Element:
        shape = Shape.parse(payload.find(M("FolderShape")))
        resp, messages = self.response()
        with self.store.lock:
            for ref in self.folder_ids(payload.find(M("FolderIds"))):
                try:
                    folder = self.folder_from(ref)
                except EwsError as exc:
                    self.message(messages, exc)
                    continue
                msg = self.message(messages)
                folder_element(sub(msg, M("Folders")), self.mailbox, folder, shape)
        return resp


class FindFolder(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/findfolder-operation"""

    SERVICE_NAME = "FindFolder"

    def call(self, payload: etree._Element) -> etree._Element:
        traversal = payload.get("Traversal", "Shallow")
        if traversal not in ("Shallow", "Deep", "SoftDeleted"):
            raise SoapFault("ErrorSchemaValidation", f"Invalid Traversal {traversal!r}.")
        shape = Shape.parse(payload.find(M("FolderShape")))
        view = payload.find(M("IndexedPageFolderView"))
        restriction = payload.find(M("Restriction"))
        resp, messages = self.response()
        with self.store.lock:
            mb = self.mailbox
            for ref in self.folder_ids(payload.find(M("ParentFolderIds"))):
                try:
                    parent = self.folder_from(ref)
                    if traversal == "Deep":
                        found = _preorder(mb, parent)
                    elif traversal == "Shallow":
                        found = [mb.folders[s] for s in parent.children if not mb.folders[s].deleted]
                    else:
                        found = []
                    if restriction is not None:
                        found = [f for f in found if matches(restriction, _folder_getter(mb, f))]
                except EwsError as exc:
                    self.message(messages, exc)
                    continue
                msg = self.message(messages)
                total = len(found)
                offset, page = _page(view, found)
                root = sub(
                    msg, M("RootFolder"), IndexedPagingOffset=offset + len(page), TotalItemsInView=total
                )
                root.set("IncludesLastItemInRange", bool_text(offset + len(page) >= total))
                folders = sub(root, T("Folders"))
                for folder in page:
                    folder_element(folders, mb, folder, shape)
        return resp


def _preorder(mb, parent: Folder) -> list[Folder]:
    out: list[Folder] = []
    for serial in parent.children:
        child = mb.folders[serial]
        if not child.deleted:
            out.append(child)
            out.extend(_preorder(mb, child))
    return out


def _folder_getter(mb, folder: Folder):
    values = {
        "DisplayName": folder.name,
        "FolderClass": folder.folder_class,
        "TotalCount": len(folder.items),
        "ChildFolderCount": len(folder.children),
        "UnreadCount": mb.unread_count(folder),
    }
    return values.get


def _page(view: etree._Element | None, found: list) -> tuple[int, list]:
    """Apply an ``IndexedPage*View`` (MaxEntriesReturned, Offset, BasePoint)."""
    if view is None:
        return 0, found
    try:
        offset = int(view.get("Offset", "0"))
        limit = int(view.get("MaxEntriesReturned", "1000"))
    except ValueError:
        raise SoapFault("ErrorSchemaValidation", "Invalid paging view.") from None
    if offset < 0 or limit < 1:
        raise SoapFault("ErrorSchemaValidation", "Invalid paging view.")
    if view.get("BasePoint", "Beginning") == "End":
        end = max(0, len(found) - offset)
        return offset, found[max(0, end - limit) : end]
    return offset, found[offset : offset + limit]


def _folder_id_message(handler: Handler, messages: etree._Element, folder: Folder) -> None:
    """A success message carrying the folder's new ``t:FolderId`` (Create/Update/MoveFolder)."""
    out = sub(sub(handler.message(messages), M("Folders")), T("Folder"))
    sub(out, T("FolderId"), Id=folder.id, ChangeKey=folder.change_key)


class CreateFolder(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/createfolder-operation"""

    SERVICE_NAME = "CreateFolder"

    def call(self, payload: etree._Element) -> etree._Element:
        resp, messages = self.response()
        container = payload.find(M("Folders"))
        if container is None:
            raise SoapFault("ErrorSchemaValidation", "CreateFolder: Folders is missing.")
        with self.store.lock:
            parent = self.target_folder_or_errors(payload, "ParentFolderId", messages, container)
            if parent is None:
                return resp
            for spec in container:
                try:
                    name = (spec.findtext(T("DisplayName")) or "").strip()
                    folder_class = spec.findtext(T("FolderClass")) or "IPF.Note"
                    folder = self.store.create_folder(self.mailbox, parent, name, folder_class)
                except EwsError as exc:
                    self.message(messages, exc)
                    continue
                _folder_id_message(self, messages, folder)
        return resp


class UpdateFolder(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/updatefolder-operation"""

    SERVICE_NAME = "UpdateFolder"

    def call(self, payload: etree._Element) -> etree._Element:
        resp, messages = self.response()
        changes = payload.find(M("FolderChanges"))
        if changes is None:
            raise SoapFault("ErrorSchemaValidation", "UpdateFolder: FolderChanges is missing.")
        with self.store.lock:
            for change in changes.findall(T("FolderChange")):
                try:
                    ref = next(c for c in change if c.tag in (T("FolderId"), T("DistinguishedFolderId")))
                    folder = self.folder_from(ref)
                    updates = change.find(T("Updates"))
                    for update in updates if updates is not None else []:
                        if update.tag != T("SetFolderField"):
                            continue
                        uri = update.find(T("FieldURI"))
                        field = (uri.get("FieldURI") if uri is not None else "") or ""
                        if field == "folder:DisplayName":
                            name = update.findtext(f"*/{T('DisplayName')}") or ""
                            if name != folder.name:
                                self.store.rename_folder(self.mailbox, folder, name.strip())
                except StopIteration:
                    self.message(
                        messages, EwsError("ErrorInvalidIdMalformed", "FolderChange has no folder id.")
                    )
                    continue
                except EwsError as exc:
                    self.message(messages, exc)
                    continue
                _folder_id_message(self, messages, folder)
        return resp


class MoveFolder(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/movefolder-operation"""

    SERVICE_NAME = "MoveFolder"

    def call(self, payload: etree._Element) -> etree._Element:
        resp, messages = self.response()
        refs = self.folder_ids(payload.find(M("FolderIds")))
        with self.store.lock:
            dest = self.target_folder_or_errors(payload, "ToFolderId", messages, refs)
            if dest is None:
                return resp
            for ref in refs:
                try:
                    folder = self.store.move_folder(self.mailbox, self.folder_from(ref), dest)
                except EwsError as exc:
                    self.message(messages, exc)
                    continue
                _folder_id_message(self, messages, folder)
        return resp


class DeleteFolder(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/deletefolder-operation"""

    SERVICE_NAME = "DeleteFolder"

    def call(self, payload: etree._Element) -> etree._Element:
        mode = payload.get("DeleteType", "HardDelete")
        if mode not in ("HardDelete", "SoftDelete", "MoveToDeletedItems"):
            raise SoapFault("ErrorSchemaValidation", f"Invalid DeleteType {mode!r}.")
        resp, messages = self.response()
        with self.store.lock:
            for ref in self.folder_ids(payload.find(M("FolderIds"))):
                try:
                    self.store.delete_folder(self.mailbox, self.folder_from(ref), mode)
                except EwsError as exc:
                    self.message(messages, exc)
                    continue
                self.message(messages)
        return resp
