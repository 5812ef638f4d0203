"""Graph change-notification subscriptions kept in the state database (``graph_subscriptions``): a watcher
that crashed and restarts reuses the ones Graph still has (same URL), replaces those posting elsewhere,
deletes those of folders and mailboxes no longer tracked; secrets never reach the database in clear;
notifications of unknown subscriptions are acknowledged and ignored."""

from __future__ import annotations

import hashlib
import hmac
import socket
from types import SimpleNamespace

import pytest
import requests
from sqlalchemy import select

from foldertrack.errors import LeaseLostError
from foldertrack.simulator import MailSpec
from foldertrack.sinks.sql import SqlActivitySink
from foldertrack.sources.graph.push import GraphPush
from foldertrack.state.schema import graph_subscriptions, tracked_folders
from foldertrack.testing.graph_watch import GraphHarness, graph_source
from foldertrack.testing.harness import options_for_tests, wait_until
from foldertrack.watch.daemon import Watcher, WatchOptions
from foldertrack.watch.graph_push import DatabaseSubscriptions, attach_push

ALICE = "alice@example.com"
BOB = "bob@example.com"
RECORDS = """type,id,name,number,emails
account,acc-contoso,Contoso,C-100,
account,acc-fabrikam,Fabrikam,F-200,
"""
FOLDERS = ("Inbox/Customers/Contoso", "Inbox/Customers/Fabrikam")


def _rules(*mailboxes: str, fabrikam: bool = True) -> str:
    extra = "\n      Inbox/Customers/Fabrikam: account:acc-fabrikam" if fabrikam else ""
    return f"""
mailboxes:
  - addresses: [{", ".join(mailboxes)}]
    folders:
      Inbox/Customers/Contoso: account:acc-contoso{extra}
"""


@pytest.fixture
def gh(tmp_path, monkeypatch, database_url):
    """SQLite and PostgreSQL (with FOLDERTRACK_TEST_DATABASE_URL); polls once an hour: notifications only."""
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    options = options_for_tests(poll_interval=3600.0, start_timeout=0.5)
    with GraphHarness(tmp_path, database_url=database_url, **options) as h:
        h.import_records(RECORDS)
        for address in (ALICE, BOB):
            mb = h.add_mailbox(address)
            for path in FOLDERS:
                mb.create_folder(path)
        yield h


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _start(h: GraphHarness, port: int = 0) -> GraphPush:
    """``start_watcher(push=True)`` with the listener on ``port`` (a restart on the same port keeps its URL);
    the poll interval is an hour, so only notifications (and start-up catch-ups) track anything."""
    h.source = graph_source(h.sim, engine=h.engine)
    h.watcher = Watcher(
        WatchOptions(rules_dir=h.rules_dir, **h.options),
        h.engine,
        None,  # type: ignore[arg-type]
        SqlActivitySink(h.engine),
        source=h.source,
    )
    h.push = attach_push(h.watcher, h.source.client, notification_url=None, port=port)
    h.watcher.start()
    assert h.watcher.ready.wait(20), "watcher did not become ready"
    return h.push


def _crash(h: GraphHarness) -> None:
    """What ``kill -9`` leaves behind: every subscription alive at Graph and in the database."""
    h.push._subs.clear()  # so stop() has nothing to delete
    h.stop_watcher()


def _file(h: GraphHarness, subject: str, folder: str, mailbox: str = ALICE) -> None:
    mb = h.sim.mailbox(mailbox)
    mb.move_item(
        h.sim.deliver(mailbox, MailSpec(subject=subject, to=[mailbox], body=subject), folder="Inbox"), folder
    )


def _rows(h: GraphHarness) -> dict[str, tuple[str, str]]:
    with h.engine.connect() as conn:
        rows = conn.execute(select(graph_subscriptions)).all()
    return {r.id: (r.mailbox, r.folder_id) for r in rows}


def _live(h: GraphHarness) -> set[str]:
    return {s.id for s in h.sim.graph.subscriptions()}


def test_a_restart_after_a_crash_reuses_the_stored_subscriptions(gh):
    gh.write_rules(_rules(ALICE))
    port = _free_port()
    push = _start(gh, port)
    wait_until(lambda: len(push.subscriptions(ALICE)) == 2, 10, "one subscription per tracked folder")
    first = set(push.subscriptions(ALICE))
    assert set(_rows(gh)) == first == _live(gh)
    with gh.engine.connect() as conn:
        rows = conn.execute(select(graph_subscriptions)).all()
    for row in rows:  # only a salted hash of the secret is stored
        secret = next(s for s in gh.sim.graph.subscriptions() if s.id == row.id).client_state
        assert secret not in "".join(str(v) for v in row)
        assert row.client_state_hash == hmac.new(row.id.encode(), secret.encode(), hashlib.sha256).hexdigest()
        assert row.instance and row.resource.endswith("/messages")
    _file(gh, "before the crash", "Inbox/Customers/Contoso")
    gh.wait_tracked("before the crash", timeout=5.0, regarding_id="acc-contoso")

    _crash(gh)
    _file(gh, "while down", "Inbox/Customers/Fabrikam")  # notified to nobody: the start-up catch-up reads it
    push = _start(gh, port)
    gh.wait_tracked("while down", timeout=10.0, regarding_id="acc-fabrikam")
    assert set(push.subscriptions(ALICE)) == first == _live(gh) == set(_rows(gh))
    _file(gh, "after the restart", "Inbox/Customers/Contoso")  # through a reused subscription's notification
    gh.wait_tracked("after the restart", timeout=5.0, regarding_id="acc-contoso")
    gh.settle()
    assert len(gh.activities()) == 3
    assert push.listener.rejected == 0

    gh.stop_watcher()  # a clean stop deletes them, at Graph and in the database
    assert _live(gh) == set() and _rows(gh) == {}


def test_a_restart_on_another_url_replaces_them_and_ignores_strangers(gh):
    gh.write_rules(_rules(ALICE))
    push = _start(gh)
    wait_until(lambda: len(push.subscriptions(ALICE)) == 2, 10, "one subscription per tracked folder")
    first = set(push.subscriptions(ALICE))
    _crash(gh)

    push = _start(gh)  # another port: the old subscriptions would post to nobody
    wait_until(lambda: len(push.subscriptions(ALICE)) == 2, 10, "subscriptions on the new URL")
    second = set(push.subscriptions(ALICE))
    assert not first & second and _live(gh) == second == set(_rows(gh))
    _file(gh, "notified", "Inbox/Customers/Fabrikam")
    gh.wait_tracked("notified", timeout=5.0, regarding_id="acc-fabrikam")

    stranger = {"subscriptionId": sorted(first)[0], "clientState": "whatever", "changeType": "created"}
    known = {"subscriptionId": sorted(second)[0], "clientState": "not its secret", "changeType": "created"}
    for _ in range(2):
        answer = requests.post(push.url, json={"value": [stranger, known]}, timeout=5)
        assert answer.status_code == 202
    listener = push.listener  # it answers before it handles: wait for the counts
    wait_until(lambda: listener.unknown == 2 and listener.rejected == 2, 5, "both checked twice")
    gh.settle()
    assert len(gh.activities()) == 1


def test_untracked_folders_and_mailboxes_lose_their_subscriptions_at_restart(gh):
    gh.write_rules(_rules(ALICE, BOB))
    push = _start(gh)
    wait_until(lambda: len(push.subscriptions()) == 4, 10, "two folders of two mailboxes")
    first = _rows(gh)
    _crash(gh)

    gh.write_rules(_rules(ALICE, fabrikam=False))  # Bob is gone, Alice keeps Contoso only
    push = _start(gh, push.listener.port)
    wait_until(lambda: len(_live(gh)) == 1, 10, "the untracked subscriptions deleted")
    assert set(_rows(gh)) == set(push.subscriptions()) == _live(gh)
    ((sub_id, (mailbox, folder_id)),) = _rows(gh).items()
    with gh.engine.connect() as conn:
        contoso = conn.execute(
            select(tracked_folders.c.folder_id).where(
                tracked_folders.c.mailbox == ALICE,
                tracked_folders.c.configured_path == "Inbox/Customers/Contoso",
            )
        ).scalar_one()
    assert first[sub_id] == (mailbox, folder_id) == (ALICE, contoso)  # reused, same URL


def test_a_subscription_made_after_the_lease_went_is_deleted_again(gh):
    """The store's fenced write refuses (another instance holds the mailbox now): nothing is left at Graph."""

    class LostLease:
        instance = "me"

        def load(self, mailbox):
            return []

        def save(self, sub):
            raise LeaseLostError(f"{sub.mailbox}: lease lost", sub.mailbox, 0)

        def orphans(self):
            return []

    client = graph_source(gh.sim).client
    push = GraphPush(client, lambda *a: None, store=LostLease()).start()  # type: ignore[arg-type]
    try:
        inbox = client.request("GET", ALICE, f"users/{ALICE}/mailFolders/inbox")["id"]
        with pytest.raises(LeaseLostError):
            push.subscribe(ALICE, frozenset({inbox}))
        assert push.subscriptions() == {} and _live(gh) == set()
    finally:
        push.stop()


def test_a_new_owner_adopts_or_replaces_them_and_the_old_one_leaves_them_alone(gh):
    """Lease hand-over as the push layer sees it (no fleet needed): the next owner adopts the subscriptions
    that post to its URL (a shared public URL) and replaces the others; a previous owner's clean stop
    deletes nothing that is no longer its own."""

    def store(instance: str) -> DatabaseSubscriptions:
        watcher = SimpleNamespace(
            engine=gh.engine,
            options=SimpleNamespace(instance=instance),
            rules=None,
            _fence=lambda conn, m: None,
        )
        return DatabaseSubscriptions(watcher)

    client = graph_source(gh.sim).client
    folders = frozenset(
        client.request("GET", ALICE, f"users/{ALICE}/mailFolders/{name}")["id"]
        for name in ("inbox", "sentitems")
    )
    a = GraphPush(client, lambda *_: None, store=store("a")).start()
    b = GraphPush(client, lambda *_: None, notification_url=a.url, store=store("b")).start()
    c = GraphPush(client, lambda *_: None, store=store("c")).start()
    running = [a, b, c]
    try:
        assert a.subscribe(ALICE, folders) == 2
        first = set(a.subscriptions())
        assert b.subscribe(ALICE, folders) == 0  # same URL: adopted
        assert set(b.subscriptions()) == first == _live(gh)
        with gh.engine.connect() as conn:
            assert set(conn.execute(select(graph_subscriptions.c.instance)).scalars()) == {"b"}
        running.remove(a)
        a.stop()  # no longer a's: left alone
        assert _live(gh) == first == set(_rows(gh))

        assert c.subscribe(ALICE, folders) == 2  # another URL: replaced
        second = set(c.subscriptions())
        assert not first & second and _live(gh) == second == set(_rows(gh))
        running.remove(b)
        b.stop()
        assert _live(gh) == second
    finally:
        for push in running:
            push.stop()
    assert _live(gh) == set() and _rows(gh) == {}


def test_a_mailbox_the_rules_drop_loses_its_subscriptions_at_once(gh):
    gh.write_rules(_rules(ALICE, BOB))
    push = _start(gh)
    wait_until(lambda: len(push.subscriptions()) == 4, 10, "two folders of two mailboxes")
    alice = set(push.subscriptions(ALICE))
    gh.write_rules(_rules(ALICE))
    assert gh.watcher.reload_rules()
    wait_until(lambda: _live(gh) == alice, 10, "Bob's subscriptions deleted")
    assert set(_rows(gh)) == alice == set(push.subscriptions())
