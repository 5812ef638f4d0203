"""Nothing lost, nothing doubled while Exchange misbehaves; the mailbox returns to streaming afterwards.

The simulator injects the faults a real server produces (dropped and stalled streams, expired
subscriptions, ``ErrorServerBusy`` throttling, HTTP 5xx, connection resets) while a "user" files mails.
"""

from __future__ import annotations

import random
import time

import pytest
from sqlalchemy import func, select

from foldertrack.simulator import MailSpec
from foldertrack.state.schema import ledger, subscription_health
from foldertrack.testing.harness import Harness, options_for_tests
from tests.watch.conftest import ALICE, BOB, RECORDS

RULES = f"""
mailboxes:
  - addresses: [{ALICE}, {BOB}]
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/Customers/Fabrikam: account:acc-fabrikam
"""
FOLDERS = {"Inbox/Customers/Contoso": "acc-contoso", "Inbox/Customers/Fabrikam": "acc-fabrikam"}


@pytest.fixture
def chaos(simulator_factory, tmp_path):
    """A harness whose simulator sends keep-alives every 0.3 s, and a watcher that calls a stream stalled
    after 1.5 s of silence and polls every second once streaming fails."""
    sim = simulator_factory(heartbeat=0.3)
    with Harness(tmp_path, simulator=sim, **options_for_tests(stream_stall_timeout=1.5)) as h:
        h.import_records(RECORDS)
        for address in (ALICE, BOB):
            mailbox = h.add_mailbox(address)
            for path in (*FOLDERS, "Inbox/Elsewhere"):
                mailbox.create_folder(path)
        h.write_rules(RULES)
        h.start_watcher()
        yield h


class User:
    """Files mails into tracked folders and remembers where each one should end up."""

    def __init__(self, h: Harness, seed: int = 7):
        self.h = h
        self.rng = random.Random(seed)
        self.expected: dict[str, str] = {}
        self.items: dict[str, tuple[str, str]] = {}

    def file(self, count: int, prefix: str, pace: float = 0.0) -> None:
        for n in range(count):
            mailbox = self.rng.choice((ALICE, BOB))
            subject = f"{prefix} {n}"
            item = self.h.sim.deliver(
                mailbox, MailSpec(subject=subject, sender="dana@contoso.com", to=[mailbox], body=subject)
            )
            folder = self.rng.choice(list(FOLDERS))
            self.items[subject] = (mailbox, self.h.sim.mailbox(mailbox).move_item(item, folder))
            self.expected[subject] = FOLDERS[folder]
            if pace:
                time.sleep(pace)  # a user's pace, so faults land between and during syncs

    def refile(self, count: int) -> None:
        for subject in self.rng.sample(sorted(self.items), count):
            mailbox, item = self.items[subject]
            folder = self.rng.choice(list(FOLDERS))
            self.items[subject] = (mailbox, self.h.sim.mailbox(mailbox).move_item(item, folder))
            self.expected[subject] = FOLDERS[folder]

    def tracked(self) -> dict[str, str | None]:
        return {a["subject"]: a["regarding_id"] for a in self.h.activities()}

    def assert_exactly_once(self, timeout: float = 30.0) -> None:
        self.h.wait_for(lambda: self.tracked() == self.expected, timeout, "every mail tracked, right record")
        self.h.settle()
        activities = self.h.activities()
        assert len(activities) == len(self.expected)
        with self.h.engine.connect() as conn:
            present = conn.execute(
                select(ledger.c.activity_key, func.count())
                .where(ledger.c.state == "present")
                .group_by(ledger.c.activity_key)
            ).all()
        assert sorted(n for _, n in present) == [1] * len(self.expected)


def _modes(h: Harness) -> dict[str, str]:
    with h.engine.connect() as conn:
        return dict(conn.execute(select(subscription_health.c.mailbox, subscription_health.c.mode)).all())


def _back_to_streaming(h: Harness) -> None:
    h.wait_for(lambda: _modes(h) == {ALICE: "streaming", BOB: "streaming"}, 20, "both mailboxes streaming")
    assert all(s.subscription_id for s in h.watcher.mailbox_states())


def test_streams_dropped_every_second(chaos, caplog):
    user = User(chaos)
    chaos.sim.faults.drop_streams_every(0.7)
    user.file(40, "dropped", pace=0.05)
    chaos.wait_for(lambda: caplog.text.count("stream 0 lost") >= 2, 15, "the stream dropped twice")
    user.refile(10)
    user.file(10, "dropped later", pace=0.05)
    user.assert_exactly_once()
    chaos.sim.faults.clear()
    _back_to_streaming(chaos)
    user.file(5, "after drops")
    user.assert_exactly_once()


def test_expired_subscriptions_are_renewed(chaos):
    user = User(chaos)
    user.file(10, "before expiry")
    old = {s.mailbox: s.subscription_id for s in chaos.watcher.mailbox_states()}
    assert chaos.sim.faults.expire_subscriptions() == 2
    user.file(10, "after expiry")  # no notification can arrive for these until the watcher resubscribes
    user.assert_exactly_once()
    chaos.wait_for(
        lambda: all(s.subscription_id not in (None, old[s.mailbox]) for s in chaos.watcher.mailbox_states()),
        10,
        "new subscriptions",
    )
    _back_to_streaming(chaos)


def test_stalled_stream_falls_back_to_polling_then_streams_again(chaos):
    user = User(chaos)
    chaos.sim.faults.stall_streams(True)
    user.file(10, "stalled")  # no notifications: found by reconnecting, then by polling
    chaos.wait_for(lambda: "polling" in _modes(chaos).values(), 15, "polling after repeated stalls")
    user.file(10, "while polling")
    user.assert_exactly_once()
    chaos.sim.faults.clear()
    _back_to_streaming(chaos)
    user.file(5, "streaming again")
    user.assert_exactly_once(timeout=10)


def test_throttling_backs_off_per_mailbox(chaos, caplog):
    user = User(chaos)
    chaos.sim.faults.server_busy(seconds=1.5, backoff_ms=300)
    user.file(30, "throttled", pace=0.02)
    user.assert_exactly_once()
    assert chaos.sim.faults.injected.get("busy", 0) > 0
    assert "throttled by Exchange (ErrorServerBusy" in caplog.text
    assert "backing off this mailbox 0.3s" in caplog.text  # the server's BackOffMilliseconds, per mailbox
    _back_to_streaming(chaos)


def test_failing_requests_and_connection_resets(chaos):
    user = User(chaos)
    chaos.sim.faults.http_error(503, seconds=0.8)
    user.file(15, "http 503", pace=0.02)
    chaos.sim.faults.reset_connections(seconds=0.8)
    user.file(15, "reset", pace=0.02)
    user.refile(8)
    user.assert_exactly_once()
    assert chaos.sim.faults.injected.get("http", 0) > 0 and chaos.sim.faults.injected.get("reset", 0) > 0
    _back_to_streaming(chaos)


def test_all_faults_at_once(chaos):
    """Random faults every 100 ms for 3 s while two mailboxes file and re-file mails."""
    user = User(chaos, seed=11)
    rng = random.Random(3)
    faults = chaos.sim.faults
    actions = [
        faults.drop_streams,
        faults.expire_subscriptions,
        lambda: faults.server_busy(requests=3, backoff_ms=200),
        lambda: faults.http_error(500, requests=2),
        lambda: faults.reset_connections(requests=2),
        lambda: faults.stall_streams(rng.random() < 0.5),
    ]
    for round_no in range(30):
        rng.choice(actions)()
        user.file(2, f"chaos {round_no}")
        if round_no % 5 == 4:
            user.refile(3)
        time.sleep(0.1)  # the faults' cadence
    faults.clear()
    user.assert_exactly_once(timeout=40)
    _back_to_streaming(chaos)


def test_a_mailbox_that_does_not_exist_does_not_hold_the_others_back(tmp_path):
    with Harness(tmp_path, **options_for_tests()) as h:
        h.import_records(RECORDS)
        h.add_mailbox(ALICE).create_folder("Inbox/Customers/Contoso")
        h.write_rules(RULES.replace(f"[{ALICE}, {BOB}]", f"[{ALICE}, ghost@example.com]"))
        h.start_watcher()  # ready although one mailbox can never be resolved
        item = h.sim.deliver(ALICE, MailSpec(subject="still tracked", sender="dana@contoso.com", to=[ALICE]))
        h.sim.mailbox(ALICE).move_item(item, "Inbox/Customers/Contoso")
        h.wait_tracked("still tracked", regarding_id="acc-contoso")
        h.wait_for(lambda: _modes(h).get("ghost@example.com") == "error", 10, "the ghost mailbox in error")
        with h.engine.connect() as conn:
            error = conn.execute(
                select(subscription_health.c.last_error).where(
                    subscription_health.c.mailbox == "ghost@example.com"
                )
            ).scalar_one()
        assert error.startswith("ErrorNonExistentMailbox")


def test_start_while_exchange_throttles_becomes_ready_and_catches_up(simulator_factory, tmp_path):
    """A transient failure at start (here throttling, as during a mailbox move or an outage) must not keep
    READY back: the service would be killed by its start timeout although it recovers by itself."""
    sim = simulator_factory(heartbeat=0.3)
    with Harness(tmp_path, simulator=sim, **options_for_tests()) as h:
        h.import_records(RECORDS)
        for address in (ALICE, BOB):
            h.add_mailbox(address).create_folder("Inbox/Customers/Contoso")
        h.write_rules(RULES)
        sim.faults.server_busy(seconds=4.0, backoff_ms=500)
        h.start_watcher(ready_timeout=2.5)  # ready while every request is still being throttled
        assert sim.faults.injected.get("busy", 0) > 0
        assert _modes(h).keys() <= {ALICE, BOB} and not any(s.resolved for s in h.watcher.mailbox_states())
        for n, address in enumerate((ALICE, BOB)):
            item = sim.deliver(
                address, MailSpec(subject=f"after {n}", sender="dana@contoso.com", to=[address])
            )
            sim.mailbox(address).move_item(item, "Inbox/Customers/Contoso")
        for n in range(2):
            h.wait_tracked(f"after {n}", timeout=20, regarding_id="acc-contoso")
        _back_to_streaming(h)
