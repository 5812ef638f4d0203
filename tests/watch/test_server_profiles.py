"""The watcher against servers that differ from Exchange (issue 11): every simulator server profile, end to
end through exchangelib, plus the guards each one needs (stream regrouping, no resubscribe storm,
fractional timestamps, HTML-only bodies, StatusEvent keep-alives, other lost-subscription codes, batches).
"""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest
from exchangelib.errors import ErrorSubscriptionNotFound, TransportError
from exchangelib.ewsdatetime import EWSDateTime

from foldertrack.exchange.datetimes import parse_ews_datetime
from foldertrack.exchange.htmltext import html_to_text
from foldertrack.ops.metrics import PrometheusObserver
from foldertrack.ops.status import collect_status
from foldertrack.retry import Backoff
from foldertrack.simulator import MailSpec
from foldertrack.simulator.profiles import PROFILES
from foldertrack.testing.harness import Harness, options_for_tests, wait_until
from foldertrack.watch.resubscribe import ResubscribeLimiter, is_lost_subscription
from tests.watch.conftest import ALICE, BOB, RECORDS

CAROL = "carol@example.com"
TYPES = "http://schemas.microsoft.com/exchange/services/2006/types"
FOLDER = "Inbox/Customers/Contoso"


def rules(addresses, extra: str = "") -> str:
    return (
        f"mailboxes:\n  - addresses: [{', '.join(addresses)}]\n    folders:\n"
        f"      {FOLDER}:\n        record: account:acc-contoso\n{extra}"
    )


@pytest.fixture
def make(tmp_path, simulator_factory):
    """``make(profile, mailboxes, **watch_overrides)``: a started watcher on a simulator with ``profile``."""
    harnesses: list[Harness] = []

    def start(profile, mailboxes=(ALICE,), rules_text=None, observer=None, before_start=None, **overrides):
        sim = simulator_factory(heartbeat=0.3)
        sim.use_profile(profile)
        h = Harness(tmp_path / f"h{len(harnesses)}", simulator=sim, **options_for_tests())
        h.__enter__()
        harnesses.append(h)
        h.import_records(RECORDS)
        for address in mailboxes:
            h.add_mailbox(address).create_folder(FOLDER)
        h.write_rules(rules_text or rules(mailboxes))
        if before_start is not None:
            before_start(h)
        h.start_watcher(observer=observer, **overrides)
        return h

    yield start
    for h in harnesses:
        h.stop()


def mail(subject: str, **kw) -> MailSpec:
    kw.setdefault("sender", "dana@contoso.com")
    kw.setdefault("message_id", f"<{subject.replace(' ', '-')}@example.com>")
    kw.setdefault("body", f"body of {subject}")
    return MailSpec(subject=subject, **kw)


def file_mail(h: Harness, address: str, subject: str, **kw) -> str:
    item = h.sim.deliver(address, mail(subject, to=[address], **kw))
    return h.sim.mailbox(address).move_item(item, FOLDER)


def status_of(h: Harness, address: str) -> dict:
    return next(m for m in collect_status(h.engine)["mailboxes"] if m["mailbox"] == address)


def states(h: Harness) -> dict:
    return {s.mailbox: s for s in h.watcher.mailbox_states()}


def all_streaming(h: Harness) -> bool:
    return all(s.mode == "streaming" for s in h.watcher.mailbox_states())


@pytest.mark.parametrize("profile", sorted(PROFILES))
def test_tracking_exactly_once_on_every_profile(make, profile):
    h = make(profile, mailboxes=(ALICE, BOB))
    h.wait_for(lambda: all_streaming(h), what="every mailbox streaming")
    file_mail(h, ALICE, f"{profile} for alice", html_body="<p>Hello <b>Alice</b></p>")
    file_mail(h, BOB, f"{profile} for bob")
    for address in (ALICE, BOB):
        who = address.split("@")[0]
        a = h.wait_tracked(f"{profile} for {who}", regarding_id="acc-contoso", mailbox=address)
        assert a["text_body"] and ("body of" in a["text_body"] or who.capitalize() in a["text_body"])
        assert a["received_at"] is not None
    h.settle()
    assert len(h.activities()) == 2
    assert all_streaming(h)


# -- 1. one user per stream ---------------------------------------------------------------------------------


def test_single_user_streams_regroup_per_mailbox_without_a_storm(make):
    observer = PrometheusObserver()
    h = make("single-user-streams", mailboxes=(ALICE, BOB, CAROL), observer=observer)

    def regrouped():
        groups = [g for g in h.watcher.stream_groups() if g.size()]
        return len(groups) == 3 and all(g.connected for g in groups) and all_streaming(h) and groups

    groups = h.wait_for(regrouped, what="every mailbox streaming on its own stream")
    assert all(len(g.mailboxes()) == 1 for g in groups)
    assert any(g.refuses_mixed_users for g in h.watcher.stream_groups())
    # each stream holds a session for its whole life: the pool grew so the workers keep theirs
    pool = h.watcher.connector.account(ALICE).protocol.max_connections
    assert pool >= h.watcher.options.workers + 8 + 3
    subscribes = h.sim.stats["Subscribe"]
    assert subscribes <= 5  # three, and one resubscribe for each of the two refused mailboxes
    refused = observer.registry.get_sample_value(
        "foldertrack_resubscribes_total", {"code": "ErrorInvalidSubscription"}
    )
    assert refused == 2
    with pytest.raises(
        AssertionError, match="timed out"
    ):  # bounded: a storm resubscribes many times a second
        wait_until(lambda: h.sim.stats["Subscribe"] > subscribes, timeout=1.5, what="another subscribe")
    file_mail(h, CAROL, "carol streams")
    h.wait_tracked("carol streams", mailbox=CAROL)
    assert status_of(h, CAROL)["mode"] == "streaming"


def test_stream_per_mailbox_setting_never_mixes_users(make):
    observer = PrometheusObserver()
    h = make("single-user-streams", mailboxes=(ALICE, BOB), observer=observer, streams_per_connection=1)
    h.wait_for(lambda: all_streaming(h), what="every mailbox streaming")
    assert len([g for g in h.watcher.stream_groups() if g.size()]) == 2
    assert (
        observer.registry.get_sample_value(
            "foldertrack_resubscribes_total", {"code": "ErrorInvalidSubscription"}
        )
        is None
    )
    assert h.sim.stats["Subscribe"] == 2


def test_stream_per_mailbox_config_gives_one_mailbox_per_stream(tmp_path):
    from foldertrack.config import load_config
    from foldertrack.runtime import watch_options
    from foldertrack.watch.streaming import MAX_IDS_PER_STREAM

    (tmp_path / "rules").mkdir()
    path = tmp_path / "foldertrack.toml"
    base = f'[rules]\ndir = "{tmp_path / "rules"}"\n[exchange]\nendpoint = "https://ews.example.com/EWS/Exchange.asmx"\n'
    path.write_text(base + "[watch]\nstream_per_mailbox = true\n")
    assert watch_options(load_config(path, env={})).streams_per_connection == 1
    path.write_text(base)
    assert watch_options(load_config(path, env={})).streams_per_connection == MAX_IDS_PER_STREAM


def test_resubscribes_are_rate_limited_counted_and_shown_in_status(make):
    observer = PrometheusObserver()
    h = make("exchange", observer=observer)
    h.watcher.resubscribes = ResubscribeLimiter(
        free=2, window=60.0, backoff=Backoff(initial=1.5, maximum=3.0)
    )

    def expire_and_wait_for_resubscribe() -> bool:
        """Expire the subscription; True when the watcher subscribed again, False when it held back."""
        before = h.sim.stats["Subscribe"]
        h.sim.faults.expire_subscriptions()
        wait_until(
            lambda: h.sim.stats["Subscribe"] > before or h.watcher.resubscribes.held,
            what="a resubscribe or a held one",
        )
        return h.sim.stats["Subscribe"] > before

    h.wait_for(lambda: all_streaming(h), what="streaming")
    assert expire_and_wait_for_resubscribe() and expire_and_wait_for_resubscribe()
    h.wait_for(lambda: all_streaming(h), what="streaming again")
    assert not expire_and_wait_for_resubscribe()  # the third within the window waits
    box = h.wait_for(
        lambda: (
            (s := status_of(h, ALICE))["mode"] == "polling"
            and "subscribed 2 times" in (s["last_error"] or "")
            and s
        ),
        what="status showing the held resubscribe",
    )
    assert "ErrorSubscriptionNotFound" in box["last_error"] and "next attempt in" in box["last_error"]
    lost = observer.registry.get_sample_value(
        "foldertrack_resubscribes_total", {"code": "ErrorSubscriptionNotFound"}
    )
    assert lost == 3
    file_mail(h, ALICE, "tracked while held")  # polling covers the gap
    h.wait_tracked("tracked while held")
    h.wait_for(lambda: all_streaming(h), timeout=10, what="streaming once the back-off passed")


def test_resubscribe_limiter_backs_off_and_forgets():
    limiter = ResubscribeLimiter(free=2, window=10.0, backoff=Backoff(initial=1.0, maximum=4.0, jitter=0.0))
    assert limiter.acquire("a", now=0.0) == 0.0 and limiter.acquire("a", now=0.1) == 0.0
    wait = limiter.acquire("a", now=0.2)
    assert 0.8 <= wait <= 1.0 and limiter.held == 1
    assert limiter.acquire("b", now=0.2) == 0.0  # per mailbox
    assert limiter.acquire("a", now=1.2) == 0.0  # after the back-off
    assert limiter.acquire("a", now=1.3) > 1.0  # the next one waits longer
    assert limiter.acquire("a", now=30.0) == 0.0 and limiter.recent("a", now=30.0) == 1  # window passed
    assert limiter.total == 5


# -- 2. fractional timestamps; a missing received time never backfills ---------------------------------------


def test_nine_digit_timestamps_parse():
    value = parse_ews_datetime("2026-11-29T13:53:25.902433800Z")
    assert isinstance(value, EWSDateTime) and value.microsecond == 902433 and value.tzinfo is not None
    assert EWSDateTime.from_string("2026-11-29T13:53:25.9024338+01:00").hour == 12  # installed
    assert EWSDateTime.from_string("2026-11-29T13:53:25Z").microsecond == 0


def _age_existing_mail(h: Harness, address: str = ALICE) -> None:
    """Two mails already in the folder, received an hour ago (before the rule)."""
    for n in range(2):
        item = h.sim.deliver(address, mail(f"old {n}", to=[address]), folder=FOLDER)
        store = h.sim.store
        with store.lock:
            found = store.item_by_id(store.mailbox(address), item)
            found.received = found.received - timedelta(hours=1)


def test_backfill_false_holds_with_tick_timestamps(make):
    no_backfill = rules([ALICE]) + "        backfill: false\n"
    h = make("tick-timestamps", rules_text=no_backfill, before_start=_age_existing_mail)
    file_mail(h, ALICE, "new one")
    a = h.wait_tracked("new one")
    assert a["received_at"] is not None and a["received_at"].microsecond != 0  # sub-second precision kept
    h.settle()
    assert [x["subject"] for x in h.activities()] == ["new one"]


def test_missing_received_time_never_turns_backfill_false_into_backfill_all(make):
    profile = dataclasses.replace(PROFILES["exchange"], name="no-received-time", date_time_received=False)
    no_backfill = rules([ALICE]) + "        backfill: false\n"
    h = make(profile, rules_text=no_backfill, before_start=_age_existing_mail)
    h.settle()
    assert h.activities() == []  # unknown age during the backfill pass: not backfilled
    file_mail(h, ALICE, "after the first sync")
    h.wait_tracked("after the first sync")
    h.settle()
    assert [x["subject"] for x in h.activities()] == ["after the first sync"]


# -- 3. HTML-only bodies ----------------------------------------------------------------------------------------


def test_html_only_bodies_give_a_text_body(make):
    h = make("html-only-bodies")
    html = "<html><head><style>p {color: red}</style></head><body><p>Dear Dana,</p><p>the offer&nbsp;is <b>attached</b>.</p></body></html>"
    file_mail(h, ALICE, "html only", body=None, html_body=html)
    a = h.wait_tracked("html only")
    assert a["text_body"] == "Dear Dana,\nthe offer is attached."
    assert "<b>attached</b>" in a["html_body"]


def test_html_to_text():
    assert (
        html_to_text("<div>a<br>b</div><script>evil()</script><ul><li>c &amp; d</li></ul>") == "a\nb\nc & d"
    )
    assert html_to_text("") is None and html_to_text(None) is None


# -- 4. keep-alives, other lost-subscription codes, batches ----------------------------------------------------


def test_status_event_heartbeats_are_not_events(make):
    h = make("status-heartbeats")
    heartbeats = []

    def note(response):
        if response.find(f".//{{{TYPES}}}StatusEvent") is not None:
            heartbeats.append(response)

    h.sim.add_observer(note)
    h.wait_for(lambda: len(heartbeats) >= 3, what="three StatusEvent keep-alives")
    assert states(h)[ALICE].last_event_at is None
    assert all_streaming(h)
    file_mail(h, ALICE, "a real event")
    h.wait_tracked("a real event")
    h.wait_for(lambda: states(h)[ALICE].last_event_at is not None, what="the event noted")


def test_other_lost_subscription_codes_still_resubscribe(make):
    assert is_lost_subscription(
        TransportError("Unknown ResponseCode in ResponseMessage: ErrorSubscriptionUnsubscribed (…)")
    )
    assert is_lost_subscription(ErrorSubscriptionNotFound("gone"))
    assert not is_lost_subscription(TransportError("Connection reset"))
    observer = PrometheusObserver()
    h = make("unsubscribed-code", observer=observer)
    h.wait_for(lambda: all_streaming(h), what="streaming")
    before = h.sim.stats["Subscribe"]
    h.sim.faults.expire_subscriptions()
    h.wait_for(lambda: h.sim.stats["Subscribe"] > before and h.sim.subscriptions(), what="a new subscription")
    h.wait_for(lambda: any(s["connected"] for s in h.sim.subscriptions()), what="its stream")
    code = {"code": "ErrorSubscriptionUnsubscribed"}
    assert observer.registry.get_sample_value("foldertrack_resubscribes_total", code) == 1
    file_mail(h, ALICE, "after unsubscribed")
    h.wait_tracked("after unsubscribed")


def test_batched_notifications_trigger_one_catch_up_per_batch(make):
    h = make("batched-notifications")
    h.wait_for(lambda: all_streaming(h), what="streaming")
    h.settle()
    mb = h.sim.mailbox(ALICE)
    items = [h.sim.deliver(ALICE, mail(f"batch {n}", to=[ALICE])) for n in range(20)]
    syncs_before = h.sim.stats["SyncFolderItems"]
    for item in items:
        mb.move_item(item, FOLDER)
    batch = h.sim.profile.notification_batch_seconds
    h.wait_for(lambda: len(h.activities()) == 20, timeout=batch + 3.0, what="all 20 tracked")
    h.settle()
    # 20 moves → 60 events, held and delivered together: one catch-up (a second at most, if the batch
    # straddled a window edge), not one per event
    assert h.sim.stats["SyncFolderItems"] - syncs_before <= 2
