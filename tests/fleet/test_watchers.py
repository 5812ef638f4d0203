"""Two real watchers (in-process) on one PostgreSQL and one simulator, splitting mailboxes by lease.

Each mailbox is subscribed and synced by exactly one watcher at a time, every mail is tracked exactly once,
and a watcher that stops hands its mailboxes over at once; the one taking over catches up from the
committed sync state, so a mail that arrived in between is tracked too.
"""

from __future__ import annotations

import math
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select

from foldertrack.fleet import FleetOptions
from foldertrack.simulator import MailSpec
from foldertrack.state.schema import activities, ledger
from foldertrack.testing.harness import Harness, options_for_tests, wait_until
from foldertrack.watch.daemon import Watcher

pytestmark = pytest.mark.postgres

BOXES = [f"user{n}@example.com" for n in range(6)]
RULES = "mailboxes:\n  - addresses: [{}]\n    folders:\n      Inbox/CRM:\n        record: null\n".format(
    ", ".join(BOXES)
)
FLEET = FleetOptions(ttl=3.0, claim_interval=0.1)


@pytest.fixture
def pair(tmp_path, postgres_url) -> Iterator[tuple[Harness, Harness]]:
    with Harness(tmp_path / "one", database_url=postgres_url, **options_for_tests()) as one:
        for address in BOXES:
            one.add_mailbox(address).create_folder("Inbox/CRM")
        with Harness(
            tmp_path / "two", simulator=one.sim, database_url=postgres_url, **options_for_tests()
        ) as two:
            for h in (one, two):
                h.write_rules(RULES)
            yield one, two


def watched(watcher: Watcher) -> set[str]:
    return {s.mailbox for s in watcher.mailbox_states()}


def subscribed(watcher: Watcher) -> set[str]:
    return {s.mailbox for s in watcher.mailbox_states() if s.subscription_id}


def split(w1: Watcher, w2: Watcher) -> bool:
    a, b = subscribed(w1), subscribed(w2)
    share = math.ceil(len(BOXES) / 2)
    return a | b == set(BOXES) and not a & b and len(a) <= share and len(b) <= share


def deliver(h: Harness, address: str, subject: str) -> None:
    h.sim.deliver(
        address,
        MailSpec(subject=subject, to=[address], message_id=f"<{subject}@example.com>"),
        folder="Inbox/CRM",
    )


def counts(h: Harness) -> tuple[int, int]:
    with h.engine.connect() as conn:
        return (
            conn.execute(select(func.count()).select_from(activities)).scalar_one(),
            conn.execute(select(func.count()).select_from(ledger)).scalar_one(),
        )


def test_two_watchers_split_the_mailboxes_and_track_each_mail_once(pair):
    one, two = pair
    w1 = one.start_watcher(instance="one", fleet=FLEET)
    w2 = two.start_watcher(instance="two", fleet=FLEET)
    wait_until(lambda: split(w1, w2), 20, "6 mailboxes subscribed, split 3 + 3, none by both")
    assert watched(w1) == subscribed(w1) and watched(w2) == subscribed(w2)

    for n, address in enumerate(BOXES):
        deliver(one, address, f"mail-{n}")

    wait_until(lambda: counts(one) == (6, 6), 20, "6 activities, one ledger row each")
    with one.engine.connect() as conn:
        owners = dict(conn.execute(select(activities.c.mailbox, activities.c.key)).all())
    assert set(owners) == set(BOXES)
    assert not watched(w1) & watched(w2)


def test_a_stopping_watcher_hands_its_mailboxes_over_and_nothing_is_lost(pair):
    one, two = pair
    w1 = one.start_watcher(instance="one", fleet=FLEET)
    w2 = two.start_watcher(instance="two", fleet=FLEET)
    wait_until(lambda: split(w1, w2), 20, "split 3 + 3")
    moving = subscribed(w1)
    for n, address in enumerate(BOXES):
        deliver(one, address, f"before-{n}")
    wait_until(lambda: counts(one) == (6, 6), 20, "the first 6 mails tracked")

    one.stop_watcher()  # SIGTERM path: leases released at once
    for n, address in enumerate(sorted(moving)):  # arrives while nobody watches that mailbox
        deliver(two, address, f"between-{n}")

    wait_until(lambda: subscribed(w2) == set(BOXES), 10, "the other watcher subscribed to all 6")
    wait_until(lambda: counts(two) == (6 + len(moving),) * 2, 20, "the mails of the gap tracked, once")
