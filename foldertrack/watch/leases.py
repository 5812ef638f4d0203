"""The watcher's side of the fleet: watch only the mailboxes whose lease this instance holds.

``on_acquired`` gives the mailbox a fresh state and a full resolve (which subscribes and catches every
folder up from its committed sync state); ``on_lost`` forgets the mailbox at once: queued work for it finds
no state and does nothing, its subscription leaves our stream (the server expires it; the new owner has its
own), and work already running is refused at commit by the fence. Every ownership-dependent transaction
(sync pages with their ledger, activity and outbox rows, sync-state resets, folder plans) calls
:meth:`LeasesMixin._fence` with the epoch the work started under.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection

from foldertrack.errors import LeaseLostError
from foldertrack.fleet import LeaseKeeper, assert_fenced
from foldertrack.watch.dispatcher import RESUME_REASON, TAKEOVER_REASON
from foldertrack.watch.events import HierarchyChanged
from foldertrack.watch.mailbox import MailboxState

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from foldertrack.watch.dispatcher import Dispatcher
    from foldertrack.watch.options import WatchOptions
    from foldertrack.watch.streaming import StreamGroup

log = logging.getLogger("foldertrack.watch")


class LeasesMixin:
    """Lease callbacks and fencing (part of :class:`~foldertrack.watch.daemon.Watcher`)."""

    options: WatchOptions
    engine: Engine
    dispatcher: Dispatcher
    rules: object
    ready: threading.Event
    _lock: threading.RLock
    _mailboxes: dict[str, MailboxState]
    _groups: list[StreamGroup]
    fleet: LeaseKeeper | None
    _retiring: set[str]

    def _make_fleet(self) -> LeaseKeeper | None:
        if self.options.fleet is None:
            return None
        return LeaseKeeper(
            self.engine,
            name=self.options.instance or "foldertrack",
            options=self.options.fleet,
            on_acquired=self._lease_acquired,
            on_lost=self._lease_lost,
        )

    def _owns(self, mailbox: str) -> bool:
        return self.fleet is None or self.fleet.epoch(mailbox) is not None

    def _fleet_wanted(self, wanted: set[str]) -> None:
        """Tell the keeper the rules' mailboxes; one being retired stays held until its folders are."""
        if self.fleet is not None:
            with self._lock:
                keep = wanted | self._retiring
            self.fleet.set_mailboxes(keep)

    def _mailbox_retired(self, mailbox: str) -> None:
        """A mailbox no rule names any more has been retired: its lease may go."""
        if self.fleet is None:
            return
        with self._lock:
            self._retiring.discard(mailbox)
            wanted = {m.lower() for m in self.rules.mailboxes()} if self.rules is not None else set()
        self._fleet_wanted(wanted)

    def _rules_for(self, rules: Any, mailbox: str) -> tuple:
        """``tuple(rules.for_mailbox(mailbox))`` through an index built once per rule set: ``for_mailbox``
        walks every rule (50,000 for 10,000 mailboxes x 5 folders), and is asked once per mailbox at start-up
        and for every lease acquired, on the lease keeper's thread, which must renew within the TTL."""
        index = getattr(self, "_rules_index", None)
        if index is None or index[0] is not rules:
            by_mailbox: dict[str, list] = {}
            for rule in rules.rules:
                by_mailbox.setdefault(rule.mailbox, []).append(rule)
            index = self._rules_index = (rules, by_mailbox)
        return tuple(index[1].get(mailbox.strip().lower(), ()))

    def _lease_acquired(self, mailbox: str, epoch: int) -> None:
        rules = self.rules
        for_mailbox = self._rules_for(rules, mailbox) if rules is not None else ()
        with self._lock:
            state = self._state_for(mailbox)  # type: ignore[attr-defined]  # TimerMixin
            state.rules = for_mailbox or state.rules
        log.info("%s: lease acquired (epoch %d): watching it", mailbox, epoch)
        # a takeover's resolve, subscription and catch-ups are background work: moves in the mailboxes
        # already watched go first; a mailbox watched before (epoch > 1: its cursors are committed) has its
        # catch-up right after its subscription (watch/dispatcher.py)
        reason = RESUME_REASON if epoch > 1 else TAKEOVER_REASON
        self.dispatcher.put(HierarchyChanged(mailbox, reason), delay=0.0)

    def _lease_lost(self, mailbox: str) -> None:
        with self._lock:
            state = self._mailboxes.pop(mailbox, None)
            if state is None:
                return
            sub_id, group_index = state.subscription_id, state.group
            state.subscription_id, state.group, state.subscribed_ids = None, None, frozenset()
            state.mode = "stopped"
            groups = list(self._groups)
        if sub_id is not None and group_index is not None and group_index < len(groups):
            groups[group_index].remove(sub_id)
        log.info("%s: lease lost or handed over: no longer watched here", mailbox)

    def _fence(self, conn: Connection, mailbox: str, epoch: int | None = None) -> None:
        """Refuse the transaction on ``conn`` unless this instance holds ``mailbox`` at ``epoch`` (default:
        the epoch held now)."""
        if self.fleet is None:
            return
        if epoch is None:
            epoch = self.fleet.epoch(mailbox)
        if epoch is None:
            raise LeaseLostError(
                f"write for {mailbox} refused: this instance does not hold its lease", mailbox, 0
            )
        assert_fenced(conn, mailbox, epoch)

    def _sync_fence(self, mailbox: str) -> Callable[[Connection], None] | None:
        """The fence a catch-up of ``mailbox`` commits under (the epoch held as it starts); raises
        :class:`LeaseLostError` at once when the mailbox is not held."""
        if self.fleet is None:
            return None
        epoch = self.fleet.epoch(mailbox)
        if epoch is None:
            raise LeaseLostError(f"{mailbox}: not synced, this instance does not hold its lease", mailbox, 0)
        return functools.partial(assert_fenced, mailbox=mailbox, epoch=epoch)

    def _fleet_problem(self) -> str | None:
        """Why the watcher must exit (for ``check()``): on SQLite, another watcher took over."""
        if self.fleet is not None and self.fleet.superseded:
            return "another watcher took this database over (this one was stalled past its lease TTL)"
        return None
