"""``foldertrack run`` on the Graph source with change notifications, SIGKILLed mid-burst twice: nothing
lost, nothing doubled, and the restarts reuse the subscriptions the dead process left (no leak: Graph holds
exactly one per tracked folder; a clean stop deletes them)."""

from __future__ import annotations

import random
import socket
import threading
import time

from sqlalchemy import func, select

from foldertrack.simulator import MailSpec
from foldertrack.simulator.identity import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT
from foldertrack.state.database import open_database, upgrade_database
from foldertrack.state.records import RecordDirectory
from foldertrack.state.schema import activities, graph_subscriptions, subscription_health
from foldertrack.testing.harness import wait_tracked_where_they_ended, wait_until
from foldertrack.testing.process import WatcherProcess

ALICE = "alice@example.com"
BOB = "bob@example.com"
RECORDS = """type,id,name,number,emails
account,acc-contoso,Contoso,C-100,
account,acc-fabrikam,Fabrikam,F-200,
"""
FOLDERS = {"Inbox/Customers/Contoso": "acc-contoso", "Inbox/Customers/Fabrikam": "acc-fabrikam"}
RULES = f"""
mailboxes:
  - addresses: [{ALICE}, {BOB}]
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/Customers/Fabrikam: account:acc-fabrikam
"""


def _config(sim, tmp_path, database_url: str, port: int) -> str:
    return f"""[exchange]
source = "graph"

[graph]
tenant_id = "{DEMO_TENANT}"
client_id = "{DEMO_CLIENT_ID}"
authority = "{sim.https_base}"
base_url = "{sim.https_base}/v1.0"
ca_file = "{sim.ca_path}"
poll_interval = "1h"
notification_url = "http://127.0.0.1:{port}/graph/notifications"
listen = "127.0.0.1:{port}"

[database]
url = "{database_url}"

[rules]
dir = "{tmp_path / "rules"}"

[watch]
workers = 3
debounce = "20ms"
"""


def test_kill_9_with_change_notifications_loses_doubles_and_leaks_nothing(
    simulator_factory, tmp_path, monkeypatch
):
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    sim = simulator_factory()
    sim.identity.add_app(DEMO_TENANT, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    for address in (ALICE, BOB):
        sim.add_mailbox(address)
        for path in FOLDERS:
            sim.mailbox(address).create_folder(path)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.yaml").write_text(RULES, encoding="utf-8")
    database_url = f"sqlite:///{tmp_path / 'foldertrack.db'}"
    upgrade_database(database_url)
    engine = open_database(database_url)
    (tmp_path / "records.csv").write_text(RECORDS, encoding="utf-8")
    RecordDirectory(engine).import_csv(tmp_path / "records.csv")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    config = tmp_path / "foldertrack.toml"
    config.write_text(_config(sim, tmp_path, database_url, port), encoding="utf-8")
    process = WatcherProcess(
        config, tmp_path / "run.log", extra_env={"FOLDERTRACK_GRAPH_CLIENT_SECRET": DEMO_CLIENT_SECRET}
    )
    rng = random.Random(20261130)
    expected: dict[str, str] = {}
    where: dict[str, tuple[str, str]] = {}
    tracked = len(FOLDERS) * 2

    def file_mails(round_no: int) -> None:
        for n in range(20):
            if where and rng.random() < 0.25:  # re-file a tracked mail
                subject = rng.choice(sorted(where))
                owner, item_id = where[subject]
                folder = rng.choice(list(FOLDERS))
                where[subject] = (owner, sim.mailbox(owner).move_item(item_id, folder))
            else:
                owner = rng.choice((ALICE, BOB))
                subject = f"round {round_no} mail {n}"
                folder = rng.choice(list(FOLDERS))
                spec = MailSpec(subject=subject, sender="dana@contoso.com", to=[owner], body=subject)
                item_id = sim.mailbox(owner).move_item(sim.deliver(owner, spec, folder="Inbox"), folder)
                where[subject] = (owner, item_id)
            expected[subject] = FOLDERS[folder]
            time.sleep(rng.uniform(0.0, 0.03))

    def notified() -> bool:  # both mailboxes on change notifications, every folder subscribed
        with engine.connect() as conn:
            modes = dict(
                conn.execute(select(subscription_health.c.mailbox, subscription_health.c.mode)).all()
            )
            rows = conn.execute(select(func.count()).select_from(graph_subscriptions)).scalar_one()
        return all(modes.get(m) == "streaming" for m in (ALICE, BOB)) and rows == tracked

    def live() -> set[str]:
        return {s.id for s in sim.graph.subscriptions()}

    def stored() -> set[str]:
        with engine.connect() as conn:
            return set(conn.execute(select(graph_subscriptions.c.id)).scalars())

    try:
        seen: list[set[str]] = []
        for round_no in range(2):
            process.start()
            wait_until(lambda: process.running() and notified(), 30, "the watcher on change notifications")
            seen.append(live())
            mover = threading.Thread(target=file_mails, args=(round_no,))
            mover.start()
            time.sleep(rng.uniform(0.3, 1.2))
            process.kill9()
            mover.join()
            assert live() == stored() and len(live()) == tracked  # left at Graph, and on record
            with engine.begin() as conn:
                conn.execute(subscription_health.update().values(mode="stopped"))
        process.start()

        wait_tracked_where_they_ended(engine, expected, log=lambda: process.log()[-3000:])
        wait_until(notified, 10, "the last run on change notifications")
        # the restarts reused what the killed processes left: one subscription per folder, ever
        assert seen[0] == seen[1] == live() == stored() and len(live()) == tracked
        # and they still notify: the poll interval is an hour
        spec = MailSpec(subject="after the restarts", sender="dana@contoso.com", to=[ALICE], body="x")
        sim.mailbox(ALICE).move_item(sim.deliver(ALICE, spec, folder="Inbox"), "Inbox/Customers/Contoso")
        wait_until(
            lambda: "after the restarts" in _subjects(engine), 10, "a notified move after the restarts"
        )

        assert process.terminate() == 0  # a clean stop deletes them at Graph and on record
        assert live() == set() and stored() == set()
    finally:
        process.close()
        engine.dispose()


def _subjects(engine) -> set[str]:
    with engine.connect() as conn:
        return set(conn.execute(select(activities.c.subject)).scalars())
