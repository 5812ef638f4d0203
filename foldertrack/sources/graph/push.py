"""Graph change notifications as triggers: one subscription per tracked folder
(``users/{mailbox}/mailFolders('{id}')/messages``, created/updated/deleted), renewed well before expiry,
re-created after ``subscriptionRemoved``, re-authorised after ``reauthorizationRequired``.

A notification only says "this folder changed": the watcher then runs the folder's delta catch-up, so a
lost, late or doubled notification can never lose or double a mail (``missed`` triggers a catch-up too).
The listener thread only calls ``on_trigger`` (which enqueues); every Graph request runs on the
watcher's workers through :meth:`GraphPush.subscribe`.

https://learn.microsoft.com/graph/change-notifications-delivery-webhooks,
https://learn.microsoft.com/graph/change-notifications-lifecycle-events
"""

from __future__ import annotations

import datetime as dt
import logging
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote

from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.errors import GraphNotFound
from foldertrack.sources.graph.notifications import NotificationListener

log = logging.getLogger("foldertrack.sources.graph")

#: Outlook message subscriptions last at most 10,080 minutes; we ask for 3 days and renew a day early
LIFETIME = dt.timedelta(days=3)
RENEW_BEFORE = dt.timedelta(days=1)
Trigger = Callable[[str, str, str], None]  # (mailbox, folder id, reason)


@dataclass
class _Sub:
    id: str
    mailbox: str
    folder_id: str
    expires: float  # time.monotonic() deadline
    reauthorize: bool = False


class GraphPush:
    """Subscriptions and their listener. ``notification_url`` is the public HTTPS URL a reverse proxy
    forwards to the listener at ``host:port``; None uses the listener's own URL (loopback: tests, demo)."""

    def __init__(
        self,
        client: GraphClient,
        on_trigger: Trigger,
        *,
        notification_url: str | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        lifetime: dt.timedelta = LIFETIME,
        renew_before: dt.timedelta = RENEW_BEFORE,
    ) -> None:
        self.client = client
        self.on_trigger = on_trigger
        self.lifetime = lifetime
        self.renew_before = renew_before
        self._client_state = secrets.token_urlsafe(32)  # proves a notification comes from our subscription
        self._listener = NotificationListener(
            self._client_state, self._on_change, self._on_lifecycle, host, port
        )
        self._url = notification_url
        self._lock = threading.Lock()
        self._subs: dict[str, _Sub] = {}  # subscription id -> sub

    @property
    def url(self) -> str:
        return self._url or self._listener.url

    def start(self) -> GraphPush:
        self._listener.start()
        return self

    def stop(self) -> None:
        """Delete every subscription (best effort: Graph expires them anyway), stop the listener."""
        with self._lock:
            subs = list(self._subs.values())
            self._subs.clear()
        for sub in subs:
            self._delete(sub)
        self._listener.stop()

    # -- upkeep (watcher workers) ----------------------------------------------------------------------------

    def subscribe(self, mailbox: str, folder_ids: frozenset[str]) -> int:
        """Make the mailbox's subscriptions cover exactly ``folder_ids``: create the missing, renew or
        re-authorise the due, delete the unwanted. Returns how many were created (each needs a catch-up:
        changes before it were never notified)."""
        mailbox = mailbox.lower()
        with self._lock:
            mine = [s for s in self._subs.values() if s.mailbox == mailbox]
        have = {s.folder_id for s in mine}
        for sub in mine:
            if sub.folder_id not in folder_ids:
                self._forget(sub.id)
                self._delete(sub)
            elif self._is_due(sub, time.monotonic()) and not self._renew(sub):
                have.discard(sub.folder_id)
        created = 0
        for folder_id in sorted(folder_ids - have):
            self._create(mailbox, folder_id)
            created += 1
        return created

    def due(self, mailbox: str) -> bool:
        """Whether a subscription of the mailbox needs renewal or re-authorisation (the timer asks)."""
        now = time.monotonic()
        with self._lock:
            return any(s.mailbox == mailbox.lower() and self._is_due(s, now) for s in self._subs.values())

    def _is_due(self, sub: _Sub, now: float) -> bool:
        return sub.reauthorize or sub.expires - now < self.renew_before.total_seconds()

    def drop(self, mailbox: str) -> None:
        with self._lock:
            mine = [s for s in self._subs.values() if s.mailbox == mailbox.lower()]
            for sub in mine:
                del self._subs[sub.id]
        for sub in mine:
            self._delete(sub)

    def subscriptions(self, mailbox: str | None = None) -> dict[str, str]:
        """Subscription id → folder id (of ``mailbox``, or all): for status and tests."""
        with self._lock:
            return {
                s.id: s.folder_id
                for s in self._subs.values()
                if mailbox is None or s.mailbox == mailbox.lower()
            }

    def _expiry(self) -> str:
        when = dt.datetime.now(dt.UTC) + self.lifetime
        return when.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")

    def _create(self, mailbox: str, folder_id: str) -> None:
        body = self.client.request(
            "POST",
            mailbox,
            "subscriptions",
            json={
                "changeType": "created,updated,deleted",
                "notificationUrl": self.url,
                "lifecycleNotificationUrl": self.url,
                "resource": f"users/{quote(mailbox, safe='@')}/mailFolders('{folder_id}')/messages",
                "expirationDateTime": self._expiry(),
                "clientState": self._client_state,
            },
        )
        sub = _Sub(str(body["id"]), mailbox, folder_id, time.monotonic() + self.lifetime.total_seconds())
        with self._lock:
            self._subs[sub.id] = sub
        log.info("%s: change notifications for folder %s (subscription %s)", mailbox, folder_id[-12:], sub.id)

    def _renew(self, sub: _Sub) -> bool:
        """Renew (or re-authorise) ``sub``; False when Graph no longer knows it (it is re-created)."""
        try:
            if sub.reauthorize:
                self.client.request("POST", sub.mailbox, f"subscriptions/{sub.id}/reauthorize")
            self.client.request(
                "PATCH", sub.mailbox, f"subscriptions/{sub.id}", json={"expirationDateTime": self._expiry()}
            )
        except GraphNotFound:
            self._forget(sub.id)
            return False
        with self._lock:
            sub.expires = time.monotonic() + self.lifetime.total_seconds()
            sub.reauthorize = False
        return True

    def _delete(self, sub: _Sub) -> None:
        try:
            self.client.request("DELETE", sub.mailbox, f"subscriptions/{sub.id}")
        except Exception as exc:  # it expires by itself
            log.debug("%s: subscription %s not deleted: %s", sub.mailbox, sub.id, exc)

    def _forget(self, sub_id: str) -> _Sub | None:
        with self._lock:
            return self._subs.pop(sub_id, None)

    # -- the listener thread: only enqueue -------------------------------------------------------------------

    def _on_change(self, sub_id: str, change_type: str, message_id: str) -> None:
        with self._lock:
            sub = self._subs.get(sub_id)
        if sub is not None:
            self.on_trigger(sub.mailbox, sub.folder_id, "notification")

    def _on_lifecycle(self, sub_id: str, event: str) -> None:
        with self._lock:
            sub = self._subs.get(sub_id)
            if sub is None:
                return
            if event == "subscriptionRemoved":
                del self._subs[sub_id]  # the next subscribe re-creates it
            elif event == "reauthorizationRequired":
                sub.reauthorize = True
        log.info("%s: subscription %s: %s", sub.mailbox, sub_id, event)
        # every lifecycle event may hide lost notifications: catch the folder up, and repair the subscription
        self.on_trigger(sub.mailbox, sub.folder_id, event)
