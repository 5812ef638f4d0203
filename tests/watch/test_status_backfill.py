"""Backfill is not a move: a new rule's old mails feed their own counters, never the move → activity
latency histogram, and ``status`` shows each folder's backfill progress."""

from __future__ import annotations

from sqlalchemy import update

from foldertrack.ops.listener import MetricsServer
from foldertrack.ops.metrics import PrometheusObserver
from foldertrack.simulator import MailSpec
from foldertrack.state.schema import tracked_folders
from foldertrack.testing.harness import wait_until
from tests.ops.test_metrics import samples, value
from tests.watch.conftest import ALICE
from tests.watch.test_status import run_status, status_json

RULES = f"""
mailboxes:
  - addresses: [{ALICE}]
    folders:
      Inbox/Contoso: account:acc-contoso
"""
OLD_MAILS = 12


def test_backfill_has_its_own_counters_and_progress(harness):
    mailbox = harness.add_mailbox(ALICE)
    mailbox.create_folder("Inbox/Contoso")
    for n in range(OLD_MAILS):  # already filed when the rule appears
        harness.sim.deliver(ALICE, MailSpec(subject=f"old {n}", to=[ALICE]), folder="Inbox/Contoso")
    harness.write_rules(RULES)
    watcher = harness.start_watcher(observer=PrometheusObserver())
    with MetricsServer("127.0.0.1", 0, watcher) as server:
        harness.settle()
        scrape = wait_until(
            lambda: (
                (s := samples(server)) and value(s, "foldertrack_backfill_items_total") == OLD_MAILS and s
            ),
            what="the backfill counted",
        )
        assert value(scrape, "foldertrack_activity_latency_seconds_count") == 0
        assert value(scrape, "foldertrack_backfill_syncs_total") >= 1
        assert value(scrape, "foldertrack_items_total", outcome="tracked") == OLD_MAILS
        assert value(scrape, "foldertrack_backfill_folders") == 0

        item = harness.sim.deliver(ALICE, MailSpec(subject="live move", to=[ALICE]), folder="Inbox")
        mailbox.move_item(item, "Inbox/Contoso")
        harness.wait_tracked("live move")
        scrape = wait_until(
            lambda: (
                (s := samples(server)) and value(s, "foldertrack_activity_latency_seconds_count") == 1 and s
            ),
            what="the live move in the latency histogram",
        )
        assert value(scrape, "foldertrack_backfill_items_total") == OLD_MAILS

    (box,) = status_json(harness.database_url)["mailboxes"]
    (folder,) = box["folders"]
    # total: what Exchange counted in the folder as the backfill began
    assert folder["backfill"] == {"state": "done", "tracked": OLD_MAILS + 1, "total": OLD_MAILS}
    assert "BACKFILL" in run_status(harness.database_url)

    with harness.engine.begin() as conn:  # as it looks while the first sync is still paging
        conn.execute(update(tracked_folders).values(backfill_done=False, backfill_total=40))
    report = status_json(harness.database_url)
    assert report["mailboxes"][0]["folders"][0]["backfill"]["state"] == "running"
    assert report["totals"]["backfilling"] == 1
    assert f"running {OLD_MAILS + 1}/40" in run_status(harness.database_url)
    with harness.engine.begin() as conn:  # Exchange did not say: progress without a total
        conn.execute(update(tracked_folders).values(backfill_total=None))
    assert f"running {OLD_MAILS + 1} so far" in run_status(harness.database_url)
