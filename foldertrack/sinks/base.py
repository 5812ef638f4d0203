"""The contract between the watcher and wherever activities go.

The watcher decides (which record, re-link, untrack, delete); a sink only applies those decisions,
idempotently, keyed by ``Activity.key``. A sink that writes into the state database
(``shares_state_database``, the SQL sink) is handed the state transaction's connection, so the activity,
the ledger row and the sync state commit together. Every other sink is fed by the delivery outbox
(:mod:`foldertrack.delivery`): the sync transaction writes an outbox entry per decision, and delivery
workers call the sink later, at least once and in order per mail key, with ``conn=None``. A sink must
therefore be idempotent: a retry after a crash repeats the call with the same key (and, for webhooks, the
same :attr:`Delivery.idempotency_key`), and the effect stays exactly once.

Errors: raise :class:`~foldertrack.errors.TransientSinkError` (with ``retry_after`` from ``Retry-After``)
for anything that may pass by itself — delivery retries it without limit; raise
:class:`~foldertrack.errors.PermanentSinkError` with the CRM's own message for a rejection — delivery
dead-letters the entry (``foldertrack retry`` replays it). Any other exception counts as transient.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from typing import TYPE_CHECKING, ClassVar, Literal

from foldertrack.errors import PermanentSinkError

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from foldertrack.model import Activity

UpsertOutcome = Literal["created", "updated", "unchanged"]
#: what an outbox entry asks of the sink
DeliveryOp = Literal["upsert", "untrack", "delete"]


@dataclass(frozen=True)
class Delivery:
    """The outbox entry a delivery worker is applying right now (see :func:`current_delivery`).

    ``idempotency_key`` is stable across every retry and replay of this entry and unique per entry (webhook:
    the ``Idempotency-Key`` header). ``attempt`` counts from 1. ``mailbox`` is the mailbox whose decision
    produced the entry (``delete`` removes only the copy that mailbox created).
    """

    entry_id: int
    idempotency_key: str
    op: DeliveryOp
    key: str
    mailbox: str
    attempt: int


_CURRENT: ContextVar[Delivery | None] = ContextVar("foldertrack_delivery", default=None)


def current_delivery() -> Delivery | None:
    """The outbox entry being delivered by this thread, or None outside a delivery worker (e.g. sync
    calling the SQL sink)."""
    return _CURRENT.get()


@contextmanager
def delivering(delivery: Delivery) -> Iterator[Delivery]:
    """Make ``delivery`` visible to :func:`current_delivery` for the duration of one sink call."""
    token = _CURRENT.set(delivery)
    try:
        yield delivery
    finally:
        _CURRENT.reset(token)


class ActivitySink(ABC):
    """Applies tracking decisions. Raise TransientSinkError to be retried, PermanentSinkError to dead-letter."""

    #: entry-point name, e.g. ``sql``
    name: ClassVar[str]
    #: True when the sink's writes can join the state store's transaction (same database). False: the
    #: sink is fed by the delivery outbox.
    shares_state_database: ClassVar[bool] = False
    #: how many delivery workers may call this sink at once (capped by ``delivery.workers``)
    max_concurrency: int = 4

    @abstractmethod
    def upsert(self, activity: Activity, conn: Connection | None = None) -> UpsertOutcome:
        """Create the activity for ``activity.key``, or bring the existing one to exactly this content
        (fields, parties, attachments, regarding, state). Calling it twice has the effect of calling it once."""

    @abstractmethod
    def untrack(self, key: str, conn: Connection | None = None) -> bool:
        """Clear the regarding of ``key``'s activity and mark it untracked; never delete it.
        Returns False when there is no such activity."""

    def delete(self, key: str, conn: Connection | None = None) -> bool:
        """``on_leave: delete``: remove the CRM copy of ``key``'s activity (the watcher only asks when the
        leaving mailbox created it and no tracked folder holds the mail any more). Returns False when there
        was nothing to delete (already gone is success). Sinks that cannot delete keep this default."""
        raise PermanentSinkError(f"sink {self.name!r} does not support on_leave: delete", code="unsupported")

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default sink has none of its own."""
