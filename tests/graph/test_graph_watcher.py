"""The watcher with ``source = "graph"`` against the simulator's Graph endpoints (same mailboxes as EWS):
delta links as cursors, an expired delta link, a 429 storm on one mailbox, and a deployment switched from
EWS to Graph on the same database. Every Tracking-semantics row runs through Graph too: the ``[graph]``
variants of tests/watch/test_tracking.py, test_semantics_items.py and test_semantics_folders.py."""

from __future__ import annotations

import time

import pytest
from sqlalchemy import func, select

from foldertrack.simulator import MailSpec
from foldertrack.state.schema import ledger, subscription_health, tracked_folders
from foldertrack.testing.graph_watch import GraphHarness
from foldertrack.testing.harness import Harness, options_for_tests, wait_tracked_where_they_ended, wait_until

ALICE = "alice@example.com"
BOB = "bob@example.com"
RECORDS = """type,id,name,number,emails
account,acc-contoso,Contoso,C-100,info@contoso.com
account,acc-fabrikam,Fabrikam,F-200,
contact,con-dana,Dana Contoso,,dana@contoso.com
"""
FOLDERS = ("Inbox/Customers/Contoso", "Inbox/Customers/Fabrikam", "Inbox/Elsewhere")


def _rules(*mailboxes: str, extra: str = "") -> str:
    return f"""
mailboxes:
  - addresses: [{", ".join(mailboxes)}]
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/Customers/Fabrikam:
        record: account:acc-fabrikam
        on_leave: untrack
{extra}"""


@pytest.fixture
def gh(tmp_path, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with GraphHarness(tmp_path, **options_for_tests(poll_interval=0.5)) as h:
        h.import_records(RECORDS)
        yield h


def _mailbox(h, address: str = ALICE):
    mb = h.add_mailbox(address)
    for path in FOLDERS:
        mb.create_folder(path)
    return mb


def _file(h, subject: str, folder: str, mailbox: str = ALICE) -> str:
    spec = MailSpec(
        subject=subject,
        sender="dana@contoso.com",
        to=[mailbox],
        body=f"body of {subject}",
        message_id=f"<{subject.replace(' ', '-')}@example.com>",
    )
    item = h.sim.deliver(mailbox, spec, folder="Inbox")
    return h.sim.mailbox(mailbox).move_item(item, folder)


def _count(h, table, **where) -> int:
    query = select(func.count()).select_from(table)
    for column, value in where.items():
        query = query.where(table.c[column] == value)
    with h.engine.connect() as conn:
        return int(conn.execute(query).scalar_one())


def test_graph_cursors_are_delta_links_and_backfill_counts_the_folder(gh):
    """What only the Graph source does (every Tracking-semantics row runs through it in tests/watch/,
    ``[graph]``): the watcher reads through it, a folder's backfill progress counts against its
    ``totalItemCount``, and the whole deltaLink is the folder's saved cursor."""
    _mailbox(gh)
    _file(gh, "already there", "Inbox/Customers/Contoso")
    gh.write_rules(_rules(ALICE))
    gh.start_watcher()
    gh.wait_tracked("already there", regarding_id="acc-contoso")  # backfill (default true)
    assert gh.watcher.sync_context.mail_source().name == "graph"

    def totals() -> dict:  # backfill progress: the folder's totalItemCount when its first sync began
        with gh.engine.connect() as conn:
            return dict(
                conn.execute(select(tracked_folders.c.current_path, tracked_folders.c.backfill_total)).all()
            )

    expected = {"Inbox/Customers/Contoso": 1, "Inbox/Customers/Fabrikam": 0}
    wait_until(lambda: totals() == expected, 15, f"backfill totals {expected}")  # Fabrikam may sync later
    _file(gh, "moved in", "Inbox/Customers/Fabrikam")
    gh.wait_tracked("moved in", regarding_id="acc-fabrikam")
    gh.settle()
    with gh.engine.connect() as conn:  # the whole deltaLink is the folder's cursor
        states = [r.sync_state for r in conn.execute(select(tracked_folders.c.sync_state))]
    assert states and all(s and "/messages/delta" in s and "$deltatoken=" in s for s in states)


def test_expired_delta_link_resyncs_without_doubles(gh):
    _mailbox(gh)
    gh.write_rules(_rules(ALICE))
    gh.start_watcher()
    for n in range(5):
        _file(gh, f"before {n}", "Inbox/Customers/Contoso")
    wait_until(lambda: len(gh.activities()) == 5, 15, "5 mails tracked")
    gh.settle()
    gh.sim.graph.faults.expire_delta_tokens()  # every saved deltaLink now answers 410
    _file(gh, "after expiry", "Inbox/Customers/Contoso")
    gh.wait_tracked("after expiry", regarding_id="acc-contoso")
    gh.settle()
    assert len(gh.activities()) == 6
    assert _count(gh, ledger) == 6  # one ledger row per mail and folder, none doubled by the resync


def test_throttled_mailbox_does_not_hold_back_another(gh):
    _mailbox(gh, ALICE)
    _mailbox(gh, BOB)
    gh.write_rules(_rules(ALICE, BOB))
    gh.start_watcher()
    gh.sim.graph.faults.throttle(seconds=4.0, retry_after=1.0, mailbox=BOB)  # a 429 storm on bob only
    started = time.monotonic()
    _file(gh, "bob's mail", "Inbox/Customers/Contoso", BOB)
    _file(gh, "alice's mail", "Inbox/Customers/Contoso", ALICE)
    gh.wait_tracked("alice's mail", timeout=3.0)
    alice_latency = time.monotonic() - started
    assert gh.activity("bob's mail") is None  # still throttled
    gh.wait_tracked("bob's mail", timeout=20.0)  # tracked once the storm is over
    assert alice_latency < 3.0
    assert gh.source.client.throttle.backoffs(BOB) > 0
    assert gh.source.client.throttle.backoffs(ALICE) == 0
    assert len(gh.activities()) == 2


def test_switch_from_ews_to_graph_doubles_nothing(tmp_path, monkeypatch):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    with Harness(tmp_path, **options_for_tests()) as ews:
        ews.import_records(RECORDS)
        mb = _mailbox(ews)
        ews.write_rules(_rules(ALICE))
        ews.start_watcher()
        ids = {s: _file(ews, s, "Inbox/Customers/Contoso") for s in ("one", "two", "three")}
        wait_until(lambda: len(ews.activities()) == 3, 15, "3 mails tracked through EWS")
        ews.settle()
        ews.stop_watcher()
        ledger_rows = _count(ews, ledger)

        graph = GraphHarness(
            tmp_path, simulator=ews.sim, database_url=ews.database_url, **options_for_tests()
        )
        graph.engine = ews.engine
        graph.start_watcher()
        try:
            _file(graph, "four", "Inbox/Customers/Contoso")
            graph.wait_tracked("four", regarding_id="acc-contoso")
            mb.move_item(ids["two"], "Inbox/Customers/Fabrikam")  # a mail EWS tracked, re-linked by Graph
            graph.wait_tracked("two", regarding_id="acc-fabrikam")
            graph.settle()
            subjects = sorted(a["subject"] for a in graph.activities())
            assert subjects == ["four", "one", "three", "two"]
            # the departure from Contoso is seen on that folder's next delta poll
            wait_until(
                lambda: _count(graph, ledger, state="present") == 4, 10, "one present ledger row per mail"
            )
            assert _count(graph, ledger) <= ledger_rows + 3
        finally:
            graph.stop_watcher()


def test_kill_9_of_run_with_graph_source_loses_and_doubles_nothing(simulator_factory, tmp_path, monkeypatch):
    """``foldertrack run`` with ``source = "graph"`` as a child process, SIGKILLed mid-burst twice; a final
    run catches up: every mail is one activity regarding the folder it ended in, one present ledger row."""
    import random
    import threading

    from foldertrack.simulator.identity import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT
    from foldertrack.state.database import open_database, upgrade_database
    from foldertrack.state.records import RecordDirectory
    from foldertrack.testing.process import WatcherProcess

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    sim = simulator_factory()
    sim.identity.add_app(DEMO_TENANT, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    for address in (ALICE, BOB):
        sim.add_mailbox(address)
        for path in FOLDERS:
            sim.mailbox(address).create_folder(path)
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yaml").write_text(_rules(ALICE, BOB), encoding="utf-8")
    database_url = f"sqlite:///{tmp_path / 'foldertrack.db'}"
    upgrade_database(database_url)
    engine = open_database(database_url)
    (tmp_path / "records.csv").write_text(RECORDS, encoding="utf-8")
    RecordDirectory(engine).import_csv(tmp_path / "records.csv")
    config = tmp_path / "foldertrack.toml"
    config.write_text(
        f"""[exchange]
source = "graph"

[graph]
tenant_id = "{DEMO_TENANT}"
client_id = "{DEMO_CLIENT_ID}"
authority = "{sim.https_base}"
base_url = "{sim.https_base}/v1.0"
ca_file = "{sim.ca_path}"
poll_interval = "1s"

[database]
url = "{database_url}"

[rules]
dir = "{rules_dir}"

[watch]
workers = 3
debounce = "20ms"
""",
        encoding="utf-8",
    )
    process = WatcherProcess(
        config, tmp_path / "run.log", extra_env={"FOLDERTRACK_GRAPH_CLIENT_SECRET": DEMO_CLIENT_SECRET}
    )
    rng = random.Random(20261129)
    expected: dict[str, str] = {}
    where: dict[str, tuple[str, str]] = {}
    folders = {"Inbox/Customers/Contoso": "acc-contoso", "Inbox/Customers/Fabrikam": "acc-fabrikam"}

    def file_mails(round_no: int) -> None:
        for n in range(20):
            if where and rng.random() < 0.25:  # re-file a tracked mail
                subject = rng.choice(sorted(where))
                owner, item_id = where[subject]
                folder = rng.choice(list(folders))
                where[subject] = (owner, sim.mailbox(owner).move_item(item_id, folder))
            else:
                owner = rng.choice((ALICE, BOB))
                subject = f"round {round_no} mail {n}"
                folder = rng.choice(list(folders))
                where[subject] = (owner, _file_in(sim, owner, subject, folder))
            expected[subject] = folders[folder]
            time.sleep(rng.uniform(0.0, 0.03))

    def polling() -> bool:

        with engine.connect() as conn:
            modes = dict(
                conn.execute(select(subscription_health.c.mailbox, subscription_health.c.mode)).all()
            )
        return all(modes.get(m) == "polling" for m in (ALICE, BOB))

    try:
        for round_no in range(2):
            process.start()
            wait_until(lambda: process.running() and polling(), 30, "the watcher to poll Graph")
            mover = threading.Thread(target=file_mails, args=(round_no,))
            mover.start()
            time.sleep(rng.uniform(0.3, 1.2))
            process.kill9()
            mover.join()

            with engine.begin() as conn:
                conn.execute(subscription_health.update().values(mode="stopped"))
        process.start()

        wait_tracked_where_they_ended(engine, expected)
    finally:
        process.close()
        engine.dispose()


def _file_in(sim, mailbox: str, subject: str, folder: str) -> str:
    spec = MailSpec(subject=subject, sender="dana@contoso.com", to=[mailbox], body=subject)
    return sim.mailbox(mailbox).move_item(sim.deliver(mailbox, spec, folder="Inbox"), folder)


def test_change_notifications_trigger_and_lifecycle_events_repair(gh):
    """With a notification URL the mailbox does not poll (poll interval 1 h here): a move is tracked through
    its notification; lost notifications are caught up on ``missed``; ``subscriptionRemoved`` re-creates
    the subscription and catches up."""
    _mailbox(gh)
    gh.write_rules(_rules(ALICE))
    gh.start_watcher(push=True, poll_interval=3600.0, start_timeout=0.5)
    wait_until(lambda: len(gh.push.subscriptions(ALICE)) == 2, 10, "one subscription per tracked folder")

    _file(gh, "notified", "Inbox/Customers/Contoso")
    gh.wait_tracked("notified", timeout=5.0, regarding_id="acc-contoso")
    gh.settle()  # the catch-ups after subscribing are done

    gh.sim.graph.faults.drop_notifications(10)  # lost on the way: nothing triggers a catch-up
    _file(gh, "lost", "Inbox/Customers/Fabrikam")
    gh.settle()
    assert gh.activity("lost") is None
    subs = gh.push.subscriptions(ALICE)
    removed = next(iter(subs))
    for sub_id in subs:
        gh.sim.graph.lifecycle(sub_id, "missed")
    gh.wait_tracked("lost", timeout=5.0, regarding_id="acc-fabrikam")
    gh.sim.graph.faults.clear()  # no more drops

    gh.sim.graph.lifecycle(removed, "subscriptionRemoved")
    wait_until(
        lambda: len(gh.push.subscriptions(ALICE)) == 2 and removed not in gh.push.subscriptions(ALICE),
        10,
        "the removed subscription re-created",
    )
    _file(gh, "after removal", "Inbox/Customers/Fabrikam")
    _file(gh, "after removal 2", "Inbox/Customers/Contoso")
    gh.wait_tracked("after removal", timeout=5.0, regarding_id="acc-fabrikam")
    gh.wait_tracked("after removal 2", timeout=5.0, regarding_id="acc-contoso")
    gh.settle()
    assert len(gh.activities()) == 4
    (state,) = gh.watcher.mailbox_states()  # notifications live: started, not in error after start_timeout
    assert state.mode == "streaming" and not state.failing and state.last_error is None


def test_category_write_back_through_graph_does_not_retrigger_tracking(gh):
    """Feedback (an Outlook category) is a PATCH on the immutable id the ledger holds; the delta reports it
    as an update of a present item, which sync ignores."""
    mb = _mailbox(gh)
    gh.write_rules(_rules(ALICE))
    gh.start_watcher()
    _file(gh, "confirmed", "Inbox/Customers/Contoso")
    gh.wait_tracked("confirmed", regarding_id="acc-contoso")
    gh.settle()
    with gh.engine.connect() as conn:
        (item_id,) = conn.execute(select(ledger.c.item_id).where(ledger.c.state == "present")).one()
    pages_before = gh.watcher.totals.pages
    assert gh.source.set_categories(ALICE, item_id, "Tracked to CRM", "Tracking failed") is True
    assert gh.source.set_categories(ALICE, item_id, "Tracked to CRM", "Tracking failed") is False  # no change
    (summary,) = mb.items("Inbox/Customers/Contoso")
    assert summary.categories == ("Tracked to CRM",)
    wait_until(lambda: gh.watcher.totals.pages > pages_before, 10, "a poll that saw the update")
    gh.settle()
    assert len(gh.activities()) == 1 and gh.watcher.totals.tracked == 1
    assert _count(gh, ledger) == 1


def test_demo_runs_the_whole_story_on_graph(tmp_path, monkeypatch):
    """``foldertrack demo --source graph``: the same story, read through the Graph simulator, delivered to
    the simulated CRM, with the feedback category written back through Graph."""
    import re

    from click.testing import CliRunner

    from foldertrack.cli import main

    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    result = CliRunner().invoke(main, ["demo", "--source", "graph", "--keep", str(tmp_path / "demo")])
    assert result.exit_code == 0, result.output
    assert "simulated Microsoft Graph at https://127.0.0.1:" in result.output
    assert 'source = "graph"' in (tmp_path / "demo" / "foldertrack.toml").read_text(encoding="utf-8")
    table = result.output.split("now holds:", 1)[1]
    renewal = next(line for line in table.splitlines() if line.startswith("Fabrikam renewal"))
    assert re.search(
        r"Fabrikam renewal\s+Fabrikam Inc\s+from:Jane Doe, to:alice@example.com\s+Tracked to CRM", renewal
    )
    assert table.count("Joint proposal") == 1
    assert "move → email in the CRM over 8 moves" in result.output
