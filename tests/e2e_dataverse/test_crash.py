"""Exactly once in the CRM across ``kill -9`` of ``foldertrack run`` while it delivers into Dataverse.

The child process is the real service (config file, ``sink.name = "dataverse"``, the client secret from the
environment, MSAL and requests over HTTPS against the simulator's CA). The simulated Dataverse answers each
request late (it waits, then applies it even when the caller has died meanwhile); each round kills the
child while a request is in that window, so the CRM may get a change the outbox never recorded as sent.
The next process sends it again; the deterministic ``activityid`` makes that a no-op. In the end every
mail is exactly one CRM email regarding the record of its final folder, with its parties.
"""

from __future__ import annotations

import random
import threading

import pytest
from sqlalchemy import select

from foldertrack.simulator import MailSpec
from foldertrack.sinks.dataverse import activity_id
from foldertrack.state.database import open_database, upgrade_database
from foldertrack.state.schema import activities, outbox, subscription_health
from foldertrack.testing.fixtures_dataverse_sink import make_dataverse_config
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, USER_PASSWORD, wait_until
from foldertrack.testing.process import WatcherProcess, write_config
from tests.e2e_dataverse.conftest import ALICE, CONTOSO, FABRIKAM, seed_crm, sync_records

ROUNDS = 3
MAILS_PER_ROUND = 8
SEED = 20261129
pytestmark = pytest.mark.slow


@pytest.fixture
def setup(dataverse_factory, database_url, tmp_path):
    dv = dataverse_factory(heartbeat=1.0)
    sim = dv.sim
    ids = seed_crm(dv.crm)
    sim.add_service_account(SERVICE_ACCOUNT, password=SERVICE_PASSWORD, impersonation=True)
    sim.add_mailbox(ALICE, password=USER_PASSWORD)
    for path in (CONTOSO, FABRIKAM):
        sim.mailbox(ALICE).create_folder(path)
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    (rules_dir / "rules.yaml").write_text(
        f"mailboxes:\n  - address: {ALICE}\n    folders:\n"
        f"      {CONTOSO}: account:{ids['contoso']}\n      {FABRIKAM}: account:{ids['fabrikam']}\n",
        encoding="utf-8",
    )
    upgrade_database(database_url)
    engine = open_database(database_url)
    sync_records(make_dataverse_config(dv), engine)
    config = write_config(
        tmp_path / "foldertrack.toml", endpoint=sim.url, database_url=database_url, rules_dir=rules_dir
    )
    with config.open("a", encoding="utf-8") as extra:
        extra.write(
            '[sink]\nname = "dataverse"\n\n'
            '[delivery]\nworkers = 4\nscan_interval = "200ms"\nmax_backoff = "1s"\nfeedback = false\n\n'
            f'[dataverse]\nurl = "{dv.org_url}"\ntenant_id = "{dv.tenant}"\nclient_id = "{dv.client_id}"\n'
            f'authority = "{sim.https_base}"\nca_file = "{dv.ca_path}"\nmax_concurrency = 4\n'
        )
    # the secret as systemd's LoadCredential or the environment gives it: never in the file
    process = WatcherProcess(
        config, tmp_path / "run.log", extra_env={"FOLDERTRACK_DATAVERSE_CLIENT_SECRET": dv.client_secret}
    )
    try:
        yield dv, ids, engine, process
    finally:
        process.close()
        engine.dispose()


def _pending_keys(engine) -> set[str]:
    with engine.connect() as conn:
        query = select(outbox.c.mail_key).where(outbox.c.status == "pending", outbox.c.op == "upsert")
        return set(conn.execute(query).scalars())


def _never_delivered(engine) -> set[str]:
    """Keys with a pending upsert and no delivered entry: as far as the outbox knows, not in the CRM."""
    with engine.connect() as conn:
        query = select(outbox.c.mail_key).where(outbox.c.status == "delivered")
        delivered = set(conn.execute(query).scalars())
    return _pending_keys(engine) - delivered


def _streaming(engine) -> bool:
    with engine.connect() as conn:
        mode = conn.execute(
            select(subscription_health.c.mode).where(subscription_health.c.mailbox == ALICE)
        ).scalar_one_or_none()
    return mode == "streaming"


def _in_flight(crm) -> int:
    return sum(crm.faults.in_flight.in_flight.values())


def test_kill_9_mid_delivery_leaves_every_mail_exactly_once_in_dataverse(setup):
    dv, ids, engine, process = setup
    sim, crm = dv.sim, dv.crm
    records = {CONTOSO: ids["contoso"], FABRIKAM: ids["fabrikam"]}
    rng = random.Random(SEED)
    expected: dict[str, str] = {}
    where: dict[str, str] = {}
    applied_unrecorded = 0
    crm.faults.slow_responses(300)  # each request waits 0.3 s at the CRM, then is applied

    def file_mails(round_no: int) -> None:
        box = sim.mailbox(ALICE)
        for n in range(MAILS_PER_ROUND):
            if where and rng.random() < 0.3:  # re-file an earlier mail: a re-link in flight
                subject = rng.choice(sorted(where))
                folder = rng.choice(list(records))
                where[subject] = box.move_item(where[subject], folder)
            else:
                subject = f"round {round_no} mail {n}"
                item = sim.deliver(ALICE, MailSpec(subject=subject, sender="dana@contoso.com", to=[ALICE]))
                folder = rng.choice(list(records))
                where[subject] = box.move_item(item, folder)
            expected[subject] = records[folder]

    for round_no in range(ROUNDS):
        process.start()
        wait_until(lambda: process.running() and _streaming(engine), 30, "the watcher to stream")
        mover = threading.Thread(target=file_mails, args=(round_no,))
        mover.start()
        wait_until(lambda: _in_flight(crm) and _pending_keys(engine), 30, "a delivery in flight")
        process.kill9()
        mover.join()
        wait_until(lambda: not _in_flight(crm), 10, "the CRM to finish the orphaned requests")
        # created in the CRM, never recorded as sent: the crash window exactly once must survive
        applied_unrecorded += sum(crm.email(activity_id(k)) is not None for k in _never_delivered(engine))
        with engine.begin() as conn:
            conn.execute(subscription_health.update().values(mode="stopped"))

    crm.faults.slow_responses(0)
    process.start()

    def converged() -> bool:
        held = {e["subject"]: (e["regarding"] or (None, None))[1] for e in crm.emails()}
        return held == expected and not _pending_keys(engine)

    wait_until(converged, 60, "the CRM to hold every mail regarding its final record")
    assert process.terminate() == 0

    emails = crm.emails()
    assert sorted(e["subject"] for e in emails) == sorted(expected), f"lost or doubled (seed {SEED})"
    for email in emails:
        assert email["regarding"] == ("account", expected[email["subject"]]), email["subject"]
        assert sorted(email["parties"], key=str) == [(1, ("contact", ids["dana"])), (2, ALICE)]
        assert (email["statecode"], email["statuscode"]) == (1, 4)
    with engine.connect() as conn:
        keys = set(conn.execute(select(activities.c.key)).scalars())
        dead = conn.execute(select(outbox.c.id).where(outbox.c.status == "dead")).all()
    assert {activity_id(k) for k in keys} == {e["activityid"] for e in emails}
    assert not dead
    assert applied_unrecorded >= 1, "no round killed the child between the CRM's write and the outbox's"
    assert "Traceback" not in process.log()
