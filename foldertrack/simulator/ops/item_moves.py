"""MoveItem, CopyItem, DeleteItem: a moved or copied item gets a new ItemId, as on Exchange."""

from __future__ import annotations

from lxml import etree

from foldertrack.simulator.model import EwsError
from foldertrack.simulator.ops.base import Handler
from foldertrack.simulator.soap import M, SoapFault, T, sub, xs_bool


class _MoveCopy(Handler):
    error_container = "Items"

    def _do(self, item, dest):
        raise NotImplementedError

    def call(self, payload: etree._Element) -> etree._Element:
        refs = self.item_ids(payload.find(M("ItemIds")))
        return_new = xs_bool(payload.findtext(M("ReturnNewItemIds")), True)
        resp, messages = self.response()
        with self.store.lock:
            dest = self.target_folder_or_errors(payload, "ToFolderId", messages, refs)
            if dest is None:
                return resp
            for ref in refs:
                try:
                    item = self.store.item_by_id(self.mailbox, ref.get("Id"))
                    new = self._do(item, dest)
                except EwsError as exc:
                    self.message(messages, exc)
                    continue
                items = sub(self.message(messages), M("Items"))
                if return_new:
                    sub(sub(items, T("Message")), T("ItemId"), Id=new.id, ChangeKey=new.change_key)
        return resp


class MoveItem(_MoveCopy):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/moveitem-operation"""

    SERVICE_NAME = "MoveItem"

    def _do(self, item, dest):
        return self.store.move_item(self.mailbox, item, dest)


class CopyItem(_MoveCopy):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/copyitem-operation"""

    SERVICE_NAME = "CopyItem"

    def _do(self, item, dest):
        return self.store.copy_item(self.mailbox, item, dest)


class DeleteItem(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/deleteitem-operation"""

    SERVICE_NAME = "DeleteItem"

    def call(self, payload: etree._Element) -> etree._Element:
        mode = payload.get("DeleteType", "")
        if mode not in ("HardDelete", "SoftDelete", "MoveToDeletedItems"):
            raise SoapFault("ErrorSchemaValidation", f"Invalid DeleteType {mode!r}.")
        resp, messages = self.response()
        with self.store.lock:
            for ref in self.item_ids(payload.find(M("ItemIds"))):
                try:
                    self.store.delete_item(
                        self.mailbox, self.store.item_by_id(self.mailbox, ref.get("Id")), mode
                    )
                except EwsError as exc:
                    self.message(messages, exc)
                    continue
                self.message(messages)
        return resp
