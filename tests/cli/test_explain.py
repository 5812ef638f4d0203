"""``foldertrack explain`` and ``foldertrack conflicts`` after a real watcher tracked mails from the
simulator: the story from the database, and where Exchange has the mail now and why it is not tracked."""

from __future__ import annotations

import json

import pytest

from foldertrack.testing.harness import Harness, options_for_tests
from tests.cli.conftest import ALICE, RULES, mail

BOB = "bob@example.com"


def test_explain_a_tracked_mail(tracked):
    result = tracked.run("explain", "<quote@example.com>")
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert out.startswith("<quote@example.com>  quote\n")
    assert (
        "  verdict: tracked from alice@example.com Inbox/Customers/Contoso, regarding account:acc-contoso (Contoso)"
        in out
    )
    assert "    alice@example.com  Inbox/Customers/Contoso  present  since " in out
    assert "in Exchange now:\n  alice@example.com  Inbox/Customers/Contoso  quote  received " in out
    assert out.rstrip().endswith(": tracked here")


def test_explain_accepts_the_message_id_without_brackets_and_json(tracked):
    result = tracked.run("--json", "explain", "quote@example.com", "--offline")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    (story,) = data["mails"]
    assert story["key"] == "mid:<quote@example.com>" and story["subject"] == "quote"
    assert story["link"]["regarding_id"] == "acc-contoso" and story["link"]["state"] == "tracked"
    assert [s["folder"] for s in story["seen"]] == ["Inbox/Customers/Contoso"]
    assert data["exchange"] == [] and data["notes"] == []


@pytest.mark.parametrize(
    ("subject", "folder", "reason"),
    [
        (
            "unknown account mail",
            "Inbox/Accounts/Unknown Ltd",
            "no record found for folder name 'Unknown Ltd' (",
        ),
        ("project mail", "Projects", "no rule tracks this folder"),
        ("old fabrikam", "Inbox/Customers/Fabrikam", ", before the backfill cutoff "),
    ],
)
def test_explain_says_why_a_mail_was_never_tracked(tracked, subject, folder, reason):
    message_id = f"<{subject.replace(' ', '-')}@example.com>"
    result = tracked.run("explain", message_id, "--mailbox", ALICE)
    assert result.exit_code == 0, result.output
    assert f"  verdict: never tracked: {folder}: " in result.stdout
    assert reason in result.stdout


def test_explain_by_subject_lists_each_match(tracked):
    result = tracked.run("explain", "--subject", "QUOT", "--offline")
    assert result.exit_code == 0, result.output
    assert result.stdout.count("verdict: tracked from") == 1


def test_explain_unknown_mail_exits_1(tracked):
    result = tracked.run("explain", "<nobody@example.com>")
    assert result.exit_code == 1
    assert result.stderr.strip() == (
        "error: no mail with Message-ID <nobody@example.com> in the state database or in Exchange"
    )


@pytest.mark.parametrize("args", [[], ["<a@b>", "--subject", "x"]])
def test_explain_needs_exactly_one_of_message_id_and_subject(world, args):
    result = world.run("explain", *args)
    assert result.exit_code == 2
    assert "give either a MESSAGE-ID or --subject TEXT" in result.stderr


def test_explain_without_exchange_settings_notes_it(tracked, tmp_path):
    bare = tmp_path / "bare.toml"
    bare.write_text(f'[database]\nurl = "{tracked.database_url}"\n', encoding="utf-8")
    result = tracked.run("explain", "<quote@example.com>", "--config", str(bare))
    assert result.exit_code == 0
    assert result.stderr.startswith("note: Exchange not searched (")


def test_conflicts_lists_the_same_mail_filed_to_two_records(world):
    world.sim.add_mailbox(BOB, password="user-pw").create_folder("Inbox/Fabrikam")
    world.write_rules(
        RULES
        + f"""
  - address: {BOB}
    folders:
      Inbox/Fabrikam: account:acc-fabrikam
"""
    )
    with Harness(world.tmp, simulator=world.sim, database_url=world.database_url, **options_for_tests()) as h:
        h.start_watcher()
        shared = mail("shared", to=[ALICE, BOB]).to_mime()  # one mail (same bytes) sent to both
        world.sim.deliver(ALICE, shared, folder="Inbox/Customers/Contoso")
        h.wait_tracked("shared", regarding_id="acc-contoso")
        folder_id = world.sim.mailbox(BOB).folder_id("Inbox/Fabrikam")
        h.wait_for(  # bob's stream covers the folder: the delivery below is an event it sees
            lambda: any(
                s.mailbox == BOB and folder_id in s.subscribed_ids for s in h.watcher.mailbox_states()
            ),
            what="bob's subscription",
        )
        world.sim.deliver(BOB, shared, folder="Inbox/Fabrikam")
        h.wait_for(lambda: json.loads(world.run("conflicts", "--json").stdout), what="a conflict")
        h.stop_watcher()
    result = world.run("conflicts", "--json")
    assert result.exit_code == 0
    (conflict,) = json.loads(result.stdout)
    assert conflict["subject"] == "shared" and conflict["mailbox"] == BOB
    assert conflict["folder"] == "Inbox/Fabrikam" and conflict["policy"] == "first_wins"
    assert conflict["kept"] == "account:acc-contoso" and conflict["other"] == "account:acc-fabrikam"
    assert conflict["current"] == "account:acc-contoso" and conflict["owner"] == ALICE
    text = world.run("conflicts")
    assert "shared" in text.stdout and "first_wins" in text.stdout
    assert world.run("conflicts", "--mailbox", "nobody@example.com").stdout.strip() == "no conflicts"
    story = world.run("explain", "<shared@example.com>", "--offline")
    assert "conflict(s) with other mailboxes" in story.stdout
    assert f"  conflict: {BOB} Inbox/Fabrikam (first_wins): kept account:acc-contoso" in story.stdout


def test_status_for_one_mailbox(tracked):
    result = tracked.run("status", "--mailbox", "ALICE@example.com", "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert [m["mailbox"] for m in report["mailboxes"]] == [ALICE]
    assert report["totals"]["mailboxes"] == 1 and report["totals"]["tracked"] == 1
    text = tracked.run("status", "--mailbox", ALICE)
    assert text.exit_code == 0 and ALICE in text.stdout
    unknown = tracked.run("status", "--mailbox", BOB)
    assert unknown.exit_code == 1
    assert unknown.stderr.strip() == f"error: no mailbox {BOB} in the state database (known: {ALICE})"


def test_explain_shows_deliveries_to_an_external_sink(tracked):
    from sqlalchemy import insert

    from foldertrack.state import schema
    from foldertrack.state.database import open_database

    outbox = getattr(schema, "outbox", None)
    if outbox is None:
        pytest.skip("this schema has no delivery outbox")
    engine = open_database(tracked.database_url)
    try:
        with engine.begin() as conn:
            conn.execute(
                insert(outbox).values(
                    sink="webhook",
                    mail_key="mid:<quote@example.com>",
                    op="upsert",
                    mailbox=ALICE,
                    partition_no=0,
                    status="dead",
                    attempts=5,
                    last_error="HTTP 422: subject too long",
                )
            )
    finally:
        engine.dispose()
    result = tracked.run("explain", "<quote@example.com>", "--offline")
    assert (
        "  delivery to webhook: upsert dead after 5 attempt(s): HTTP 422: subject too long" in result.stdout
    )
    data = json.loads(tracked.run("explain", "<quote@example.com>", "--offline", "--json").stdout)
    (delivery,) = data["mails"][0]["deliveries"]
    assert delivery["sink"] == "webhook" and delivery["status"] == "dead"


def test_explain_a_dead_lettered_mail(tracked):
    from foldertrack.state import dead_letters_store
    from foldertrack.state.database import open_database

    engine = open_database(tracked.database_url)
    try:
        with engine.begin() as conn:
            for _ in range(3):
                dead_letters_store.record_failure(
                    conn,
                    ALICE,
                    "F-x",
                    "I-x",
                    "PermanentSinkError: no",
                    max_attempts=3,
                    mail_key="mid:<poison@example.com>",
                    subject="poison",
                )
    finally:
        engine.dispose()
    result = tracked.run("explain", "--subject", "poison", "--offline")
    assert result.exit_code == 0, result.output
    assert (
        "  verdict: dead-lettered: PermanentSinkError: no (replay with `foldertrack retry " in result.stdout
    )
    assert "  failure #" in result.stdout and "(dead, 3 attempt(s))" in result.stdout


def test_retry_of_an_unknown_id_exits_1_and_queues_nothing(tracked):
    from sqlalchemy import select

    from foldertrack.state import dead_letters_store
    from foldertrack.state.database import open_database
    from foldertrack.state.schema import dead_letters

    engine = open_database(tracked.database_url)
    try:
        with engine.begin() as conn:
            for _ in range(3):
                dead_letters_store.record_failure(
                    conn, ALICE, "F-x", "I-x", "boom", max_attempts=3, mail_key="mid:<p@x>"
                )
        with engine.connect() as conn:
            (dead_id,) = conn.execute(select(dead_letters.c.id)).scalars().all()
        unknown = tracked.run("retry", str(dead_id), "999")
        assert unknown.exit_code == 1
        assert unknown.stderr.strip() == (
            "error: not every given id is a dead letter: nothing queued (`foldertrack status` lists them)"
        )
        with engine.connect() as conn:
            assert conn.execute(select(dead_letters.c.status)).scalar_one() == "dead"
        known = tracked.run("retry", str(dead_id))
        assert known.exit_code == 0 and known.stdout.startswith("1 dead letter(s) queued")
    finally:
        engine.dispose()
