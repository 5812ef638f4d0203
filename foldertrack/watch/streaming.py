"""Streaming notifications: subscriptions of many mailboxes share ``GetStreamingEvents`` connections.

A stream reader never calls EWS for anything but the stream itself: each notification only becomes
``FolderChanged``/``HierarchyChanged`` events on the dispatcher. ``ConnectionStatus: Closed`` is normal and
the request is re-issued at once. Streaming subscriptions have no watermark, so whenever a stream ends
badly every mailbox on it gets a catch-up sync, and subscriptions that the server forgot are recreated.

Servers differ: some send ``StatusEvent`` keep-alives (not events), some report a lost subscription with
a code of their own, and some accept on one connection only the subscriptions of the user the stream is
opened for. A group that finds the last (:attr:`StreamGroup.refuses_mixed_users`) makes the watcher give
each mailbox its own stream; :class:`ResubscribeLimiter` keeps any failure from becoming a resubscribe
storm.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from exchangelib.properties import StatusEvent
from exchangelib.services import GetStreamingEvents
from exchangelib.util import MNS, DummyResponse

from foldertrack.exchange.connection import ExchangeConnector
from foldertrack.exchange.envelopes import STREAM_READ_CHUNK, EnvelopeSplitter
from foldertrack.retry import Backoff, describe, server_back_off
from foldertrack.watch.resubscribe import (
    MIXED_USER_ERRORS,
    error_code,
    is_lost_subscription,
)

log = logging.getLogger(__name__)

MAX_IDS_PER_STREAM = 200  # EWS limit of subscription ids per GetStreamingEvents request
COALESCE_SECONDS = 0.05  # (re)issue a stream once its subscriptions have not changed for this long…
MAX_COALESCE_SECONDS = 2.0  # …but no later than this after the first change (a start-up subscribing many)


class HeartbeatStreamingEvents(GetStreamingEvents):
    """GetStreamingEvents that notes every envelope read, including the OK heartbeats without events, so a
    stalled stream (open but silent) can be told apart from a quiet one."""

    def __init__(self, *args, on_open: Callable[[], None], on_envelope: Callable[[], None], **kwargs):
        super().__init__(*args, **kwargs)
        self._on_open = on_open
        self._on_envelope = on_envelope
        #: the subscriptions an error envelope named (``m:ErrorSubscriptionIds``). exchangelib looks for
        #: ``m:SubscriptionId`` children, but the schema (and Exchange) puts ``t:SubscriptionId`` there
        self.error_subscription_ids: list[str] = []

    def _get_element_container(self, message, name=None):
        named = message.find(f"{{{MNS}}}ErrorSubscriptionIds")
        if named is not None:
            self.error_subscription_ids = [(e.text or "").strip() for e in named if (e.text or "").strip()]
        container = super()._get_element_container(message=message, name=name)  # raises on an error envelope
        self._on_envelope()
        return container

    def _get_response(self, payload, api_version):
        response = super()._get_response(payload, api_version)
        if response.status_code == 200:  # the server accepted the stream, before any chunk arrives
            self._on_open()
        return response

    def _get_soap_messages(self, body):
        """Read the stream in chunks (exchangelib reads it byte by byte) and parse each envelope as it
        completes; a stream without chunked encoding is left to exchangelib's reader."""
        response = body
        if not getattr(response.raw, "chunked", False):
            yield from super()._get_soap_messages(body)
            return
        splitter = EnvelopeSplitter()
        for chunk in response.iter_content(chunk_size=STREAM_READ_CHUNK):
            for document in splitter.feed(chunk):
                try:
                    _, soap_body = super(GetStreamingEvents, self)._get_soap_parts(
                        DummyResponse(content=document)
                    )
                except Exception:
                    response.close()
                    raise
                yield from super(GetStreamingEvents, self)._get_soap_messages(body=soap_body)
                if self.connection_status == self.CLOSED:
                    return  # don't wait for the server to close the connection


@dataclass
class Subscription:
    mailbox: str
    subscription_id: str
    folder_ids: frozenset[str]


class StreamGroup:
    """One thread holding one streaming connection for up to ``MAX_IDS_PER_STREAM`` subscriptions."""

    def __init__(
        self,
        index: int,
        connector: ExchangeConnector,
        *,
        on_notification: Callable[[str, object], None],
        on_stream_lost: Callable[[list[str], BaseException], None],
        on_subscriptions_lost: Callable[[list[str], BaseException], None],
        on_connected: Callable[[list[str]], None],
        on_reissued: Callable[[list[str], str], None],
        connection_timeout_minutes: int = 10,
        backoff: Backoff | None = None,
    ):
        self.index = index
        self._connector = connector
        self._on_notification = on_notification
        self._on_stream_lost = on_stream_lost
        self._on_subscriptions_lost = on_subscriptions_lost
        self._on_connected = on_connected
        self._on_reissued = on_reissued
        self._current: dict[str, Subscription] = {}  # the subscriptions of the request in flight
        self._timeout = connection_timeout_minutes
        self._backoff = backoff or Backoff(initial=0.2, maximum=30.0)
        self._lock = threading.Condition()
        self._subs: dict[str, Subscription] = {}  # subscription id → subscription
        self._changed = False
        self._last_change = 0.0
        self._stopping = False
        self._service: GetStreamingEvents | None = None
        self._thread: threading.Thread | None = None
        self.failures = 0
        self.last_envelope = time.monotonic()
        self.connected = False
        self._proven = False  # this connection has delivered at least one envelope
        #: the server refused this group's subscriptions of other users than the stream's (anchor) user:
        #: the watcher gives each mailbox its own stream from then on
        self.refuses_mixed_users = False
        self._session_reserved = False
        #: mailboxes whose events may have gone to a connection we closed or lost: they catch up once the
        #: next request is accepted (a catch-up started earlier cannot see events of the gap in between)
        self._catch_up_on_open: set[str] = set()
        #: of those, the ones whose connection failed (not one we re-issued ourselves): their catch-up is
        #: triggered work, never background
        self._failed_gap: set[str] = set()

    # -- membership (called from workers) ------------------------------------------------------------------

    def add(self, sub: Subscription) -> None:
        with self._lock:
            self._subs[sub.subscription_id] = sub
            self._changed = True
            self._last_change = time.monotonic()
            self._lock.notify_all()
        self._interrupt()

    def remove(self, subscription_id: str) -> None:
        with self._lock:
            removed = self._subs.pop(subscription_id, None)
            if removed is None:
                return
            if all(s.mailbox != removed.mailbox for s in self._subs.values()):
                self._catch_up_on_open.discard(removed.mailbox)
                self._failed_gap.discard(removed.mailbox)
            self._changed = True
            self._last_change = time.monotonic()
        self._interrupt()

    def size(self) -> int:
        with self._lock:
            return len(self._subs)

    def mailboxes(self) -> list[str]:
        with self._lock:
            return sorted({s.mailbox for s in self._subs.values()})

    # -- lifecycle -------------------------------------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name=f"foldertrack-stream-{self.index}", daemon=True
        )
        self._thread.start()

    def stop(self, timeout: float = 3.0) -> None:
        with self._lock:
            self._stopping = True
            self._lock.notify_all()
        self._interrupt()
        if self._thread is not None:
            self._thread.join(timeout)

    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def kill_stream(self) -> None:
        """Force the current connection closed (stall detection); the loop treats it as a lost stream."""
        self._interrupt()

    # -- the loop --------------------------------------------------------------------------------------------

    def _run(self) -> None:
        while True:
            with self._lock:
                while not self._stopping and not self._subs:
                    self._lock.wait()
                if self._stopping:
                    return
                self._settle()  # let a burst of (re)subscriptions settle first: one stream for all of them
                if self._stopping:
                    return
                subs = dict(self._subs)
                self._current = subs
                self._changed = False
            if not subs:
                continue
            anchor = next(iter(subs.values())).mailbox
            account = self._connector.account(anchor)
            if not self._session_reserved:
                _reserve_session(account.protocol)
                self._session_reserved = True
            service = HeartbeatStreamingEvents(
                account=account, on_open=self._opened, on_envelope=self._heartbeat
            )
            with self._lock:
                self._service = service
            self.last_envelope = time.monotonic()
            try:
                for notification in service.call(
                    subscription_ids=list(subs), connection_timeout=self._timeout
                ):
                    sub = subs.get(notification.subscription_id)
                    # StatusEvents are keep-alives some servers send instead of an empty envelope: the
                    # envelope counted as a heartbeat already, and they name no folder
                    events = [e for e in notification.events or [] if not isinstance(e, StatusEvent)]
                    if sub is not None and events:
                        notification.events = events
                        self._on_notification(sub.mailbox, notification)
                # ConnectionStatus Closed (or we were asked to re-issue): normal, go round again at once
                if self._was_changed():
                    self._gap_opened(subs)
            except Exception as exc:
                if not is_lost_subscription(exc):
                    if self._stream_failed(exc, subs):
                        return
                    continue
                named = [i for i in service.error_subscription_ids if i in subs]
                lost = named or _subscription_ids_in(str(exc), subs) or list(subs)
                if self._mixed_users_refused(exc, subs, anchor, lost):
                    self.refuses_mixed_users = True
                    log.warning(
                        "stream %d: the server serves one user's subscriptions per stream (%s); "
                        "each mailbox gets its own stream from now on",
                        self.index,
                        error_code(exc),
                    )
                else:
                    log.warning(
                        "stream %d: %s; resubscribing %d mailbox(es)", self.index, describe(exc), len(lost)
                    )
                with self._lock:
                    for sub_id in lost:
                        self._subs.pop(sub_id, None)
                self._gap_opened(subs, failed=True)  # the ones still subscribed lost this connection too
                self.connected = False
                self._on_subscriptions_lost(sorted({subs[i].mailbox for i in lost}), exc)
            finally:
                with self._lock:
                    self._service = None
                with contextlib.suppress(Exception):  # already closed
                    service.stop_streaming()

    def _stream_failed(self, exc: BaseException, subs: dict[str, Subscription]) -> bool:
        """A dropped stream, a server error or a stall: catch up, back off, reconnect. True: stop."""
        if self._is_stopping():
            return True
        self._gap_opened(subs, failed=not self._was_changed())
        if self._was_changed():
            # we closed it ourselves to add or remove a subscription: not a failure, but events the
            # server wrote to it from then on are lost: its mailboxes catch up once the next one is open
            self.connected = False
            return False
        self.connected = False
        self.failures += 1
        delay = server_back_off(exc) or self._backoff.delay(self.failures)
        log.warning(
            "stream %d lost (%s); %d mailbox(es) catch up, reconnecting in %.1fs",
            self.index,
            describe(exc),
            len(subs),
            delay,
        )
        self._on_stream_lost(sorted({s.mailbox for s in subs.values()}), exc)
        with self._lock:
            if not self._stopping:
                self._lock.wait(delay)
        return False

    def _gap_opened(self, subs: dict[str, Subscription], failed: bool = False) -> None:
        """The connection carrying ``subs`` is gone: until the server holds the next one it may write their
        events to the dead socket (it has not noticed yet), so their mailboxes catch up once it is open."""
        with self._lock:
            live = {s.mailbox for s in self._subs.values()}
            gap = {s.mailbox for s in subs.values()} & live
            self._catch_up_on_open |= gap
            if failed:
                self._failed_gap |= gap

    @staticmethod
    def _mixed_users_refused(
        exc: BaseException, subs: dict[str, Subscription], anchor: str, lost: list[str]
    ) -> bool:
        """Whether the server refused the stream because it carries several users' subscriptions: it
        named exactly the subscriptions of mailboxes other than the stream's own, or answered with a code
        that says so. (A server that forgot subscriptions names them whoever owns them.)"""
        mailboxes = {s.mailbox for s in subs.values()}
        if len(mailboxes) < 2:
            return False
        if isinstance(exc, MIXED_USER_ERRORS):
            return True
        others = {sub_id for sub_id, s in subs.items() if s.mailbox != anchor}
        return set(lost) == others

    def _settle(self) -> None:
        """Wait (holding the condition) until no subscription was added or removed for COALESCE_SECONDS,
        or MAX_COALESCE_SECONDS passed."""
        started = time.monotonic()
        while not self._stopping:
            now = time.monotonic()
            quiet_left = COALESCE_SECONDS - (now - self._last_change)
            if quiet_left <= 0 or now - started >= MAX_COALESCE_SECONDS:
                return
            self._lock.wait(min(quiet_left, MAX_COALESCE_SECONDS - (now - started)))

    def _opened(self) -> None:
        """The server accepted the stream. A healthy group reports this request's mailboxes connected now;
        one that has been failing waits for the first envelope, so a stream that opens and then stalls (or
        answers with an error) counts as failed. A subscription added while the request was on its way
        could not interrupt it: re-issue now so it is read."""
        self.last_envelope = time.monotonic()
        self.connected = True
        self._proven = False
        if self._was_changed():
            self._interrupt()
            return
        with self._lock:
            gap = {s.mailbox for s in self._current.values()} & self._catch_up_on_open
            failed = gap & self._failed_gap
            self._catch_up_on_open -= gap
            self._failed_gap -= gap
        if gap - failed:
            self._on_reissued(sorted(gap - failed), "stream-reissued")
        if failed:
            self._on_reissued(sorted(failed), "stream-gap")
        if self.failures == 0:
            self._on_connected(self._request_mailboxes())

    def _heartbeat(self) -> None:
        self.last_envelope = time.monotonic()
        if not self._proven:
            self._proven = True
            self.failures = 0
            self._on_connected(self._request_mailboxes())

    def _request_mailboxes(self) -> list[str]:
        with self._lock:
            return sorted({s.mailbox for s in self._current.values()})

    def _is_stopping(self) -> bool:
        with self._lock:
            return self._stopping

    def _was_changed(self) -> bool:
        with self._lock:
            return self._changed

    def _interrupt(self) -> None:
        """Close the current streaming connection so the loop re-issues it (or stops)."""
        with self._lock:
            service = self._service
        if service is None:
            return
        response = getattr(service, "_streaming_response", None)
        _shutdown_socket(response)


def _reserve_session(protocol) -> None:
    """A stream holds one HTTP session for its whole life: grow the shared pool's ceiling by one for it.

    The pool was sized for the streams the rules needed at start; streams opened later (one per mailbox on
    a server that refuses mixed-user streams, or rules that grew) would otherwise take the sessions the
    sync workers need, and a worker waiting for a session behind a stream never gets one. exchangelib
    opens sessions lazily, so a ceiling above what is used costs nothing."""
    with contextlib.suppress(AttributeError, TypeError):
        protocol.max_connections = protocol.max_connections + 1


def _subscription_ids_in(message: str, subs: dict[str, Subscription]) -> list[str]:
    return [sub_id for sub_id in subs if re.search(re.escape(sub_id), message)]


def _shutdown_socket(response) -> None:
    """Wake a thread blocked reading a streaming response: shut its socket down, then close it."""
    if response is None:
        return
    raw = getattr(response, "raw", None)
    sock = None
    for path in (("_connection", "sock"), ("_fp", "fp", "raw", "_sock")):
        obj = raw
        for attr in path:
            obj = getattr(obj, attr, None)
            if obj is None:
                break
        if isinstance(obj, socket.socket):
            sock = obj
            break
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.shutdown(socket.SHUT_RDWR)
    with contextlib.suppress(Exception):
        response.close()
