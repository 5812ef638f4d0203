"""Nothing lost, nothing twice, across ``kill -9`` of the watcher process at random moments of a burst.

Each round starts ``foldertrack run`` as a child process, files mails into tracked folders (and moves some
already-tracked ones between folders) while a random moment later the child is SIGKILLed: no handler, no
cleanup, as after a crash or the OOM killer. A final run catches up. Then every mail must be exactly one
activity, regarding the record of the folder it ended in, with its ledger and parties not doubled.
"""

from __future__ import annotations

import os
import random
import threading
import time

import pytest
from sqlalchemy import func, select

from foldertrack.simulator import MailSpec
from foldertrack.state.database import open_database, upgrade_database
from foldertrack.state.records import RecordDirectory
from foldertrack.state.schema import activities, activity_parties, ledger, subscription_health
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, USER_PASSWORD, wait_until
from foldertrack.testing.process import WatcherProcess, write_config

MAILBOXES = ("alice@example.com", "bob@example.com")
FOLDERS = {"Inbox/Customers/Contoso": "acc-contoso", "Inbox/Customers/Fabrikam": "acc-fabrikam"}
RULES = f"""
mailboxes:
  - addresses: [{", ".join(MAILBOXES)}]
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/Customers/Fabrikam: account:acc-fabrikam
"""
RECORDS = """type,id,name,number,emails
account,acc-contoso,Contoso,C-100,info@contoso.com
account,acc-fabrikam,Fabrikam,F-200,
contact,con-dana,Dana Contoso,,dana@contoso.com
"""
ROUNDS = 4
MAILS_PER_ROUND = 30
SEED = int(os.environ.get("FOLDERTRACK_CRASH_SEED", "20261122"))


@pytest.fixture
def setup(simulator_factory, database_url, tmp_path):
    simulator = simulator_factory(heartbeat=1.0)  # keep-alives well inside the watcher's 5 s stall timeout
    simulator.add_service_account(SERVICE_ACCOUNT, password=SERVICE_PASSWORD, impersonation=True)
    for address in MAILBOXES:
        simulator.add_mailbox(address, password=USER_PASSWORD)
        for path in (*FOLDERS, "Inbox/Elsewhere"):
            simulator.mailbox(address).create_folder(path)
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yaml").write_text(RULES, encoding="utf-8")
    upgrade_database(database_url)
    engine = open_database(database_url)
    (tmp_path / "records.csv").write_text(RECORDS, encoding="utf-8")
    RecordDirectory(engine).import_csv(tmp_path / "records.csv")
    config = write_config(
        tmp_path / "foldertrack.toml", endpoint=simulator.url, database_url=database_url, rules_dir=rules_dir
    )
    process = WatcherProcess(config, tmp_path / "run.log")
    try:
        yield simulator, engine, process
    finally:
        process.close()
        engine.dispose()


def _streaming(engine) -> bool:
    with engine.connect() as conn:
        modes = dict(conn.execute(select(subscription_health.c.mailbox, subscription_health.c.mode)).all())
    return all(modes.get(m) == "streaming" for m in MAILBOXES)


def _tracked(engine) -> dict[str, str | None]:
    with engine.connect() as conn:
        return dict(conn.execute(select(activities.c.subject, activities.c.regarding_id)).all())


def test_kill_9_mid_burst_loses_nothing_and_doubles_nothing(setup):
    sim, engine, process = setup
    rng = random.Random(SEED)
    expected: dict[str, str] = {}  # subject → record id of the folder the mail ends in
    where: dict[str, tuple[str, str]] = {}  # subject → (mailbox, item id)
    kills = []

    def file_mails(round_no: int) -> None:
        for n in range(MAILS_PER_ROUND):
            mailbox = rng.choice(MAILBOXES)
            handle = sim.mailbox(mailbox)
            if where and rng.random() < 0.25:  # re-file an already tracked mail: it must be re-linked
                subject = rng.choice(sorted(where))
                owner, item_id = where[subject]
                folder = rng.choice(list(FOLDERS))
                where[subject] = (owner, sim.mailbox(owner).move_item(item_id, folder))
                expected[subject] = FOLDERS[folder]
            else:
                subject = f"round {round_no} mail {n}"
                item_id = sim.deliver(
                    mailbox,
                    MailSpec(subject=subject, sender="dana@contoso.com", to=[mailbox], body=subject),
                )
                folder = rng.choice(list(FOLDERS))
                where[subject] = (mailbox, handle.move_item(item_id, folder))
                expected[subject] = FOLDERS[folder]
            time.sleep(rng.uniform(0.0, 0.02))  # a user's pace: spread the burst over several syncs

    for round_no in range(ROUNDS):
        process.start()
        wait_until(lambda: process.running() and _streaming(engine), 30, "the watcher to stream")
        mover = threading.Thread(target=file_mails, args=(round_no,))
        mover.start()
        time.sleep(rng.uniform(0.05, 0.6))  # the random moment of the crash
        kills.append(len(_tracked(engine)))
        process.kill9()
        mover.join()
        with engine.begin() as conn:  # a killed process cannot say so; make the next wait meaningful
            conn.execute(subscription_health.update().values(mode="stopped"))

    process.start()
    wait_until(lambda: _tracked(engine) == expected, 60, "every mail tracked with its final record")
    # the last killed process may have tracked them all: stop this one once it is running, not mid start-up
    wait_until(lambda: _streaming(engine), 30, "the last watcher to stream")
    assert process.terminate() == 0

    tracked = _tracked(engine)
    assert tracked == expected, f"seed {SEED}; kills after {kills} activities"
    with engine.connect() as conn:
        present = conn.execute(
            select(ledger.c.activity_key, func.count())
            .where(ledger.c.state == "present")
            .group_by(ledger.c.activity_key)
        ).all()
        parties = conn.execute(
            select(activity_parties.c.activity_key, activity_parties.c.role, func.count()).group_by(
                activity_parties.c.activity_key, activity_parties.c.role
            )
        ).all()
    assert len(present) == len(expected) and all(n == 1 for _, n in present), "a mail is in the ledger twice"
    assert all(n == 1 for _, _, n in parties), "parties were written twice"
    assert "Traceback" not in process.log()
