"""The contract between the watcher and wherever activities go.

The watcher decides (which record, re-link, untrack); a sink only applies those decisions, idempotently,
keyed by ``Activity.key``. A sink that writes into the state database (``shares_state_database``) is handed
the state transaction's connection, so the activity, the ledger row and the sync state commit together.
Any other sink is called before that commit and must be idempotent: a retry after a crash repeats the call
with the same key, and the effect stays exactly once.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import TYPE_CHECKING, ClassVar, Literal

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from foldertrack.model import Activity

UpsertOutcome = Literal["created", "updated", "unchanged"]


class ActivitySink(ABC):
    """Applies tracking decisions. Raise TransientSinkError to be retried, PermanentSinkError to dead-letter."""

    #: entry-point name, e.g. ``sql``
    name: ClassVar[str]
    #: True when the sink's writes can join the state store's transaction (same database).
    shares_state_database: ClassVar[bool] = False

    @abstractmethod
    def upsert(self, activity: Activity, conn: Connection | None = None) -> UpsertOutcome:
        """Create the activity for ``activity.key``, or bring the existing one to exactly this content
        (fields, parties, attachments, regarding, state). Calling it twice has the effect of calling it once."""

    @abstractmethod
    def untrack(self, key: str, conn: Connection | None = None) -> bool:
        """Clear the regarding of ``key``'s activity and mark it untracked; never delete it.
        Returns False when there is no such activity."""

    def close(self) -> None:  # noqa: B027 - optional hook
        """Release connections; the default sink has none of its own."""
