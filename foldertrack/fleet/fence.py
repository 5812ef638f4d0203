"""The fence: an ownership-dependent write commits only under the lease epoch it was started with.

Call :func:`assert_fenced` inside the writer's transaction (sync state, ledger, outbox), before it commits.
On PostgreSQL it reads the lease row ``FOR KEY SHARE``: the check holds until the transaction ends, and a
claimer's ``FOR UPDATE SKIP LOCKED`` passes the row by until then, so no successor can claim the mailbox
between the check and the commit; the owner's own renewals (plain UPDATEs of non-key columns) are not
blocked. On SQLite writes are serialised by the database lock, so the check and the write are atomic when
the writer's transaction begins ``IMMEDIATE``.
"""

from __future__ import annotations

from sqlalchemy import Connection, func, select

from foldertrack.errors import LeaseLostError
from foldertrack.fleet.clock import db_now, is_sqlite
from foldertrack.state.schema import mailbox_leases as leases


def assert_fenced(conn: Connection, mailbox: str, epoch: int) -> None:
    """Raise :class:`LeaseLostError` unless ``mailbox``'s lease is unexpired at ``epoch`` (the transaction
    must then roll back); otherwise keep the lease row share-locked until the transaction ends."""
    now = db_now(conn) if is_sqlite(conn) else func.clock_timestamp()
    query = select(leases.c.epoch).where(
        leases.c.mailbox == mailbox, leases.c.epoch == epoch, leases.c.expires_at > now
    )
    if not is_sqlite(conn):
        query = query.with_for_update(read=True, key_share=True)
    if conn.execute(query).first() is not None:
        return
    row = conn.execute(
        select(leases.c.owner, leases.c.epoch, leases.c.expires_at).where(leases.c.mailbox == mailbox)
    ).first()
    if row is None:
        why = "there is no lease for it"
    elif row.epoch != epoch:
        why = f"it was claimed again (epoch {row.epoch}, instance {row.owner})"
    else:
        why = f"the lease expired at {row.expires_at.isoformat()}"
    raise LeaseLostError(
        f"write for {mailbox} refused: this instance holds its lease at epoch {epoch} no longer, {why}",
        mailbox,
        epoch,
    )
