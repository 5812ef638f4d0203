"""What the daemon reports as it works, for metrics (``foldertrack.ops.metrics``) and tests.

The daemon calls these hooks from its stream readers and workers; an implementation must be cheap and
must never raise or block (no I/O). The base class ignores everything, so a watcher without metrics pays
nothing.
"""

from __future__ import annotations

from foldertrack.sync import SyncResult


class WatchObserver:
    """Hooks called by the watcher; every method is a no-op here."""

    def events_received(self, mailbox: str, count: int) -> None:
        """A stream delivered ``count`` notification events for ``mailbox`` (stream reader thread)."""

    def sync_finished(
        self, mailbox: str, folder_path: str, seconds: float, result: SyncResult, trigger_age: float
    ) -> None:
        """A folder catch-up committed. ``trigger_age`` is the time from the first trigger it served
        (notification, poll tick, retry) to its end: the move → activity latency for what it tracked."""

    def error(self, mailbox: str, operation: str, code: str) -> None:
        """Work failed; ``operation`` is ``sync``, ``hierarchy``, ``subscribe`` or ``stream``; ``code`` the
        EWS response code (``ErrorServerBusy``) or the exception's class name."""

    def mode_changed(self, mailbox: str, old: str, new: str) -> None:
        """A mailbox moved between ``starting``, ``streaming``, ``polling``, ``error`` and ``stopped``."""

    def delivered(self, sink: str, op: str, outcome: str, seconds: float) -> None:
        """A delivery worker finished one outbox entry: ``outcome`` is ``delivered``, ``retry`` (transient
        failure), ``dead`` (rejected: dead letter) or ``skipped`` (superseded); ``seconds`` the sink call."""

    def resubscribed(self, mailbox: str, code: str) -> None:
        """The server lost (or refused to stream) ``mailbox``'s subscription with EWS code ``code``: it is
        subscribed again, no sooner than :class:`~foldertrack.watch.streaming.ResubscribeLimiter` allows."""

    def backfilled(self, mailbox: str, folder_path: str, seconds: float, result: SyncResult) -> None:
        """A folder's first sync (backfill of the mails already there) committed: not a live move, so it
        feeds no move → activity latency."""

    def rules_reloaded(self, ok: bool) -> None:
        """A rules reload finished: ``ok`` False when the new set was refused (the previous one runs on)."""
