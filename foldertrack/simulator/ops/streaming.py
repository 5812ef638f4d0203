"""GetStreamingEvents: one long chunked HTTP response, each chunk one complete SOAP envelope."""

from __future__ import annotations

import time
from collections.abc import Iterator

from lxml import etree

from foldertrack.simulator.events import MAX_EVENTS_PER_NOTIFICATION, StreamWaker, Subscription
from foldertrack.simulator.model import EwsError
from foldertrack.simulator.ops.base import Handler, StreamingResponse
from foldertrack.simulator.ops.notifications import notification_element
from foldertrack.simulator.soap import M, SoapFault, T, sub


class GetStreamingEvents(Handler):
    """https://learn.microsoft.com/en-us/exchange/client-developer/web-service-reference/getstreamingevents-operation"""

    SERVICE_NAME = "GetStreamingEvents"

    def call(self, payload: etree._Element) -> etree._Element | StreamingResponse:
        ids_elem = payload.find(M("SubscriptionIds"))
        sub_ids = (
            [(e.text or "").strip() for e in ids_elem.iter(T("SubscriptionId"))]
            if ids_elem is not None
            else []
        )
        try:
            timeout = int(payload.findtext(M("ConnectionTimeout")) or "")
        except ValueError:
            raise SoapFault(
                "ErrorSchemaValidation", "GetStreamingEvents: ConnectionTimeout is missing."
            ) from None
        if not sub_ids or len(sub_ids) > 200:
            raise SoapFault(
                "ErrorSchemaValidation", "GetStreamingEvents: 1 to 200 subscription ids are allowed."
            )
        if not 1 <= timeout <= 30:
            raise SoapFault("ErrorSchemaValidation", "GetStreamingEvents: ConnectionTimeout must be 1..30.")
        owner = self.ctx.principal.address
        subs: list[Subscription] = []
        failed: list[tuple[str, EwsError]] = []
        waker = StreamWaker()
        with self.store.lock:
            for sub_id in sub_ids:
                try:
                    subs.append(self.store.subscription(sub_id, owner, "streaming"))
                except EwsError as exc:
                    failed.append((sub_id, exc))
            profile = self.store.profile
            if profile.single_user_streams and not failed:
                # such a server binds a stream to one user: subscriptions of other mailboxes are refused
                own = self.ctx.mailbox.number if self.ctx.mailbox is not None else None
                refused = EwsError(
                    profile.single_user_streams_code,
                    "Subscriptions of other users cannot be read on this connection.",
                )
                failed = [(s.id, refused) for s in subs if s.mailbox != own]
            if failed:
                return self._error(failed)
            self.store.attach_stream(subs, waker)
        registry = self.ctx.faults.streams
        registry.add(waker)
        response = StreamingResponse(iter(()), on_close=lambda: self._close(subs, waker))
        response.chunks = self._chunks(subs, waker, timeout, response)
        return response

    def _close(self, subs: list[Subscription], waker: StreamWaker) -> None:
        self.ctx.faults.streams.discard(waker)
        with self.store.lock:
            self.store.detach_stream(subs, waker)

    def _error(self, failed: list[tuple[str, EwsError]]) -> etree._Element:
        resp, messages = self.response()
        msg = self.message(messages, failed[0][1])
        ids = sub(msg, M("ErrorSubscriptionIds"))
        for sub_id, _ in failed:
            sub(ids, T("SubscriptionId"), sub_id)
        return resp

    def _envelope(self, status: str, notes: list | None = None) -> etree._Element:
        resp, messages = self.response()
        msg = self.message(messages)
        if notes:
            container = sub(msg, M("Notifications"))
            for sub_, events in notes:
                notification_element(container, sub_, events, tag=T("Notification"))
        sub(msg, M("ConnectionStatus"), status)
        return resp

    def _chunks(
        self, subs: list[Subscription], waker: StreamWaker, timeout: int, response: StreamingResponse
    ) -> Iterator[etree._Element]:
        store, faults, stopping = self.store, self.ctx.faults, self.ctx.stopping
        started = last_sent = time.monotonic()
        deadline = started + timeout * store.minute
        while True:
            waker.wake.clear()
            now = time.monotonic()
            drop_every = faults.drop_every
            if (
                stopping.is_set()
                or waker.closed_reason == "dropped"
                or (drop_every and now - started >= drop_every)
            ):
                response.drop = True
                return
            if faults.streams_stalled:
                stopping.wait(0.02)
                continue
            if waker.closed_reason == "expired" or (waker.expired_ids and waker.closed_reason is None):
                live = [s for s in subs if not s.expired]
                if waker.closed_reason == "expired" or not live:
                    yield self._expired(waker)
                    return
                subs = live
            if waker.closed_reason == "replaced":
                yield self._envelope("Closed")
                return
            notes, next_ready = [], None
            with store.lock:
                for sub_ in subs:
                    events, ready_at = store.take_ready(sub_, MAX_EVENTS_PER_NOTIFICATION)
                    if events:
                        notes.append((sub_, events))
                    if ready_at is not None:
                        next_ready = ready_at if next_ready is None else min(next_ready, ready_at)
                    if sub_.queue and ready_at is None:
                        waker.wake.set()  # more than 50 ready: next envelope at once
            if notes:
                yield self._envelope("OK", notes)
                last_sent = time.monotonic()
                continue
            if now >= deadline:
                yield self._envelope("Closed")
                return
            if now - last_sent >= self.ctx.heartbeat:
                heartbeat_notes = [(s, []) for s in subs] if store.profile.status_event_heartbeats else None
                yield self._envelope("OK", heartbeat_notes)
                last_sent = now
            waits = [deadline - now, self.ctx.heartbeat - (now - last_sent), 1.0]
            if next_ready is not None:
                waits.append(next_ready - now)
            if drop_every:
                waits.append(started + drop_every - now)
            waker.wake.wait(max(0.001, min(waits)))

    def _expired(self, waker: StreamWaker) -> etree._Element:
        resp, messages = self.response()
        code = self.store.profile.lost_subscription_code
        msg = self.message(messages, EwsError(code, "The specified subscription was not found."))
        ids = sub(msg, M("ErrorSubscriptionIds"))
        for sub_id in waker.expired_ids or ["unknown"]:
            sub(ids, T("SubscriptionId"), sub_id)
        return resp
