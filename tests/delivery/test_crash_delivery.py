"""Exactly once in the CRM across ``kill -9`` of ``foldertrack run`` in the middle of deliveries.

The child process delivers into the recording CRM (a SQLite file, found through a real plug-in install),
which applies each change and then answers late: each round kills the child while a call is in that
window (the CRM has the change, the outbox does not know yet). The next process must send that entry
again, and the CRM must end with every mail exactly once, regarding the record of its final folder.
"""

from __future__ import annotations

import random
import threading
from collections import Counter

import pytest
from sqlalchemy import select

from foldertrack.simulator import MailSpec
from foldertrack.state.database import open_database, upgrade_database
from foldertrack.state.records import RecordDirectory
from foldertrack.state.schema import outbox, subscription_health
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, USER_PASSWORD, wait_until
from foldertrack.testing.process import WatcherProcess, write_config
from foldertrack.testing.recording_sink import ENV_PATH, RecordingSink, install_plugin
from tests.delivery.conftest import RECORDS

MAILBOX = "alice@example.com"
FOLDERS = {
    "Inbox/Customers/Contoso": "account:acc-contoso",
    "Inbox/Customers/Fabrikam": "account:acc-fabrikam",
}
RULES = f"""
mailboxes:
  - address: {MAILBOX}
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/Customers/Fabrikam: account:acc-fabrikam
"""
ROUNDS = 3
MAILS_PER_ROUND = 8
SEED = 20261129


@pytest.fixture
def setup(simulator_factory, database_url, tmp_path):
    sim = simulator_factory(heartbeat=1.0)
    sim.add_service_account(SERVICE_ACCOUNT, password=SERVICE_PASSWORD, impersonation=True)
    sim.add_mailbox(MAILBOX, password=USER_PASSWORD)
    for path in FOLDERS:
        sim.mailbox(MAILBOX).create_folder(path)
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yaml").write_text(RULES, encoding="utf-8")
    upgrade_database(database_url)
    engine = open_database(database_url)
    (tmp_path / "records.csv").write_text(RECORDS, encoding="utf-8")
    RecordDirectory(engine).import_csv(tmp_path / "records.csv")
    config = write_config(
        tmp_path / "foldertrack.toml", endpoint=sim.url, database_url=database_url, rules_dir=rules_dir
    )
    with config.open("a", encoding="utf-8") as extra:
        extra.write(
            '[sink]\nname = "recording"\n\n'
            '[delivery]\nworkers = 2\nscan_interval = "200ms"\nmax_backoff = "1s"\nfeedback = false\n'
        )
    crm = RecordingSink(tmp_path / "crm.db")
    env = {**install_plugin(tmp_path / "plugins"), ENV_PATH: str(crm.path)}
    process = WatcherProcess(config, tmp_path / "run.log", extra_env=env)
    try:
        yield sim, engine, crm, process
    finally:
        process.close()
        engine.dispose()
        crm.close()


def _pending(engine) -> set[int]:
    with engine.connect() as conn:
        return set(conn.execute(select(outbox.c.id).where(outbox.c.status == "pending")).scalars())


def _streaming(engine) -> bool:
    with engine.connect() as conn:
        mode = conn.execute(
            select(subscription_health.c.mode).where(subscription_health.c.mailbox == MAILBOX)
        ).scalar_one_or_none()
    return mode == "streaming"


def test_kill_9_mid_delivery_leaves_every_mail_exactly_once_in_the_crm(setup):
    sim, engine, crm, process = setup
    rng = random.Random(SEED)
    expected: dict[str, str] = {}
    where: dict[str, str] = {}
    crm.faults(delay=0.4)  # the CRM applies each change, then answers 0.4 s later
    killed_in_flight: list[int] = []

    def file_mails(round_no: int) -> None:
        box = sim.mailbox(MAILBOX)
        for n in range(MAILS_PER_ROUND):
            if where and rng.random() < 0.3:
                subject = rng.choice(sorted(where))
                folder = rng.choice(list(FOLDERS))
                where[subject] = box.move_item(where[subject], folder)
            else:
                subject = f"round {round_no} mail {n}"
                item = sim.deliver(
                    MAILBOX, MailSpec(subject=subject, sender="dana@contoso.com", to=[MAILBOX])
                )
                folder = rng.choice(list(FOLDERS))
                where[subject] = box.move_item(item, folder)
            expected[subject] = FOLDERS[folder]

    for round_no in range(ROUNDS):
        process.start()
        wait_until(lambda: process.running() and _streaming(engine), 30, "the watcher to stream")
        mover = threading.Thread(target=file_mails, args=(round_no,))
        mover.start()

        def in_flight() -> int | None:
            """An entry the CRM applied whose outbox row is still pending: the kill lands there."""
            applied = {
                c["entry_id"] for c in crm.calls() if c["outcome"] in ("created", "updated", "unchanged")
            }
            caught = applied & _pending(engine)
            return min(caught) if caught else None

        killed_in_flight.append(wait_until(in_flight, 30, "a delivery in flight"))
        process.kill9()
        mover.join()
        with engine.begin() as conn:
            conn.execute(subscription_health.update().values(mode="stopped"))

    crm.faults(delay=0)
    process.start()

    def converged() -> bool:
        held = {subject: row["regarding"] for subject, row in crm.crm().items()}
        return held == expected and not _pending(engine)

    wait_until(converged, 60, "the CRM to hold every mail with its final record")
    assert process.terminate() == 0

    held = crm.crm()
    assert {s: r["regarding"] for s, r in held.items()} == expected, f"seed {SEED}"
    assert all(r["state"] == "tracked" for r in held.values())
    calls = crm.calls()
    created = Counter(c["key"] for c in calls if c["outcome"] == "created")
    assert set(created.values()) == {1} and len(created) == len(expected)  # each mail created once
    by_entry = Counter(c["entry_id"] for c in calls if c["outcome"] != "down")
    for entry_id in killed_in_flight:  # at least once: the entry cut off by the kill was sent again
        assert by_entry[entry_id] >= 2, f"entry {entry_id} was not delivered again after the kill"
    assert "Traceback" not in process.log()


def test_sigterm_lets_the_request_in_flight_finish_and_records_it(setup):
    sim, engine, crm, process = setup
    crm.faults(delay=1.0)  # the CRM takes a second to answer
    process.start()
    wait_until(lambda: process.running() and _streaming(engine), 30, "the watcher to stream")
    item = sim.deliver(MAILBOX, MailSpec(subject="in flight", sender="dana@contoso.com", to=[MAILBOX]))
    sim.mailbox(MAILBOX).move_item(item, "Inbox/Customers/Contoso")
    wait_until(lambda: crm.calls(), 30, "the call in flight")
    assert process.terminate() == 0
    assert _pending(engine) == set()  # recorded as delivered: the next start will not send it again
    assert [c["outcome"] for c in crm.calls()] == ["created"]
    assert "Traceback" not in process.log()
