"""Graph change notifications as triggers: one subscription per tracked folder
(``users/{mailbox}/mailFolders('{id}')/messages``, created/updated/deleted), renewed well before expiry,
re-created after ``subscriptionRemoved``, re-authorised after ``reauthorizationRequired``.

A notification only says "this folder changed": the watcher then runs the folder's delta catch-up, so a
lost, late or doubled notification can never lose or double a mail (``missed`` triggers a catch-up too).
The listener thread only calls ``on_trigger`` (which enqueues); every Graph request runs on the
watcher's workers through :meth:`GraphPush.subscribe`.

With a :class:`SubscriptionStore` (the state database, :mod:`foldertrack.watch.graph_push`) subscriptions
outlive the process: each has its own random ``clientState``, kept in memory and stored only as
``HMAC-SHA256(key=subscription id, clientState)``, which is all a notification's check needs. A restart
(even after ``kill -9``) or a new lease holder verifies the stored ones with ``GET /subscriptions/{id}``
and reuses those that still post to our URL for a folder we track, deletes the others, and creates the
missing; so Graph never holds two subscriptions for one folder of ours, nor one nobody renews.

https://learn.microsoft.com/graph/change-notifications-delivery-webhooks,
https://learn.microsoft.com/graph/change-notifications-lifecycle-events
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import logging
import secrets
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import quote

from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.errors import GraphNotFound
from foldertrack.sources.graph.notifications import NotificationListener

log = logging.getLogger("foldertrack.sources.graph")

#: Outlook message subscriptions last at most 10,080 minutes; we ask for 3 days and renew a day early
LIFETIME = dt.timedelta(days=3)
RENEW_BEFORE = dt.timedelta(days=1)
Trigger = Callable[[str, str, str], None]  # (mailbox, folder id, reason)


def hash_client_state(sub_id: str, client_state: str) -> str:
    """What the database keeps of a subscription's secret: HMAC-SHA256 keyed (salted) by its id."""
    return hmac.new(sub_id.encode("utf-8"), client_state.encode("utf-8"), hashlib.sha256).hexdigest()


@dataclass
class StoredSubscription:
    """One subscription as memory and the database hold it (the clientState only hashed)."""

    id: str
    mailbox: str
    folder_id: str
    resource: str
    expires_at: dt.datetime  # aware UTC
    client_state_hash: str
    instance: str = ""  # the watcher that owns it (as loaded; ``save`` writes its own)
    reauthorize: bool = False


class SubscriptionStore(Protocol):
    """Where subscriptions outlive the process. ``save`` and ``remove`` are ownership-dependent writes
    (fenced by the mailbox's lease: they raise ``LeaseLostError`` when another instance holds it)."""

    instance: str  # the name ``save`` writes as the owner

    def load(self, mailbox: str) -> list[StoredSubscription]: ...

    def save(self, sub: StoredSubscription) -> None: ...

    def remove(self, sub_id: str, mailbox: str) -> None: ...

    def release(self, sub_id: str, *, owner_only: bool = True) -> bool:
        """Unfenced delete, of a row this instance still owns (else of any); True when one went."""
        ...

    def orphans(self) -> list[StoredSubscription]:
        """Subscriptions of mailboxes no rule names any more (removed while no watcher ran)."""
        ...


class _Subscriptions(dict[str, "StoredSubscription"]):
    """Subscription id → subscription, with an index by mailbox: the timer asks every mailbox whether one is
    due, and a lookup by mailbox must not walk every subscription (50,000 at 10,000 mailboxes)."""

    def __init__(self) -> None:
        super().__init__()
        self._by_mailbox: dict[str, set[str]] = {}

    def __setitem__(self, sub_id: str, sub: StoredSubscription) -> None:
        old = self.get(sub_id)
        if old is not None:
            self._unindex(old)
        super().__setitem__(sub_id, sub)
        self._by_mailbox.setdefault(sub.mailbox, set()).add(sub_id)

    def __delitem__(self, sub_id: str) -> None:
        self._unindex(self[sub_id])
        super().__delitem__(sub_id)

    def pop(self, sub_id: str, default: StoredSubscription | None = None) -> StoredSubscription | None:  # type: ignore[override]
        sub = super().pop(sub_id, None)
        if sub is None:
            return default
        self._unindex(sub)
        return sub

    def clear(self) -> None:
        super().clear()
        self._by_mailbox.clear()

    def of(self, mailbox: str) -> list[StoredSubscription]:
        return [self[i] for i in self._by_mailbox.get(mailbox, ())]

    def _unindex(self, sub: StoredSubscription) -> None:
        ids = self._by_mailbox.get(sub.mailbox)
        if ids is not None:
            ids.discard(sub.id)
            if not ids:
                del self._by_mailbox[sub.mailbox]


class GraphPush:
    """Subscriptions and their listener. ``notification_url`` is the public HTTPS URL a reverse proxy
    forwards to the listener at ``host:port``; None uses the listener's own URL (loopback: tests, demo).
    ``store`` None keeps them in memory only (an ungraceful exit leaves them at Microsoft until expiry)."""

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
        store: SubscriptionStore | None = None,
    ) -> None:
        self.client = client
        self.on_trigger = on_trigger
        self.lifetime = lifetime
        self.renew_before = renew_before
        self.store = store
        self._listener = NotificationListener(
            self._check_state, self._on_change, self._on_lifecycle, host, port
        )
        self._url = notification_url
        self._lock = threading.Lock()
        self._subs = _Subscriptions()  # subscription id -> sub, indexed by mailbox
        self._swept = False

    @property
    def url(self) -> str:
        return self._url or self._listener.url

    @property
    def listener(self) -> NotificationListener:
        return self._listener

    def start(self) -> GraphPush:
        self._listener.start()
        return self

    def stop(self) -> None:
        """Delete every subscription still ours (best effort: Graph expires them anyway), stop the listener.
        One a new lease holder has taken over (its row names that instance) is left to it."""
        with self._lock:
            subs = list(self._subs.values())
            self._subs.clear()
        for sub in subs:
            if self._release(sub):
                self._delete(sub.mailbox, sub.id)
        self._listener.stop()

    # -- upkeep (watcher workers) ----------------------------------------------------------------------------

    def subscribe(self, mailbox: str, folder_ids: frozenset[str]) -> int:
        """Make the mailbox's subscriptions cover exactly ``folder_ids``: reuse the stored ones Graph still
        has, create the missing, renew or re-authorise the due, delete the unwanted. Returns how many were
        created (each needs a catch-up: changes before it were never notified)."""
        mailbox = mailbox.lower()
        if self.store is not None:
            self._sweep_orphans()
            self._reconcile(mailbox, folder_ids)
        with self._lock:
            mine = self._subs.of(mailbox)
        have = {s.folder_id for s in mine}
        for sub in mine:
            if sub.folder_id not in folder_ids:
                if self._delete(sub.mailbox, sub.id):
                    self._forget(sub.id)
                    if self.store is not None:
                        self.store.remove(sub.id, sub.mailbox)
                have.discard(sub.folder_id)
            elif self._is_due(sub, _now()) and not self._renew(sub):
                have.discard(sub.folder_id)
        created = 0
        for folder_id in sorted(folder_ids - have):
            self._create(mailbox, folder_id)
            created += 1
        return created

    def due(self, mailbox: str) -> bool:
        """Whether a subscription of the mailbox needs renewal or re-authorisation (the timer asks)."""
        now = _now()
        with self._lock:
            return any(self._is_due(s, now) for s in self._subs.of(mailbox.lower()))

    def _is_due(self, sub: StoredSubscription, now: dt.datetime) -> bool:
        return sub.reauthorize or sub.expires_at - now < self.renew_before

    def drop(self, mailbox: str) -> None:
        """The mailbox is no longer watched here: delete its subscriptions (and their rows)."""
        with self._lock:
            mine = self._subs.of(mailbox.lower())
            for sub in mine:
                del self._subs[sub.id]
        for sub in mine:
            if self._release(sub):
                self._delete(sub.mailbox, sub.id)

    def subscriptions(self, mailbox: str | None = None) -> dict[str, str]:
        """Subscription id → folder id (of ``mailbox``, or all): for status and tests."""
        with self._lock:
            subs = self._subs.values() if mailbox is None else self._subs.of(mailbox.lower())
            return {s.id: s.folder_id for s in subs}

    def _expiry(self) -> str:
        when = _now() + self.lifetime
        return when.strftime("%Y-%m-%dT%H:%M:%S.0000000Z")

    def _create(self, mailbox: str, folder_id: str) -> None:
        client_state = secrets.token_urlsafe(32)  # this subscription's own secret, never stored in clear
        resource = f"users/{quote(mailbox, safe='@')}/mailFolders('{folder_id}')/messages"
        body = self.client.request(
            "POST",
            mailbox,
            "subscriptions",
            json={
                "changeType": "created,updated,deleted",
                "notificationUrl": self.url,
                "lifecycleNotificationUrl": self.url,
                "resource": resource,
                "expirationDateTime": self._expiry(),
                "clientState": client_state,
            },
        )
        sub_id = str(body["id"])
        sub = StoredSubscription(
            sub_id,
            mailbox,
            folder_id,
            resource,
            _expires(body) or _now() + self.lifetime,
            hash_client_state(sub_id, client_state),
        )
        with self._lock:
            self._subs[sub.id] = sub  # before it is stored: its notifications may come at once
        if self.store is not None:
            try:
                self.store.save(sub)
            except Exception:  # the lease went meanwhile (or the database): leave nothing behind
                self._forget(sub.id)
                self._delete(mailbox, sub.id)
                raise
        log.info("%s: change notifications for folder %s (subscription %s)", mailbox, folder_id[-12:], sub.id)

    def _renew(self, sub: StoredSubscription) -> bool:
        """Renew (or re-authorise) ``sub``; False when Graph no longer knows it (it is re-created)."""
        try:
            if sub.reauthorize:
                self.client.request("POST", sub.mailbox, f"subscriptions/{sub.id}/reauthorize")
            body = self.client.request(
                "PATCH", sub.mailbox, f"subscriptions/{sub.id}", json={"expirationDateTime": self._expiry()}
            )
        except GraphNotFound:
            self._forget(sub.id)
            if self.store is not None:
                self.store.remove(sub.id, sub.mailbox)
            return False
        with self._lock:
            sub.expires_at = _expires(body) or _now() + self.lifetime
            sub.reauthorize = False
        if self.store is not None:
            self.store.save(sub)
        return True

    def _delete(self, mailbox: str, sub_id: str) -> bool:
        """DELETE at Graph; True when it is gone (deleted now, or unknown already)."""
        try:
            self.client.request("DELETE", mailbox, f"subscriptions/{sub_id}")
        except GraphNotFound:
            return True
        except Exception as exc:  # it expires by itself; a stored one is retried at the next subscribe
            log.debug("%s: subscription %s not deleted: %s", mailbox, sub_id, exc)
            return False
        return True

    def _release(self, sub: StoredSubscription) -> bool:
        """Give a stored subscription up (stop, drop): False when another instance has taken it over."""
        if self.store is None:
            return True
        try:
            return self.store.release(sub.id)
        except Exception as exc:  # the database is gone: delete at Graph; a restart finds the row 404
            log.debug("%s: subscription %s not released: %s", sub.mailbox, sub.id, exc)
            return True

    def _forget(self, sub_id: str) -> StoredSubscription | None:
        with self._lock:
            return self._subs.pop(sub_id, None)

    # -- persistence: reuse across restarts and lease hand-overs ----------------------------------------------

    def _reconcile(self, mailbox: str, folder_ids: frozenset[str]) -> None:
        """Bring memory in line with the mailbox's stored subscriptions: a row we do not hold (an earlier
        process's, another instance's) is checked at Graph; one held whose row went was taken over."""
        assert self.store is not None
        rows = {r.id: r for r in self.store.load(mailbox)}
        with self._lock:
            for sub_id in [s.id for s in self._subs.of(mailbox) if s.id not in rows]:
                del self._subs[sub_id]
            fresh = [r for r in rows.values() if r.id not in self._subs or r.instance != self.store.instance]
        for row in fresh:
            self._adopt(row, folder_ids)

    def _adopt(self, row: StoredSubscription, folder_ids: frozenset[str]) -> None:
        assert self.store is not None
        try:
            body = self.client.request("GET", row.mailbox, f"subscriptions/{row.id}")
        except GraphNotFound:  # expired, removed, or deleted by its last owner
            self._forget(row.id)
            self.store.remove(row.id, row.mailbox)
            log.info("%s: stored subscription %s is gone at Graph", row.mailbox, row.id)
            return
        if body.get("notificationUrl") != self.url or row.folder_id not in folder_ids:
            why = "another notification URL" if row.folder_id in folder_ids else "a folder no longer tracked"
            if self._delete(row.mailbox, row.id):
                self._forget(row.id)
                self.store.remove(row.id, row.mailbox)
                log.info("%s: stored subscription %s (%s) deleted", row.mailbox, row.id, why)
            return
        row.expires_at = _expires(body) or row.expires_at
        row.reauthorize = False
        with self._lock:
            self._subs[row.id] = row
        self.store.save(row)  # now ours, with Graph's expiry; renewed below when due
        log.info("%s: reusing subscription %s for folder %s", row.mailbox, row.id, row.folder_id[-12:])

    def _sweep_orphans(self) -> None:
        """Once per process: delete the subscriptions of mailboxes no rule names any more."""
        if self._swept:
            return
        self._swept = True
        assert self.store is not None
        try:
            orphans = self.store.orphans()
        except Exception as exc:
            log.debug("stored subscriptions not swept: %s", exc)
            return
        for row in orphans:
            if self._delete(row.mailbox, row.id) and self.store.release(row.id, owner_only=False):
                log.info("%s: subscription %s of an unwatched mailbox deleted", row.mailbox, row.id)

    # -- the listener thread: only enqueue -------------------------------------------------------------------

    def _check_state(self, sub_id: str, client_state: str) -> bool | None:
        """The listener's check: None for a subscription we do not hold, else whether the secret matches."""
        with self._lock:
            sub = self._subs.get(sub_id)
        if sub is None:
            return None
        return hmac.compare_digest(hash_client_state(sub_id, client_state), sub.client_state_hash)

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
                del self._subs[sub_id]  # the next subscribe finds its row 404 and re-creates it
            elif event == "reauthorizationRequired":
                sub.reauthorize = True
        log.info("%s: subscription %s: %s", sub.mailbox, sub_id, event)
        # every lifecycle event may hide lost notifications: catch the folder up, and repair the subscription
        self.on_trigger(sub.mailbox, sub.folder_id, event)


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _expires(body: Any) -> dt.datetime | None:
    """The ``expirationDateTime`` Graph answered (aware UTC), or None."""
    text = body.get("expirationDateTime") if isinstance(body, dict) else None
    if not isinstance(text, str):
        return None
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
