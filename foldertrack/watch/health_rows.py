"""Which mailboxes changed since the timer last looked, and their health rows written in one batch.

The timer's periodic work is O(changed), not O(all mailboxes): a :class:`WatchedState` reports every change
of a field the timer cares about (health values, what decides polling and the safety net) to its watcher's
:class:`Changes`, and so does the dispatcher for a mailbox's backlog; the timer drains that set each tick, writes only those mailboxes' health rows
(one upsert statement per batch) and looks at only those mailboxes' poll and safety-net times.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.dialects import postgresql, sqlite

from foldertrack.state import watch_store as store
from foldertrack.state.schema import subscription_health
from foldertrack.state.types import utcnow
from foldertrack.watch.mailbox import MailboxState

#: fields whose change makes the timer look at the mailbox again: its health row values and what decides
#: its poll and safety-net times (``targets``: status line folder counts)
WATCHED_FIELDS = frozenset(
    {"mode", "last_error", "last_event_at", "failing", "stuck", "resolved", "subscription_id", "targets"}
)
_MISSING = object()


class Changes:
    """A thread-safe set of mailbox names, drained by the timer; ``version`` moves on every change of a state
    (not of a backlog: the supervisor recomputes its mailbox counts only when it moved). Its lock is a leaf:
    held for a set operation, never while taking another lock, so any thread may report under any lock of
    its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._names: set[str] = set()
        self.version = 0

    def add(self, mailbox: str) -> None:
        with self._lock:
            self._names.add(mailbox)
            self.version += 1

    def backlog_changed(self, mailbox: str) -> None:
        """The mailbox's backlog changed (its health row, not its state)."""
        with self._lock:
            self._names.add(mailbox)

    def retry(self, mailboxes: Iterable[str]) -> None:
        """Health rows whose write failed: written at the next drain."""
        with self._lock:
            self._names.update(mailboxes)

    def drain(self) -> set[str]:
        """The mailboxes changed since the last drain (and forget them)."""
        with self._lock:
            names, self._names = self._names, set()
            return names


class WatchedState(MailboxState):
    """A :class:`MailboxState` that reports a change of a :data:`WATCHED_FIELDS` field (from any thread, no
    I/O) to ``notify``; assigning the value a field already has is no change."""

    _notify: Callable[[str], None] | None = None

    def __setattr__(self, name: str, value: Any) -> None:
        if name in WATCHED_FIELDS and self._notify is not None:
            changed = getattr(self, name, _MISSING) != value
            object.__setattr__(self, name, value)
            if changed:
                self._notify(self.mailbox)
        else:
            object.__setattr__(self, name, value)

    @classmethod
    def create(cls, mailbox: str, notify: Callable[[str], None]) -> WatchedState:
        state = cls(mailbox)
        object.__setattr__(state, "_notify", notify)
        notify(mailbox)  # a new state: its health row and timers are due
        return state


def write_health_rows(engine: Engine, rows: dict[str, dict], *, instance: str | None) -> None:
    """Upsert the health rows of ``rows`` (``mailbox → values``) in one transaction, one ``INSERT … ON
    CONFLICT DO UPDATE`` executed for all rows with the same columns (the same effect as
    :func:`foldertrack.state.watch_store.write_health`, in a handful of statements instead of one or two per
    mailbox); raises WriterBusy instead of waiting behind our other writers (SQLite)."""
    if not rows:
        return
    now = utcnow()
    by_columns: dict[tuple[str, ...], list[dict]] = {}
    for mailbox, values in rows.items():
        row = {**values, "mailbox": mailbox, "updated_at": now, "instance": instance}
        by_columns.setdefault(tuple(sorted(row)), []).append(row)
    with store.writing(engine, wait=False) as conn:
        dialect: Any = postgresql if conn.dialect.name == "postgresql" else sqlite
        for columns, batch in by_columns.items():
            insert = dialect.insert(subscription_health)
            statement = insert.on_conflict_do_update(
                index_elements=["mailbox"],
                set_={c: insert.excluded[c] for c in columns if c != "mailbox"},
            )
            conn.execute(statement, batch)
