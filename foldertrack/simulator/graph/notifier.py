"""The one thread that posts change and lifecycle notifications, in batches per URL, in order.

A notification is posted once: if the subscriber does not answer 2xx within 3 s (Graph's budget for a
notification endpoint) it is lost, and a ``missed`` lifecycle notification follows when the subscription
has a lifecycle URL, as Graph does after dropping notifications.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import requests

log = logging.getLogger(__name__)

DELIVERY_TIMEOUT = 3.0


@dataclass(frozen=True)
class Outgoing:
    url: str
    notification: dict[str, Any]
    ready_at: float
    on_failure: Callable[[], None] | None = None
    on_success: Callable[[], None] | None = None


class Notifier:
    def __init__(self, verify: Callable[[], bool | str]) -> None:
        self._queue: queue.Queue[Outgoing | None] = queue.Queue()
        self._verify = verify
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._session = requests.Session()
        self.posted = 0
        self.failed = 0

    def send(self, outgoing: Outgoing) -> None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="graph-sim-notifier", daemon=True)
                self._thread.start()
        self._queue.put(outgoing)

    def stop(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._queue.put(None)
            thread.join(5.0)
        self._session.close()

    def _run(self) -> None:
        pending: list[Outgoing] = []
        while True:
            now = time.monotonic()
            due = [o for o in pending if o.ready_at <= now]
            pending = [o for o in pending if o.ready_at > now]
            if due:
                self._post_batches(due)
                continue
            wait = min((o.ready_at for o in pending), default=None)
            try:
                item = self._queue.get(timeout=None if wait is None else max(0.0, wait - now))
            except queue.Empty:
                continue
            if item is None:
                return
            pending.append(item)
            while True:  # take everything already queued: one POST per URL per batch
                try:
                    more = self._queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    return
                pending.append(more)

    def _post_batches(self, due: list[Outgoing]) -> None:
        by_url: dict[str, list[Outgoing]] = {}
        for outgoing in due:
            by_url.setdefault(outgoing.url, []).append(outgoing)
        for url, batch in by_url.items():
            try:
                response = self._session.post(
                    url,
                    json={"value": [o.notification for o in batch]},
                    timeout=DELIVERY_TIMEOUT,
                    verify=self._verify(),
                )
                ok = 200 <= response.status_code < 300
            except requests.RequestException as exc:
                log.debug("graph notification to %s failed: %s", url, exc)
                ok = False
            if ok:
                self.posted += len(batch)
            else:
                self.failed += len(batch)
            for outgoing in batch:
                callback = outgoing.on_success if ok else outgoing.on_failure
                if callback is not None:
                    callback()
