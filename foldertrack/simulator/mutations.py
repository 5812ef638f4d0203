"""Every change to a mailbox: the store's state, its change logs and the events one action produces.

Like Exchange, one user action yields several events: a move gives a ``MovedEvent`` for the item (new id,
``OldItemId``, ``OldParentFolderId``) plus a ``ModifiedEvent`` for each parent folder; a delivery gives
``CreatedEvent`` + ``NewMailEvent`` + the folder's ``ModifiedEvent``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from foldertrack.simulator.events import Event
from foldertrack.simulator.mime import parse_mime
from foldertrack.simulator.model import EwsError, Folder, Item, Mailbox, now

if TYPE_CHECKING:
    from foldertrack.simulator.store import Store


def _item_event(
    kind: str, item: Item, folder: Folder, when, old: Item | None = None, old_folder=None
) -> Event:
    return Event(
        type=kind,
        timestamp=when,
        parent_folder_id=folder.id,
        item_id=(item.id, item.change_key),
        old_item_id=(old.id, old.change_key) if old is not None else None,
        old_parent_folder_id=old_folder.id if old_folder is not None else None,
        parent_serial=folder.serial,
        old_parent_serial=old_folder.serial if old_folder is not None else None,
    )


def _folder_event(kind: str, mb: Mailbox, folder: Folder, when, old_parent: Folder | None = None) -> Event:
    parent = mb.folders[folder.parent] if folder.parent is not None else folder
    return Event(
        type=kind,
        timestamp=when,
        parent_folder_id=parent.id,
        folder_id=(folder.id, folder.change_key),
        old_folder_id=(folder.id, folder.change_key) if old_parent is not None else None,
        old_parent_folder_id=old_parent.id if old_parent is not None else None,
        unread_count=mb.unread_count(folder) if kind == "ModifiedEvent" else None,
        parent_serial=parent.serial,
        old_parent_serial=old_parent.serial if old_parent is not None else None,
        folder_serial=folder.serial,
    )


class Mutations:
    """Mixed into :class:`~.store.Store`; callers hold ``store.lock``."""

    def _touch_folder(self: Store, mb: Mailbox, folder: Folder) -> None:
        folder.version += 1
        mb.hierarchy_log.append((mb.next_seq(), "update", folder.serial))

    def _add(self: Store, mb: Mailbox, item: Item, folder: Folder) -> None:
        mb.items[item.serial] = item
        folder.items[item.serial] = None
        folder.log.append((mb.next_seq(), "add", item.serial))

    def _remove(self: Store, mb: Mailbox, item: Item, folder: Folder) -> None:
        item.gone = True
        folder.items.pop(item.serial, None)
        folder.log.append((mb.next_seq(), "remove", item.serial))

    # -- items ------------------------------------------------------------------------------------
    def create_item(
        self: Store,
        mb: Mailbox,
        folder: Folder,
        mime: bytes,
        *,
        delivered: bool,
        is_read: bool = False,
        is_draft: bool = False,
        categories: list[str] | None = None,
    ) -> Item:
        when = now()
        item = Item(
            mailbox=mb.number,
            serial=self.next_serial(),
            folder=folder.serial,
            mime=mime,
            mail=parse_mime(mime),
            received=when,
            created=when,
            modified=when,
            is_read=is_read,
            is_draft=is_draft,
            categories=list(categories or []),
        )
        self._add(mb, item, folder)
        self._touch_folder(mb, folder)
        events = [_item_event("CreatedEvent", item, folder, when)]
        if delivered:
            events.append(_item_event("NewMailEvent", item, folder, when))
        events.append(_folder_event("ModifiedEvent", mb, folder, when))
        self.publish(mb, events)
        return item

    def move_item(self: Store, mb: Mailbox, item: Item, dest: Folder) -> Item:
        """Exchange gives a moved item a new ItemId; the old one stops resolving."""
        when = now()
        source = mb.folder(item.folder)
        new = item.clone(self.next_serial(), dest.serial, when)
        self._remove(mb, item, source)
        self._add(mb, new, dest)
        self._touch_folder(mb, source)
        self._touch_folder(mb, dest)
        events = [_item_event("MovedEvent", new, dest, when, old=item, old_folder=source)]
        events.append(_folder_event("ModifiedEvent", mb, source, when))
        if dest is not source:
            events.append(_folder_event("ModifiedEvent", mb, dest, when))
        self.publish(mb, events)
        return new

    def copy_item(self: Store, mb: Mailbox, item: Item, dest: Folder) -> Item:
        when = now()
        source = mb.folder(item.folder)
        new = item.clone(self.next_serial(), dest.serial, when)
        new.created = when
        self._add(mb, new, dest)
        self._touch_folder(mb, dest)
        events = [_item_event("CopiedEvent", new, dest, when, old=item, old_folder=source)]
        events.append(_folder_event("ModifiedEvent", mb, dest, when))
        self.publish(mb, events)
        return new

    def delete_item(self: Store, mb: Mailbox, item: Item, mode: str = "MoveToDeletedItems") -> Item | None:
        """``MoveToDeletedItems`` moves (new id) unless already in Deleted Items; Soft/Hard delete remove."""
        deleted_items = self.distinguished(mb, "deleteditems")
        if mode == "MoveToDeletedItems" and item.folder != deleted_items.serial:
            return self.move_item(mb, item, deleted_items)
        when = now()
        folder = mb.folder(item.folder)
        self._remove(mb, item, folder)
        self._touch_folder(mb, folder)
        events = [_item_event("DeletedEvent", item, folder, when)]
        events.append(_folder_event("ModifiedEvent", mb, folder, when))
        self.publish(mb, events)
        return None

    def update_item(
        self: Store,
        mb: Mailbox,
        item: Item,
        *,
        is_read: bool | None = None,
        categories: list[str] | None = None,
        importance: str | None = None,
    ) -> Item:
        when = now()
        folder = mb.folder(item.folder)
        read_changed = is_read is not None and is_read != item.is_read
        other = (categories is not None and categories != item.categories) or (
            importance is not None and importance != item.mail.importance
        )
        if is_read is not None:
            item.is_read = is_read
        if categories is not None:
            item.categories = list(categories)
        if importance is not None:
            item.mail.importance = importance
        item.version += 1
        item.modified = when
        folder.log.append((mb.next_seq(), "update" if other or not read_changed else "read", item.serial))
        events = [_item_event("ModifiedEvent", item, folder, when)]
        if read_changed:
            self._touch_folder(mb, folder)
            events.append(_folder_event("ModifiedEvent", mb, folder, when))
        self.publish(mb, events)
        return item

    def replace_mime(self: Store, mb: Mailbox, item: Item, mime: bytes, keys: list[int]) -> Item:
        """New MIME for the same item (an attachment added or removed): a modification, same item id."""
        when = now()
        folder = mb.folder(item.folder)
        importance = item.mail.importance
        item.mime = mime
        item.mail = parse_mime(mime)
        item.mail.importance = importance
        item.attachment_keys = list(keys)
        item.version += 1
        item.modified = when
        folder.log.append((mb.next_seq(), "update", item.serial))
        self.publish(mb, [_item_event("ModifiedEvent", item, folder, when)])
        return item

    # -- folders ----------------------------------------------------------------------------------
    def create_folder(
        self: Store, mb: Mailbox, parent: Folder, name: str, folder_class: str | None = "IPF.Note"
    ) -> Folder:
        if not name or not name.strip():
            raise EwsError("ErrorInvalidArgument", "The folder name is empty.")
        if mb.child_by_name(parent, name) is not None:
            raise EwsError("ErrorFolderExists", "A folder with the specified name already exists.")
        when = now()
        folder = Folder(mb.number, self.next_serial(), name, parent.serial, None, folder_class)
        mb.folders[folder.serial] = folder
        parent.children[folder.serial] = None
        mb.hierarchy_log.append((mb.next_seq(), "add", folder.serial))
        self._touch_folder(mb, parent)
        events = [_folder_event("CreatedEvent", mb, folder, when)]
        events.append(_folder_event("ModifiedEvent", mb, parent, when))
        self.publish(mb, events)
        return folder

    def _check_movable(self: Store, folder: Folder, what: str) -> None:
        if folder.distinguished is not None:
            code = "ErrorDeleteDistinguishedFolder" if what == "delete" else "ErrorMoveDistinguishedFolder"
            raise EwsError(code, f"Distinguished folders cannot be {what}d.")

    def rename_folder(self: Store, mb: Mailbox, folder: Folder, name: str) -> Folder:
        if folder.distinguished is not None:
            raise EwsError("ErrorAccessDenied", "Distinguished folders cannot be renamed.")
        parent = mb.folder(folder.parent) if folder.parent is not None else folder
        other = mb.child_by_name(parent, name)
        if other is not None and other is not folder:
            raise EwsError("ErrorFolderExists", "A folder with the specified name already exists.")
        folder.name = name
        self._touch_folder(mb, folder)
        self.publish(mb, [_folder_event("ModifiedEvent", mb, folder, now())])
        return folder

    def move_folder(self: Store, mb: Mailbox, folder: Folder, dest: Folder) -> Folder:
        self._check_movable(folder, "move")
        if mb.is_below(dest, folder):
            raise EwsError("ErrorMoveCopyFailed", "Cannot move a folder into itself or a subfolder.")
        if mb.child_by_name(dest, folder.name) not in (None, folder):
            raise EwsError("ErrorFolderExists", "A folder with the specified name already exists.")
        when = now()
        old_parent = mb.folder(folder.parent)  # type: ignore[arg-type]
        old_parent.children.pop(folder.serial, None)
        dest.children[folder.serial] = None
        folder.parent = dest.serial
        self._touch_folder(mb, folder)
        self._touch_folder(mb, old_parent)
        self._touch_folder(mb, dest)
        events = [_folder_event("MovedEvent", mb, folder, when, old_parent=old_parent)]
        events.append(_folder_event("ModifiedEvent", mb, old_parent, when))
        events.append(_folder_event("ModifiedEvent", mb, dest, when))
        self.publish(mb, events)
        return folder

    def delete_folder(self: Store, mb: Mailbox, folder: Folder, mode: str = "HardDelete") -> None:
        self._check_movable(folder, "delete")
        deleted_items = self.distinguished(mb, "deleteditems")
        if mode == "MoveToDeletedItems" and not mb.is_below(folder, deleted_items):
            self.move_folder(mb, folder, deleted_items)
            return
        when = now()
        parent = mb.folder(folder.parent)  # type: ignore[arg-type]
        event = _folder_event("DeletedEvent", mb, folder, when)
        for gone in [folder, *mb.descendants(folder)]:
            gone.deleted = True
            for serial in list(gone.items):
                self._remove(mb, mb.items[serial], gone)
            mb.hierarchy_log.append((mb.next_seq(), "remove", gone.serial))
        parent.children.pop(folder.serial, None)
        self._touch_folder(mb, parent)
        self.publish(mb, [event, _folder_event("ModifiedEvent", mb, parent, when)])
