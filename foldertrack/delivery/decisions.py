"""What sync records, inside its page transaction, besides the local activity: the outbox entry of each
decision for an external sink, and the local mark of ``on_leave: delete``.

With the ``sql`` sink there is no outbox (``sink`` None): the local tables are the only copy.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Connection, update

from foldertrack.delivery import outbox
from foldertrack.rules.model import SendOptions
from foldertrack.state import page_batch
from foldertrack.state.schema import activities
from foldertrack.state.types import utcnow


def _send(rule: object) -> dict[str, bool]:
    send = getattr(rule, "send", None)
    return (send if isinstance(send, SendOptions) else SendOptions()).as_dict()


@dataclass(frozen=True)
class OutboxWriter:
    """Writes the outbox entries of one sink (``sink`` None: local only). Every method takes the sync
    transaction's connection, so the entry commits exactly when the activity, ledger and sync state do."""

    sink: str | None = None

    def tracked(self, conn: Connection, key: str, mailbox: str, rule: object) -> None:
        """Tracked, re-linked or re-filed: the sink is brought to the local activity's content."""
        batch = page_batch.of(conn)
        if batch is None or key not in batch.created:  # an activity created in this page was never deleted
            conn.execute(
                update(activities)
                .where(activities.c.key == key, activities.c.deleted_at.is_not(None))
                .values(deleted_at=None)  # tracked again after on_leave: delete
            )
        if self.sink is not None:
            outbox.add(conn, sink=self.sink, key=key, op="upsert", mailbox=mailbox, send=_send(rule))

    def left(self, conn: Connection, key: str, mailbox: str, rule: object, policy: str) -> None:
        """Moved out of tracked folders with ``on_leave: untrack`` or ``delete`` (the local activity was
        untracked already); ``delete`` also marks the local activity and removes the CRM copy."""
        if policy == "delete":
            conn.execute(update(activities).where(activities.c.key == key).values(deleted_at=utcnow()))
        if self.sink is not None:
            op = "delete" if policy == "delete" else "untrack"
            outbox.add(conn, sink=self.sink, key=key, op=op, mailbox=mailbox, send=_send(rule))
