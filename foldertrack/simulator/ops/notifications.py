"""Subscriptions: Subscribe (streaming and pull), GetEvents, Unsubscribe; and how events are written."""

from __future__ import annotations

from lxml import etree

from foldertrack.simulator.events import EVENT_TYPES, Event, QueuedEvent, Subscription
from foldertrack.simulator.model import EwsError
from foldertrack.simulator.ops.base import Handler
from foldertrack.simulator.render import ews_datetime
from foldertrack.simulator.soap import M, SoapFault, T, bool_text, sub, xs_bool


def event_element(parent: etree._Element, sub_: Subscription, queued: QueuedEvent) -> None:
    ev: Event = queued.event
    elem = sub(parent, T(ev.type))
    sub(elem, T("Watermark"), sub_.watermark(queued.number))
    sub(elem, T("TimeStamp"), ews_datetime(ev.timestamp))
    if ev.item_id is not None:
        sub(elem, T("ItemId"), Id=ev.item_id[0], ChangeKey=ev.item_id[1])
    else:
        assert ev.folder_id is not None
        sub(elem, T("FolderId"), Id=ev.folder_id[0], ChangeKey=ev.folder_id[1])
    sub(elem, T("ParentFolderId"), Id=ev.parent_folder_id)
    if ev.type in ("MovedEvent", "CopiedEvent"):
        if ev.old_item_id is not None:
            sub(elem, T("OldItemId"), Id=ev.old_item_id[0], ChangeKey=ev.old_item_id[1])
        elif ev.old_folder_id is not None:
            sub(elem, T("OldFolderId"), Id=ev.old_folder_id[0], ChangeKey=ev.old_folder_id[1])
        sub(elem, T("OldParentFolderId"), Id=ev.old_parent_folder_id)
    if ev.type == "ModifiedEvent" and ev.unread_count is not None:
        sub(elem, T("UnreadCount"), ev.unread_count)


def notification_element(
    parent: etree._Element,
    sub_: Subscription,
    events: list[QueuedEvent],
    previous: str | None = None,
    more: bool | None = None,
    tag: str = M("Notification"),
) -> None:
    """GetEvents carries ``m:Notification``; GetStreamingEvents' ``Notifications`` holds ``t:Notification``
    (``NonEmptyArrayOfNotificationsType`` lives in types.xsd)."""
    note = sub(parent, tag)
    sub(note, T("SubscriptionId"), sub_.id)
    if previous is not None:
        sub(note, T("PreviousWatermark"), previous)
    if more is not None:
        sub(note, T("MoreEvents"), bool_text(more))
    if not events:
        sub(sub(note, T("StatusEvent")), T("Watermark"), previous or sub_.watermark())
    for queued in events:
        event_element(note, sub_, queued)


class Subscribe(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/subscribe-operation"""

    SERVICE_NAME = "Subscribe"

    def call(self, payload: etree._Element) -> etree._Element:
        request = payload.find(M("StreamingSubscriptionRequest"))
        kind = "streaming"
        if request is None:
            request = payload.find(M("PullSubscriptionRequest"))
            kind = "pull"
        if request is None:
            if payload.find(M("PushSubscriptionRequest")) is not None:
                raise SoapFault(
                    "ErrorInvalidOperation", "Push subscriptions are not supported by the simulator."
                )
            raise SoapFault("ErrorSchemaValidation", "Subscribe: no subscription request.")
        types = frozenset((e.text or "").strip() for e in request.iter(T("EventType")))
        unknown = types - set(EVENT_TYPES) - {"FreeBusyChangedEvent"}
        if not types or unknown:
            raise SoapFault("ErrorSchemaValidation", f"Subscribe: invalid event types {sorted(unknown)}.")
        timeout = 30
        if kind == "pull":
            try:
                timeout = int(request.findtext(T("Timeout")) or "")
            except ValueError:
                raise SoapFault("ErrorSchemaValidation", "Subscribe: Timeout is missing.") from None
            if not 1 <= timeout <= 1440:
                raise SoapFault("ErrorSchemaValidation", "Subscribe: Timeout must be 1..1440 minutes.")
        resp, messages = self.response()
        with self.store.lock:
            try:
                folders: frozenset[int] | None = None
                if not xs_bool(request.get("SubscribeToAllFolders")):
                    ids = request.find(T("FolderIds"))
                    if ids is None or len(ids) == 0:
                        raise EwsError("ErrorInvalidSubscriptionRequest", "No folders to subscribe to.")
                    folders = frozenset(self.folder_from(ref).serial for ref in ids)
                created = self.store.subscribe(
                    self.mailbox, self.ctx.principal.address, kind, folders, types, timeout
                )
            except EwsError as exc:
                self.message(messages, exc)
                return resp
            msg = self.message(messages)
            sub(msg, M("SubscriptionId"), created.id)
            if kind == "pull":
                sub(msg, M("Watermark"), created.watermark())
        return resp


class Unsubscribe(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/unsubscribe-operation"""

    SERVICE_NAME = "Unsubscribe"

    def call(self, payload: etree._Element) -> etree._Element:
        resp, messages = self.response()
        with self.store.lock:
            try:
                found = self.store.subscription(
                    payload.findtext(M("SubscriptionId")), self.ctx.principal.address
                )
                self.store.unsubscribe(found)
            except EwsError as exc:
                self.message(messages, exc)
                return resp
            self.message(messages)
        return resp


class GetEvents(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getevents-operation"""

    SERVICE_NAME = "GetEvents"

    def call(self, payload: etree._Element) -> etree._Element:
        sub_id = payload.findtext(M("SubscriptionId"))
        watermark = payload.findtext(M("Watermark"))
        if not sub_id or not watermark:
            raise SoapFault("ErrorSchemaValidation", "GetEvents: SubscriptionId and Watermark are required.")
        resp, messages = self.response()
        with self.store.lock:
            try:
                found = self.store.subscription(sub_id, self.ctx.principal.address, "pull")
                events, more, _number = self.store.pull_events(found, watermark)
            except EwsError as exc:
                self.message(messages, exc)
                return resp
            msg = self.message(messages)
            notification_element(msg, found, events, previous=watermark.strip(), more=more)
        return resp
