"""A lease keeper's rounds are O(changed), not O(leases held) (DESIGN "Scale"): renewing many leases is one
UPDATE, a round with nothing to claim or hand back touches no lease row, and a lease past its local deadline
is still dropped. The keeper is not started: the test drives its rounds."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import event

from foldertrack.fleet import LeaseKeeper
from tests.fleet.conftest import mailbox_names

pytestmark = pytest.mark.postgres

MAILBOXES = 300


def _lease_statements(engine) -> list[tuple[str, int]]:
    """(first word, rows of parameters) of every statement on ``mailbox_leases`` from now on."""
    seen: list[tuple[str, int]] = []

    def record(conn, cursor, statement, parameters, context, executemany):
        if "mailbox_leases" in statement:
            seen.append((statement.split()[0].upper(), len(parameters) if executemany else 1))

    event.listen(engine, "before_cursor_execute", record)
    return seen


@pytest.fixture
def keeper(pg_engine):
    lost: list[str] = []
    k = LeaseKeeper(pg_engine, name="solo", ttl=30.0, claim_interval=1.0, on_lost=lost.append)
    k.lost = lost  # type: ignore[attr-defined]
    k.set_mailboxes(mailbox_names(MAILBOXES))
    k.register()
    k._rebalance()  # the first round: rows made, every lease claimed
    assert len(k.owned()) == MAILBOXES
    yield k
    k.stop()


def test_a_quiet_round_touches_no_lease_row(keeper, pg_engine):
    seen = _lease_statements(pg_engine)
    for _ in range(5):
        keeper._expire_local()
        keeper._rebalance()
    assert seen == []


def test_renewing_every_lease_is_one_update(keeper, pg_engine):
    seen = _lease_statements(pg_engine)
    keeper._renew()
    assert seen == [("UPDATE", 1)]
    assert len(keeper.owned()) == MAILBOXES and keeper.lost == []


def test_a_lease_past_its_local_deadline_is_dropped(keeper):
    with keeper._lock:
        keeper._held["user007@example.com"].deadline = time.monotonic() - 1
        keeper._first_deadline = min(keeper._first_deadline, time.monotonic() - 1)
    keeper._expire_local()
    assert keeper.lost == ["user007@example.com"]
    assert len(keeper.owned()) == MAILBOXES - 1
    assert keeper._first_deadline > time.monotonic()  # the next rounds skip the walk again


def test_leases_the_rules_no_longer_name_are_handed_back(keeper):
    keeper.set_mailboxes(mailbox_names(MAILBOXES - 2))
    keeper._rebalance()
    assert sorted(keeper.lost) == mailbox_names(MAILBOXES)[-2:]
    assert len(keeper.owned()) == MAILBOXES - 2
