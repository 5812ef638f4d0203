"""EWS operations, one handler class per operation, named exactly like it; the one dispatch table."""

from __future__ import annotations

from foldertrack.simulator.ops.attachments import CreateAttachment, DeleteAttachment, GetAttachment
from foldertrack.simulator.ops.base import Handler
from foldertrack.simulator.ops.convert_id import ConvertId
from foldertrack.simulator.ops.folders import (
    CreateFolder,
    DeleteFolder,
    FindFolder,
    GetFolder,
    MoveFolder,
    UpdateFolder,
)
from foldertrack.simulator.ops.item_moves import CopyItem, DeleteItem, MoveItem
from foldertrack.simulator.ops.items import CreateItem, FindItem, GetItem, UpdateItem
from foldertrack.simulator.ops.notifications import GetEvents, Subscribe, Unsubscribe
from foldertrack.simulator.ops.streaming import GetStreamingEvents
from foldertrack.simulator.ops.sync import SyncFolderHierarchy, SyncFolderItems

#: SERVICE_NAME → handler class. Adding an operation = one class + one line here + a test.
SERVICES: dict[str, type[Handler]] = {
    "ConvertId": ConvertId,
    "GetFolder": GetFolder,
    "FindFolder": FindFolder,
    "CreateFolder": CreateFolder,
    "UpdateFolder": UpdateFolder,
    "MoveFolder": MoveFolder,
    "DeleteFolder": DeleteFolder,
    "SyncFolderHierarchy": SyncFolderHierarchy,
    "FindItem": FindItem,
    "GetItem": GetItem,
    "CreateItem": CreateItem,
    "UpdateItem": UpdateItem,
    "MoveItem": MoveItem,
    "CopyItem": CopyItem,
    "DeleteItem": DeleteItem,
    "GetAttachment": GetAttachment,
    "CreateAttachment": CreateAttachment,
    "DeleteAttachment": DeleteAttachment,
    "SyncFolderItems": SyncFolderItems,
    "Subscribe": Subscribe,
    "GetEvents": GetEvents,
    "GetStreamingEvents": GetStreamingEvents,
    "Unsubscribe": Unsubscribe,
}

__all__ = ["SERVICES"]
