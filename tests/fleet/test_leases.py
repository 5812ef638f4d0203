"""Mailbox leases on PostgreSQL with several keepers in threads: split, hand-over, takeover, release.

Every test samples every keeper's ``owned()`` continuously and fails on any moment where two instances
owned one mailbox, and on any new claim whose epoch did not grow.
"""

from __future__ import annotations

import math
import socket
import time

import pytest
from sqlalchemy import create_engine, select

from foldertrack.fleet import LeaseKeeper, fleet_status
from foldertrack.state.schema import fleet_instances, mailbox_leases
from foldertrack.testing.harness import wait_until
from tests.fleet.conftest import CLAIM_INTERVAL, TTL, mailbox_names
from tests.fleet.ownership import OwnershipSampler, double_ownerships, epoch_regressions

pytestmark = pytest.mark.postgres


class Watch:
    """Samplers over several keepers; ``check()`` asserts no double ownership and growing epochs."""

    def __init__(self) -> None:
        self.samplers: list[OwnershipSampler] = []

    def add(self, keeper: LeaseKeeper) -> LeaseKeeper:
        self.samplers.append(OwnershipSampler(keeper.identity.name, keeper.owned).start())
        return keeper

    def check(self) -> None:
        intervals = [i for s in self.samplers for i in s.stop()]
        assert intervals, "nothing was ever owned"
        assert double_ownerships(intervals) == []
        assert epoch_regressions(intervals) == []


@pytest.fixture
def watch():
    w = Watch()
    yield w
    for sampler in w.samplers:
        sampler.stop()


def counts(*keepers: LeaseKeeper) -> list[int]:
    return [len(k.owned()) for k in keepers]


def balanced(keepers: list[LeaseKeeper], total: int) -> bool:
    owned = [k.owned() for k in keepers]
    share = math.ceil(total / len(keepers))
    union = set().union(*owned)
    return len(union) == total and all(len(o) <= share for o in owned)


def test_three_keepers_split_the_mailboxes_fairly(pg_engine, make_keeper, watch):
    boxes = mailbox_names(10)
    keepers = [watch.add(make_keeper(pg_engine, f"k{n}", boxes)) for n in range(3)]

    wait_until(lambda: balanced(keepers, 10), 10, "10 mailboxes split over 3 keepers (at most 4 each)")
    time.sleep(TTL)  # several renewals and rebalances: the split must hold still

    assert balanced(keepers, 10)
    assert sorted(counts(*keepers)) in ([2, 4, 4], [3, 3, 4])
    status = fleet_status(pg_engine)
    assert sorted(i["leases"] for i in status["instances"]) == sorted(counts(*keepers))
    assert {m["state"] for m in status["mailboxes"].values()} == {"owned"}
    watch.check()


def test_a_joining_keeper_gets_its_share_handed_over(pg_engine, make_keeper, watch):
    boxes = mailbox_names(12)
    acquired: list[tuple[str, int]] = []
    lost: list[str] = []
    first = watch.add(
        make_keeper(
            pg_engine, "first", boxes, on_acquired=lambda m, e: acquired.append((m, e)), on_lost=lost.append
        )
    )
    wait_until(lambda: len(first.owned()) == 12, 10, "the only keeper owning all 12")
    assert sorted(m for m, _ in acquired) == boxes and lost == []

    second = watch.add(make_keeper(pg_engine, "second", boxes))

    wait_until(lambda: counts(first, second) == [6, 6], 10, "6 + 6 after the hand-over")
    assert sorted(lost) == sorted(set(boxes) - set(first.owned()))  # on_lost for each mailbox handed over
    assert not set(first.owned()) & set(second.owned())
    watch.check()


def test_a_dead_keepers_mailboxes_are_taken_over_within_the_ttl(pg_engine, make_keeper, watch):
    boxes = mailbox_names(8)
    a = watch.add(make_keeper(pg_engine, "a", boxes))
    b = watch.add(make_keeper(pg_engine, "b", boxes))
    wait_until(lambda: counts(a, b) == [4, 4], 10, "4 + 4")
    orphans = set(a.owned())

    a.stop(release=False)  # dies: no more heartbeats, nothing released
    killed = time.monotonic()
    status = wait_until(
        lambda: (s := fleet_status(pg_engine))["mailboxes"][min(orphans)]["state"] == "stale" and s,
        TTL + 2,
        "the dead keeper's mailboxes shown stale",
    )
    dead = next(i for i in status["instances"] if i["name"] == "a")
    assert dead["state"] == "stale" and dead["stale_since"] is not None

    wait_until(lambda: len(b.owned()) == 8, TTL + 3, "b owning all 8")
    assert time.monotonic() - killed <= TTL + 4 * CLAIM_INTERVAL + 0.5
    with pg_engine.connect() as conn:
        last_beat = conn.execute(
            select(fleet_instances.c.heartbeat_at).where(fleet_instances.c.id == a.id)
        ).scalar_one()
        taken = conn.execute(
            select(mailbox_leases.c.acquired_at).where(mailbox_leases.c.mailbox.in_(orphans))
        ).scalars()
        delays = [(t - last_beat).total_seconds() for t in taken]
    # by the database clock: claimed right after the lease ran out (last renewal + TTL)
    assert all(TTL <= d <= TTL + 4 * CLAIM_INTERVAL + 0.5 for d in delays), delays
    watch.check()


def test_release_on_stop_moves_mailboxes_in_well_under_a_ttl(pg_engine, make_keeper, watch):
    boxes = mailbox_names(10)
    slow_ttl = 20.0
    a = watch.add(make_keeper(pg_engine, "a", boxes, ttl=slow_ttl))
    b = watch.add(make_keeper(pg_engine, "b", boxes, ttl=slow_ttl))
    wait_until(lambda: counts(a, b) == [5, 5], 10, "5 + 5")

    started = time.monotonic()
    a.stop()  # SIGTERM path: leases handed back at once
    wait_until(lambda: len(b.owned()) == 10, slow_ttl / 4, "b owning all 10")

    assert time.monotonic() - started < 2.0  # a claim interval or so, not the 20 s TTL
    status = fleet_status(pg_engine)
    assert next(i for i in status["instances"] if i["name"] == "a")["state"] == "stopped"
    watch.check()


def test_epochs_grow_at_every_claim_across_hand_overs(pg_engine, make_keeper, watch):
    boxes = mailbox_names(4)
    seen: dict[str, list[int]] = {m: [] for m in boxes}

    def record(mailbox: str, epoch: int) -> None:
        seen[mailbox].append(epoch)

    keepers = [watch.add(make_keeper(pg_engine, "k0", boxes, on_acquired=record))]
    wait_until(lambda: len(keepers[0].owned()) == 4, 10, "k0 owning all")
    for n in range(1, 4):  # join, then the oldest leaves: every mailbox moves several times
        keepers.append(watch.add(make_keeper(pg_engine, f"k{n}", boxes, on_acquired=record)))
        wait_until(lambda: balanced(keepers, 4), 10, "balanced after a join")
        keepers.pop(0).stop()
        wait_until(lambda: balanced(keepers, 4), 10, "balanced after a stop")

    for mailbox, epochs in seen.items():
        assert len(epochs) >= 2, mailbox
        assert epochs == sorted(set(epochs)), (mailbox, epochs)  # strictly increasing
    watch.check()


def test_mailboxes_added_and_removed_from_the_rules_follow(pg_engine, make_keeper, watch):
    boxes = mailbox_names(6)
    a = watch.add(make_keeper(pg_engine, "a", boxes[:4]))
    wait_until(lambda: set(a.owned()) == set(boxes[:4]), 10, "a owning the first 4")

    a.set_mailboxes(boxes[2:])

    wait_until(lambda: set(a.owned()) == set(boxes[2:]), 5, "a owning the new set")
    status = fleet_status(pg_engine)["mailboxes"]
    assert status[boxes[0]]["state"] == "free" and status[boxes[5]]["state"] == "owned"
    watch.check()


def test_a_keeper_whose_database_is_gone_stops_claiming_ownership(pg_engine, make_keeper, watch):
    boxes = mailbox_names(3)
    lost: list[str] = []
    a = watch.add(make_keeper(pg_engine, "a", boxes, on_lost=lost.append))
    wait_until(lambda: len(a.owned()) == 3, 10, "a owning all")

    pg_engine.dispose()
    a.engine = _unreachable_engine()  # every round fails from now on: like a partition

    wait_until(lambda: a.owned() == {}, TTL + 1, "a dropping its leases by its own clock")
    wait_until(lambda: sorted(lost) == boxes, 2, "on_lost for each (on the keeper thread, just after)")
    assert a.errors > 0
    a.engine = pg_engine  # so the fixture's stop() can release
    watch.check()


def _unreachable_engine():
    # a port nothing listens on (bound by this test, not accepting)

    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    return create_engine(
        f"postgresql+psycopg://postgres@127.0.0.1:{port}/test", connect_args={"connect_timeout": 1}
    )
