"""Delivery through the outbox to an external sink: what reaches the CRM, in which order, how often."""

from __future__ import annotations

import itertools
import json
import statistics
import time
from collections import defaultdict
from dataclasses import replace

import pytest
import requests
from click.testing import CliRunner

from foldertrack.cli import main
from foldertrack.ops.health import health_problem
from foldertrack.ops.listener import MetricsServer
from foldertrack.testing.recording_sink import RecordingSink
from tests.delivery.conftest import ALICE, CONTOSO, ELSEWHERE, FABRIKAM, FAST, RULES, World


def test_a_filed_mail_reaches_the_crm_with_its_content_and_the_local_copy_is_kept(world: World):
    world.start()
    world.file("Quote", attachments=[("quote.pdf", "application/pdf", b"%PDF-1.4 quote")])

    row = world.in_crm("Quote", regarding="account:acc-contoso", state="tracked")
    local = world.h.wait_tracked("Quote", regarding_id="acc-contoso")
    assert row["mailbox"] == ALICE and row["text_body"].startswith("body of Quote")
    assert json.loads(row["attachments"]) == [["quote.pdf", len(b"%PDF-1.4 quote"), True]]
    assert ["from", "dana@contoso.com", "contact:con-dana"] in json.loads(row["parties"])
    assert local["text_body"].startswith("body of Quote")  # the local tables are the system of record
    (call,) = world.crm.calls()
    assert call["op"] == "upsert" and call["outcome"] == "created" and call["attempt"] == 1
    world.h.wait_for(world.drained, 10, "the entry marked delivered after the CRM answered")
    (entry,) = world.outbox()
    assert entry.status == "delivered" and call["entry_id"] == entry.id and call["idempotency_key"]


def test_a_move_to_another_tracked_folder_relinks_in_the_crm(world: World):
    world.start()
    item = world.file("Moving")
    world.in_crm("Moving", regarding="account:acc-contoso")
    world.move(item, FABRIKAM)
    row = world.in_crm("Moving", regarding="account:acc-fabrikam")
    assert row["writes"] == 2


def test_entries_of_one_key_go_out_in_order_even_when_the_first_waits_for_a_retry(world: World):
    rules = RULES.replace(
        f"{FABRIKAM}: account:acc-fabrikam",
        f"{FABRIKAM}: {{record: account:acc-fabrikam, on_leave: untrack}}",
    )
    world.start(rules)
    world.crm.faults(throttle=1, retry_after=0.6)  # the first call waits 0.6 s
    item = world.file("Ordered")
    world.h.wait_tracked("Ordered")
    item = world.move(item, FABRIKAM)
    world.h.wait_tracked("Ordered", regarding_id="acc-fabrikam")
    world.move(item, ELSEWHERE)
    world.h.wait_tracked("Ordered", state="untracked")
    others = [world.file(f"other {n}") for n in range(3)]  # other keys are not held back
    assert len(others) == 3

    world.h.wait_for(world.drained, 15, "the outbox drained")
    world.in_crm("Ordered", regarding=None, state="untracked")
    by_key: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    for call in world.crm.calls():
        by_key[call["key"]].append((call["entry_id"], call["op"], call["outcome"]))
    for key, calls in by_key.items():
        entries = [entry for entry, _, _ in calls]
        assert entries == sorted(entries), f"{key}: entries delivered out of order: {calls}"
    ordered = next(calls for calls in by_key.values() if len(calls) == 4)
    assert [(op, outcome) for _, op, outcome in ordered] == [
        ("upsert", "throttled"),
        ("upsert", "created"),
        ("upsert", "unchanged"),  # rebuilt from the local tables: already the current content
        ("untrack", "untracked"),
    ]


def test_a_throttled_call_is_retried_no_sooner_than_retry_after(world: World):
    world.start()
    world.crm.faults(throttle=2, retry_after=0.5)
    world.file("Throttled")
    world.in_crm("Throttled")
    calls = world.crm.calls()
    assert [c["outcome"] for c in calls] == ["throttled", "throttled", "created"]
    gaps = [b["at"] - a["at"] for a, b in itertools.pairwise(calls)]
    assert all(gap >= 0.49 for gap in gaps), gaps
    assert [c["attempt"] for c in calls] == [1, 2, 3]
    assert len({c["idempotency_key"] for c in calls}) == 1  # the same entry, the same key every time


def test_syncing_goes_on_while_the_crm_is_down_and_the_outbox_drains_after(world: World):
    world.start()
    world.crm.faults(down=True)
    for n in range(10):
        world.file(f"outage {n}")
    world.h.wait_for(lambda: len(world.h.activities()) == 10, 20, "all ten tracked locally")
    assert world.crm.crm() == {}
    delivery = world.h.watcher.delivery
    assert delivery is not None
    world.h.wait_for(lambda: delivery.failing_since is not None, 10, "delivery failing")
    figures = delivery.figures()
    assert figures.backlog == 10 and figures.oldest_pending_at is not None
    attempts = len(world.crm.calls())
    assert attempts < 30, f"{attempts} calls to a down CRM: the sink-wide pause does not hold"

    world.crm.faults(down=False)
    world.h.wait_for(lambda: len(world.crm.crm()) == 10, 20, "the outbox drained into the CRM")
    world.h.wait_for(world.drained, 10, "every entry delivered")
    world.h.wait_for(lambda: delivery.failing_since is None, 5, "delivery healthy again")
    created = [c for c in world.crm.calls() if c["outcome"] == "created"]
    assert len(created) == 10
    assert delivery.figures().backlog == 0 and delivery.figures().delivered_total == 10


def test_a_rejected_entry_is_a_dead_letter_and_does_not_hold_back_others(world: World):
    world.start()
    world.crm.faults(reject="poison")
    world.file("poison pill")
    world.file("good one")
    world.in_crm("good one")
    world.h.wait_for(lambda: any(r.status == "dead" for r in world.outbox()), 10, "the dead letter")
    (dead,) = [r for r in world.outbox() if r.status == "dead"]
    assert "subject too long" in dead.last_error and "0x80044331" in dead.last_error
    assert dead.attempts == 1
    assert world.h.activity("poison pill") is not None  # tracked locally all the same


def test_on_leave_delete_removes_the_crm_copy_and_keeps_the_local_one_marked(world: World):
    rules = RULES.replace(
        f"{CONTOSO}: account:acc-contoso", f"{CONTOSO}: {{record: account:acc-contoso, on_leave: delete}}"
    )
    world.start(rules)
    item = world.file("Delete me")
    world.in_crm("Delete me")
    item = world.move(item, ELSEWHERE)
    world.h.wait_for(lambda: "Delete me" not in world.crm.crm(), 15, "the CRM copy deleted")
    local = world.h.wait_tracked("Delete me", state="untracked")
    assert local["deleted_at"] is not None and local["regarding_id"] is None

    world.move(item, CONTOSO)  # filed again: back in the CRM, the mark cleared
    world.in_crm("Delete me", regarding="account:acc-contoso", state="tracked")
    local = world.h.wait_tracked("Delete me", state="tracked")
    assert local["deleted_at"] is None
    assert [c["op"] for c in world.crm.calls()] == ["upsert", "delete", "upsert"]


def test_send_options_blank_the_body_and_attachments_for_the_crm_only(world: World):
    rules = RULES.replace(
        f"{CONTOSO}: account:acc-contoso",
        f"{CONTOSO}: {{record: account:acc-contoso, send: {{body: false, attachments: false}}}}",
    )
    world.start(rules)
    world.file("Private", attachments=[("secret.txt", "text/plain", b"secret")])
    world.file("Public", FABRIKAM, attachments=[("open.txt", "text/plain", b"open")])

    private = world.in_crm("Private")
    public = world.in_crm("Public")
    assert private["text_body"] is None and private["html_body"] is None
    assert json.loads(private["attachments"]) == []
    assert private["regarding"] == "account:acc-contoso" and json.loads(private["parties"])
    assert public["text_body"].startswith("body of Public") and json.loads(public["attachments"])
    local = world.h.activity("Private")
    assert local is not None and local["text_body"].startswith("body of Private")


def test_entries_left_by_a_stopped_watcher_are_delivered_by_the_next(world: World):
    world.start()
    world.crm.faults(down=True)
    world.file("Left over")
    world.h.wait_tracked("Left over")
    world.h.stop_watcher()
    assert [r.status for r in world.outbox()] == ["pending"]

    world.crm.faults(down=False)
    world.crm = RecordingSink(world.crm.path)  # the watcher closed its sink on stop
    world.start()
    world.in_crm("Left over")
    world.h.wait_for(world.drained, 10, "the entry marked delivered")


def test_stop_finishes_the_request_in_flight_and_records_it(world: World):
    world.start()
    world.crm.faults(delay=0.8)  # the CRM applies the change, then answers late
    world.file("In flight")
    world.h.wait_for(lambda: world.crm.calls(), 10, "the call in flight")
    started = time.monotonic()
    world.h.stop_watcher()
    assert time.monotonic() - started < 5
    assert [r.status for r in world.outbox()] == ["delivered"]  # not sent again by the next process


def test_status_metrics_and_healthz_show_a_failing_sink_and_retry_replays_its_dead_letter(world: World):
    world.start()
    watcher = world.h.watcher
    assert watcher is not None
    url = ["--database-url", world.h.database_url]

    def status() -> dict:
        shown = CliRunner().invoke(main, ["status", "--json", *url])
        assert shown.exit_code == 0, shown.output
        return json.loads(shown.output)

    with MetricsServer("127.0.0.1", 0, watcher) as server:
        world.crm.faults(down=True)
        world.file("stuck one")
        world.file("stuck two")
        world.h.wait_for(lambda: len(world.h.activities()) == 2, 15, "both tracked locally")
        reason = world.h.wait_for(lambda: health_problem(watcher), 10, "/healthz to degrade")
        assert reason.startswith("delivery to recording failing for") and "connection refused" in reason
        health = requests.get(f"{server.url}/healthz", timeout=5)
        assert health.status_code == 503 and "delivery to recording failing" in health.text
        scrape = requests.get(f"{server.url}/metrics", timeout=5).text
        assert 'foldertrack_outbox_backlog{sink="recording"} 2.0' in scrape
        assert 'foldertrack_deliveries_total{outcome="retry",sink="recording"}' in scrape
        (sink,) = status()["sinks"]
        assert sink["sink"] == "recording" and sink["backlog"] == 2 and sink["failing_since"]
        assert sink["oldest_pending_seconds"] > 0 and "connection refused" in sink["last_error"]
        assert status()["totals"]["outbox_backlog"] == 2
        text = CliRunner().invoke(main, ["status", *url]).output
        assert "sink recording" in text and "2 pending" in text and "failing since" in text

        world.crm.faults(down=False, reject="stuck two")
        world.in_crm("stuck one")
        world.h.wait_for(lambda: status()["delivery_dead_letters"], 15, "the dead letter in status")
        assert health_problem(watcher) is None
        assert requests.get(f"{server.url}/healthz", timeout=5).status_code == 200
        report = status()
        (dead,) = report["delivery_dead_letters"]
        assert dead["subject"] == "stuck two" and dead["op"] == "upsert" and dead["sink"] == "recording"
        assert "CRM rejected 'stuck two'" in dead["error"] and report["sinks"][0]["dead_letters"] == 1
        assert (
            f"{dead['id']} {ALICE} stuck two (upsert to recording)"
            in CliRunner().invoke(main, ["status", *url]).output
        )

        world.crm.faults(reject=None)
        replay = CliRunner().invoke(main, ["retry", "--json", dead["id"], *url])
        assert replay.exit_code == 0, replay.output
        assert json.loads(replay.output) == {"sync": 0, "delivery": 1}
        world.in_crm("stuck two")
        world.h.wait_for(world.drained, 10, "nothing pending")
        assert status()["delivery_dead_letters"] == [] and status()["sinks"][0]["delivered"] == 2
        scrape = requests.get(f"{server.url}/metrics", timeout=5).text
        assert 'foldertrack_deliveries_total{outcome="dead",sink="recording"} 1.0' in scrape
        assert 'foldertrack_outbox_backlog{sink="recording"} 0.0' in scrape


def test_retry_refuses_an_id_that_is_not_one():
    result = CliRunner().invoke(main, ["retry", "x12", "--database-url", "sqlite:///:memory:"])
    assert result.exit_code == 2 and "not a dead letter id like 12 or d12" in result.output


def test_the_crm_follows_the_local_activity_within_milliseconds(world: World, capsys):
    """The commit wakes the workers: no poll interval between the local activity and the CRM."""
    world.start(delivery=replace(FAST, scan_interval=5.0))  # a poll could not explain a fast delivery
    for n in range(15):
        world.file(f"fast {n}")
        world.in_crm(f"fast {n}")
    at = {c["key"]: c["at"] for c in world.crm.calls()}
    lags = sorted(at[a["key"]] - a["tracked_at"].timestamp() for a in world.h.activities())
    p50, worst = statistics.median(lags), lags[-1]
    with capsys.disabled():
        print(
            f"\nlocal activity → CRM: p50 {p50 * 1000:.1f} ms, max {worst * 1000:.1f} ms over {len(lags)} mails"
        )
    assert p50 < 0.2 and worst < 1.0, lags


def test_a_later_delivered_upsert_settles_the_keys_earlier_dead_letter(world: World):
    world.start()
    world.crm.faults(reject="Refiled")
    item = world.file("Refiled")
    world.h.wait_for(lambda: any(r.status == "dead" for r in world.outbox()), 10, "the dead letter")
    world.crm.faults(reject=None)
    world.move(item, FABRIKAM)  # a new decision: its upsert carries the whole current state
    world.in_crm("Refiled", regarding="account:acc-fabrikam")
    world.h.wait_for(world.drained, 10, "nothing pending")
    first, second = world.outbox()
    assert (first.status, second.status) == ("delivered", "delivered")
    assert first.last_error == f"superseded by entry {second.id}"


class RecordingFeedback:
    """Stands where the mailbox feedback goes: records what delivery reports; can fail like Exchange."""

    def __init__(self, fail: bool = False):
        self.fail = fail
        self.seen: list[tuple[str, ...]] = []

    def confirmed(self, mailbox: str, key: str) -> None:
        self.seen.append(("confirmed", mailbox, key))
        if self.fail:
            raise ConnectionError("Exchange unreachable")

    def failed(self, mailbox: str, key: str, reason: str) -> None:
        self.seen.append(("failed", mailbox, key, reason))
        if self.fail:
            raise ConnectionError("Exchange unreachable")


@pytest.mark.parametrize("fail", [False, True], ids=["works", "raises"])
def test_feedback_hears_of_confirmed_and_dead_lettered_mails_and_never_stops_delivery(world: World, fail):
    feedback = RecordingFeedback(fail=fail)
    world.h.write_rules(RULES)
    world.h.start_watcher(sink=world.crm, delivery=FAST, feedback=feedback)
    world.crm.faults(reject="bad")
    world.file("bad one")
    world.file("good one")
    world.file("good two")
    world.in_crm("good two")
    world.in_crm("good one")
    world.h.wait_for(lambda: len(feedback.seen) == 3, 10, "three feedback calls")
    keys = {a["subject"]: a["key"] for a in world.h.activities()}
    assert ("confirmed", ALICE, keys["good one"]) in feedback.seen
    (failed,) = [f for f in feedback.seen if f[0] == "failed"]
    assert failed[1:3] == (ALICE, keys["bad one"]) and "CRM rejected 'bad one'" in failed[3]
    world.h.wait_for(world.drained, 10, "nothing pending")
