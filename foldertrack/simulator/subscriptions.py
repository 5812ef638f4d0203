"""Subscription bookkeeping: create, look up (with lazy expiry), read events, attach streams."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from foldertrack.simulator.events import (
    MAX_EVENTS_PER_NOTIFICATION,
    STREAMING_IDLE_MINUTES,
    QueuedEvent,
    StreamWaker,
    Subscription,
    decode_watermark,
    new_subscription_id,
)
from foldertrack.simulator.model import EwsError, Mailbox

if TYPE_CHECKING:
    from foldertrack.simulator.store import Store

_NOT_FOUND = "The specified subscription was not found."


class SubscriptionRegistry:
    """Mixed into :class:`~.store.Store`; callers hold ``store.lock``."""

    def subscribe(
        self: Store,
        mb: Mailbox,
        owner: str,
        kind: str,
        folders: frozenset[int] | None,
        event_types: frozenset[str],
        timeout_minutes: int = 30,
    ) -> Subscription:
        sub = Subscription(
            id=new_subscription_id(),
            mailbox=mb.number,
            kind=kind,
            folders=folders,
            event_types=event_types,
            timeout_minutes=timeout_minutes,
            owner=owner.lower(),
            serial=self.next_serial(),
        )
        self.subscriptions[sub.id] = sub
        self.subs_by_mailbox.setdefault(mb.number, []).append(sub)
        return sub

    def _drop(self: Store, sub: Subscription) -> None:
        sub.expired = True
        self.subscriptions.pop(sub.id, None)
        subs = self.subs_by_mailbox.get(sub.mailbox)
        if subs and sub in subs:
            subs.remove(sub)
        sub.queue.clear()

    def subscription(self: Store, sub_id: str | None, owner: str, kind: str | None = None) -> Subscription:
        sub = self.subscriptions.get(sub_id or "")
        lost = self.profile.lost_subscription_code
        if sub is None:
            raise EwsError(lost, _NOT_FOUND)
        idle = time.monotonic() - sub.last_used
        timeout = sub.timeout_minutes if sub.kind == "pull" else STREAMING_IDLE_MINUTES
        if sub.stream is None and idle > timeout * self.minute:
            self._drop(sub)
            raise EwsError(lost, _NOT_FOUND)
        if sub.owner != owner.lower():
            raise EwsError("ErrorSubscriptionAccessDenied", "The subscription belongs to another account.")
        if kind is not None and sub.kind != kind:
            raise EwsError("ErrorInvalidSubscription", f"The subscription is not a {kind} subscription.")
        return sub

    def live_subscriptions(self: Store) -> list[Subscription]:
        """Every subscription that has not expired (expired ones are dropped on the way)."""
        now = time.monotonic()
        for sub in list(self.subscriptions.values()):
            timeout = sub.timeout_minutes if sub.kind == "pull" else STREAMING_IDLE_MINUTES
            if sub.stream is None and now - sub.last_used > timeout * self.minute:
                self._drop(sub)
        return list(self.subscriptions.values())

    def unsubscribe(self: Store, sub: Subscription) -> None:
        if isinstance(sub.stream, StreamWaker):
            sub.stream.expired_ids.append(sub.id)
            sub.stream.wake.set()
        self._drop(sub)

    def expire_all(self: Store) -> int:
        """Fault: every subscription is gone; streams carrying one end with ``ErrorSubscriptionNotFound``."""
        subs = list(self.subscriptions.values())
        for sub in subs:
            if isinstance(sub.stream, StreamWaker):
                sub.stream.expired_ids.append(sub.id)
                sub.stream.close("expired")
            self._drop(sub)
        return len(subs)

    # -- pull -------------------------------------------------------------------------------------
    def pull_events(self: Store, sub: Subscription, watermark: str) -> tuple[list[QueuedEvent], bool, int]:
        """Events after ``watermark`` (at most 50), whether there are more, and the watermark's number."""
        try:
            serial, number = decode_watermark(watermark)
        except ValueError:
            raise EwsError("ErrorInvalidWatermark", "The watermark is invalid.") from None
        if serial != sub.serial or number > sub.number or number < sub.acked:
            raise EwsError("ErrorInvalidWatermark", "The watermark is invalid.")
        sub.last_used = time.monotonic()
        sub.acked = number
        while sub.queue and sub.queue[0].number <= number:
            sub.queue.popleft()
        now = time.monotonic()
        ready = [q for q in sub.queue if q.ready_at <= now]
        return ready[:MAX_EVENTS_PER_NOTIFICATION], len(ready) > MAX_EVENTS_PER_NOTIFICATION, number

    # -- streaming --------------------------------------------------------------------------------
    def attach_stream(self: Store, subs: list[Subscription], waker: StreamWaker) -> None:
        """A subscription is served by one connection at a time: a newer one closes the older one."""
        for sub in subs:
            old = sub.stream
            if isinstance(old, StreamWaker) and old is not waker:
                old.close("replaced")
            sub.stream = waker
            sub.last_used = time.monotonic()
        waker.wake.set()

    def detach_stream(self: Store, subs: list[Subscription], waker: StreamWaker) -> None:
        for sub in subs:
            if sub.stream is waker:
                sub.stream = None
                sub.last_used = time.monotonic()

    def take_ready(self: Store, sub: Subscription, limit: int) -> tuple[list[QueuedEvent], float | None]:
        """Pop ready events (streaming has no watermark: once sent, gone); also the next not-ready time."""
        now = time.monotonic()
        out: list[QueuedEvent] = []
        while sub.queue and len(out) < limit:
            if sub.queue[0].ready_at > now:
                return out, sub.queue[0].ready_at
            out.append(sub.queue.popleft())
        return out, None
