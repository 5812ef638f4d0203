"""``sim.graph``: the Graph side of one simulator — immutable ids, subscriptions, notifier, faults.

It listens to the EWS store's published events (``store.listeners``), so every change made through EWS,
the in-process API or Graph itself moves immutable ids along and raises notifications alike.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
import uuid
from typing import TYPE_CHECKING, Any

from foldertrack.simulator.events import Event
from foldertrack.simulator.graph import errors, subscriptions
from foldertrack.simulator.graph.faults import GraphFaults
from foldertrack.simulator.graph.ids import GraphIdError, ImmutableIds, decode_rest
from foldertrack.simulator.graph.notifier import Notifier, Outgoing
from foldertrack.simulator.graph.subscriptions import GraphSubscription
from foldertrack.simulator.model import EwsError, Folder, Mailbox

if TYPE_CHECKING:
    from foldertrack.simulator.simulator import Simulator

#: the application ID URI of Microsoft Graph: tokens for it have this audience
GRAPH_RESOURCE = "https://graph.microsoft.com"
_USER_NAMESPACE = uuid.UUID("5f0c1c2e-8a7d-4c59-9d2e-6772617068ff")
#: Graph well-known folder names → the store's distinguished folder names
WELL_KNOWN = {
    "inbox": "inbox",
    "sentitems": "sentitems",
    "drafts": "drafts",
    "deleteditems": "deleteditems",
    "junkemail": "junkemail",
    "outbox": "outbox",
    "msgfolderroot": "msgfolderroot",
}


class GraphService:
    def __init__(self, sim: Simulator) -> None:
        self.sim = sim
        self.ids = ImmutableIds()
        self.faults = GraphFaults()
        self.notification_delay = 0.0  # seconds before a notification leaves
        #: ``verify=`` for HTTPS notification URLs (a CA bundle path for a test receiver's certificate)
        self.notification_verify: bool | str = True
        self._subs: dict[str, GraphSubscription] = {}
        self._lock = threading.Lock()
        self.notifier = Notifier(lambda: self.notification_verify)
        sim.identity.add_resource(GRAPH_RESOURCE)
        sim.store.listeners.append(self._on_events)

    def stop(self) -> None:
        self.notifier.stop()

    # -- lookups (callers hold store.lock) ----------------------------------------------------------
    def user_id(self, mb: Mailbox) -> str:
        """The mailbox user's object id (a stable GUID), as Graph names users in notifications."""
        return str(uuid.uuid5(_USER_NAMESPACE, mb.address.lower()))

    def mailbox(self, user: str) -> Mailbox:
        store = self.sim.store
        key = user.lower()
        found = store.mailboxes.get(key)
        if found is None:
            found = next((mb for mb in store.mailboxes.values() if self.user_id(mb) == key), None)
        if found is None:
            raise errors.GraphError(404, "ErrorInvalidUser", f"The requested user '{user}' is invalid.")
        return found

    def folder(self, mb: Mailbox, ref: str) -> Folder:
        store = self.sim.store
        well_known = WELL_KNOWN.get(ref.lower())
        try:
            if well_known is not None:
                return store.distinguished(mb, well_known)
            decoded = decode_rest(ref, "F")
            if decoded.mailbox != mb.number:
                raise errors.malformed_id()
            return mb.folder(decoded.serial)
        except GraphIdError:
            raise errors.malformed_id() from None
        except EwsError:
            raise errors.not_found() from None

    def item(self, mb: Mailbox, ref: str):
        try:
            serial = self.ids.resolve(mb, ref)
        except GraphIdError:
            raise errors.malformed_id() from None
        try:
            return mb.item(serial)
        except EwsError:
            raise errors.not_found() from None

    # -- subscriptions ------------------------------------------------------------------------------
    def create_subscription(
        self, body: dict[str, Any], claims: dict[str, Any], immutable: bool
    ) -> GraphSubscription:
        fields = subscriptions.parse_subscription_request(self, body)
        subscriptions.validate_endpoint(fields["notification_url"], self.notification_verify)
        if fields["lifecycle_url"] and fields["lifecycle_url"] != fields["notification_url"]:
            subscriptions.validate_endpoint(fields["lifecycle_url"], self.notification_verify)
        sub = GraphSubscription(
            id=str(uuid.uuid4()),
            application_id=str(claims.get("appid") or ""),
            tenant_id=str(claims.get("tid") or ""),
            immutable=immutable,
            **fields,
        )
        with self._lock:
            self._subs[sub.id] = sub
        return sub

    def subscription(self, sub_id: str, claims: dict[str, Any]) -> GraphSubscription:
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is not None and not sub.live():
                self._subs.pop(sub_id, None)
                sub = None
        if sub is None or sub.application_id != str(claims.get("appid") or ""):
            raise errors.GraphError(404, "ResourceNotFound", "The object was not found.")
        return sub

    def subscriptions(self, claims: dict[str, Any] | None = None) -> list[GraphSubscription]:
        with self._lock:
            live = [s for s in self._subs.values() if s.live()]
        if claims is None:
            return live
        return [s for s in live if s.application_id == str(claims.get("appid") or "")]

    def renew(self, sub: GraphSubscription, body: dict[str, Any]) -> GraphSubscription:
        expiration = subscriptions._parse_when(
            body.get("expirationDateTime") if isinstance(body, dict) else None
        )
        subscriptions.check_expiration(expiration)
        sub.expiration = expiration
        return sub

    def delete_subscription(self, sub: GraphSubscription) -> None:
        sub.removed = True
        with self._lock:
            self._subs.pop(sub.id, None)

    def lifecycle(self, sub_id: str, event: str) -> None:
        """Fault/test API: send lifecycle notification ``event``; ``subscriptionRemoved`` also removes it."""
        if event not in subscriptions.LIFECYCLE_EVENTS:
            raise ValueError(f"lifecycle event must be one of {subscriptions.LIFECYCLE_EVENTS}")
        with self._lock:
            sub = self._subs.get(sub_id)
        if sub is None:
            raise KeyError(sub_id)
        if event == "subscriptionRemoved":
            self.delete_subscription(sub)
        if sub.lifecycle_url:
            self.notifier.send(
                Outgoing(
                    sub.lifecycle_url, subscriptions.lifecycle_notification(sub, event), time.monotonic()
                )
            )

    def expire_subscriptions(self) -> int:
        """Fault: every subscription expires now (no lifecycle notification, like a missed renewal)."""
        past = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=1)
        with self._lock:
            subs = list(self._subs.values())
            for sub in subs:
                sub.expiration = past
        return len(subs)

    def _on_events(self, mb: Mailbox, events: list[Event]) -> None:
        """The store's listener (under ``store.lock``): follow moves, then queue notifications."""
        self.ids.on_events(mb, events)
        with self._lock:
            subs = [s for s in self._subs.values() if s.mailbox == mb.number and s.live()]
        ready_at = time.monotonic() + self.notification_delay
        for sub in subs:
            for notification in subscriptions.notifications_for(self, sub, mb, events):
                if self.faults.take_drop():
                    continue
                self.notifier.send(
                    Outgoing(sub.notification_url, notification, ready_at, on_failure=self._missed(sub))
                )

    def _missed(self, sub: GraphSubscription):
        def on_failure() -> None:
            sub.failed += 1
            if sub.lifecycle_url and sub.live():
                self.notifier.send(
                    Outgoing(
                        sub.lifecycle_url,
                        subscriptions.lifecycle_notification(sub, "missed"),
                        time.monotonic(),
                    )
                )

        return on_failure


__all__ = ["GRAPH_RESOURCE", "GraphService"]
