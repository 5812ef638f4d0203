"""Every row of the Tracking-semantics table (README, DESIGN) through the Dataverse sink, read back from the
CRM: simulator EWS + exchangelib + watcher + outbox + Dataverse sink (MSAL, requests, HTTPS) + simulated
Dataverse."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from foldertrack.crm.metadata import EMAIL_STATE_COMPLETED, EMAIL_STATUS_RECEIVED, EMAIL_STATUS_SENT
from foldertrack.sinks.dataverse import activity_id
from foldertrack.testing.fixtures_simulator import exchangelib_account
from foldertrack.testing.harness import USER_PASSWORD
from tests.e2e_dataverse.conftest import ALICE, BOB, CONTOSO, ELSEWHERE, FABRIKAM, NO_RECORD, mail

RECEIVED = (EMAIL_STATE_COMPLETED, EMAIL_STATUS_RECEIVED)
#: one mail sent to two mailboxes has one Date: built twice without it, the two copies could differ by a
#: second and count as a different mail reusing the Message-ID (a collision, not tracked)
SENT = datetime(2026, 11, 2, 9, 30, tzinfo=UTC)


def _state(email):
    return email["statecode"], email["statuscode"]


def test_moved_in_becomes_one_received_email_regarding_the_record(world):
    world.start()
    world.file("moved in", cc=["someone@else.example"])
    email = world.in_crm("moved in", regarding=("account", world.ids["contoso"]))
    key = world.h.activity("moved in")["key"]
    assert email["activityid"] == activity_id(key)
    assert email["regarding_name"] == "Contoso"
    assert (
        email["messageid"] == "<moved-in@example.com>" and email["description"].strip() == "body of moved in"
    )
    assert email["directioncode"] is False and _state(email) == RECEIVED
    assert sorted(email["parties"], key=str) == sorted(
        [(1, ("contact", world.ids["dana"])), (2, ALICE), (3, "someone@else.example")], key=str
    )


@pytest.mark.parametrize("how", ["delivered by rule", "copied", "created"])
def test_mail_entering_a_folder_any_way_is_tracked(world, how):
    world.start()
    sim = world.h.sim
    if how == "delivered by rule":
        sim.deliver(ALICE, mail(how), folder=FABRIKAM)
    elif how == "copied":
        sim.mailbox(ALICE).copy_item(sim.deliver(ALICE, mail(how)), FABRIKAM)
    else:  # an item saved straight into the folder by a client (CreateItem), no Message-ID
        from exchangelib import Message

        account = exchangelib_account(sim, ALICE, USER_PASSWORD)
        try:
            folder = account.inbox / "Customers" / "Fabrikam"
            Message(
                account=account, folder=folder, subject=how, body="typed in", to_recipients=[ALICE]
            ).save()
        finally:
            account.protocol.close()
    world.in_crm(how, regarding=("account", world.ids["fabrikam"]))
    world.drained()
    assert len(world.emails(how)) == 1


def test_rule_without_record_tracks_without_regarding(world):
    world.start()
    world.file("no record", NO_RECORD)
    email = world.in_crm("no record")
    world.sentinel()
    assert world.email("no record")["regarding"] is None and _state(email) == RECEIVED


def test_moved_between_tracked_folders_relinks_the_one_email(world):
    world.start()
    item = world.file("refile me", CONTOSO)
    first = world.in_crm("refile me", regarding=("account", world.ids["contoso"]))
    world.h.sim.mailbox(ALICE).move_item(item, FABRIKAM)
    again = world.in_crm("refile me", regarding=("account", world.ids["fabrikam"]))
    world.drained()
    assert again["activityid"] == first["activityid"] and len(world.crm.emails()) == 1
    assert again["parties"] == first["parties"] and _state(again) == RECEIVED


@pytest.mark.parametrize("on_leave", ["keep", "untrack", "delete"])
def test_moved_out_of_tracked_folders(world, on_leave):
    world.start(world.rules(on_leave=on_leave))
    item = world.file("leaving", CONTOSO)
    world.in_crm("leaving", regarding=("account", world.ids["contoso"]))
    world.h.sim.mailbox(ALICE).move_item(item, ELSEWHERE)
    if on_leave == "keep":
        world.h.wait_tracked("leaving", state="tracked")
        world.sentinel()
        assert world.email("leaving")["regarding"] == ("account", world.ids["contoso"])
    elif on_leave == "untrack":
        email = world.in_crm("leaving", regarding=None)
        assert _state(email) == RECEIVED  # still a received email, no longer regarding anything
        world.drained()
    else:  # the CRM copy this mailbox created is deleted; the local activity is kept, marked
        world.h.wait_for(lambda: world.email("leaving") is None, what="the CRM email to be deleted")
        world.drained()
        assert world.h.activity("leaving")["deleted_at"] is not None


def test_deleted_in_exchange_keeps_the_crm_email(world):
    world.start()
    item = world.file("delete me", CONTOSO)
    world.in_crm("delete me", regarding=("account", world.ids["contoso"]))
    world.h.sim.mailbox(ALICE).delete_item(item, hard=True)
    world.sentinel()
    assert world.email("delete me")["regarding"] == ("account", world.ids["contoso"])


@pytest.mark.parametrize("backfill", ["true", "false"])
def test_mails_already_in_the_folder_follow_backfill(world, backfill):
    _backdate(world, world.h.sim.deliver(ALICE, mail("was here first"), folder=CONTOSO), minutes=5)
    world.start(world.rules(backfill=backfill))
    world.sentinel()
    email = world.email("was here first")
    if backfill == "true":
        assert email is not None and email["regarding"] == ("account", world.ids["contoso"])
    else:
        assert email is None


def test_old_mail_moved_back_in_is_tracked(world):
    sim = world.h.sim
    old = sim.deliver(
        ALICE, mail("old mail", sent_at=datetime.now(UTC) - timedelta(days=400)), folder=CONTOSO
    )
    _backdate(world, old, minutes=400 * 24 * 60)  # received long before the rule existed (a migrated mailbox)
    world.start(world.rules(backfill="false"))
    world.sentinel("first sentinel")
    assert world.email("old mail") is None  # backfill: false
    box = sim.mailbox(ALICE)
    box.move_item(box.move_item(old, ELSEWHERE), CONTOSO)
    world.in_crm("old mail", regarding=("account", world.ids["contoso"]))


@pytest.mark.parametrize("duplicates", ["first_wins", "last_wins"])
def test_same_message_id_from_two_mailboxes_is_one_email(world, duplicates):
    world.start(world.rules(duplicates=duplicates))
    world.file("shared mail", CONTOSO, ALICE, to=[ALICE, BOB], sent_at=SENT)
    world.in_crm("shared mail", regarding=("account", world.ids["contoso"]))
    world.file("shared mail", FABRIKAM, BOB, to=[ALICE, BOB], sent_at=SENT)
    winner = "contoso" if duplicates == "first_wins" else "fabrikam"
    if duplicates == "last_wins":
        world.in_crm("shared mail", regarding=("account", world.ids["fabrikam"]))
    else:
        world.h.wait_for(lambda: _conflicts(world), what="the recorded conflict")
    world.sentinel()
    (email,) = world.emails("shared mail")
    assert email["regarding"] == ("account", world.ids[winner])


def test_renamed_folder_keeps_delivering_to_its_record(world):
    world.start()
    world.file("before rename", CONTOSO)
    world.in_crm("before rename", regarding=("account", world.ids["contoso"]))
    world.h.sim.mailbox(ALICE).rename_folder(CONTOSO, "Contoso Ltd")
    world.file("after rename", "Inbox/Customers/Contoso Ltd")
    world.in_crm("after rename", regarding=("account", world.ids["contoso"]))
    world.drained()
    assert len(world.crm.emails()) == 2


def test_parties_resolve_contact_then_account_then_lead_else_addressused(world):
    world.start()
    world.file(
        "parties",
        sender="Shared Person <Shared@Partner.com>",
        to=[ALICE, "office@partner.com"],
        cc=["newbie@partner.com", "stranger@nowhere.example"],
        bcc=["hidden@nowhere.example"],
    )
    email = world.in_crm("parties", regarding=("account", world.ids["contoso"]))
    ids = world.ids
    assert sorted(email["parties"], key=str) == sorted(
        [
            (1, ("contact", ids["shared"])),  # contact wins over the account and the lead
            (2, ALICE),  # unresolved: the plain address (addressused)
            (2, ("account", ids["partner"])),  # account wins over the lead
            (3, ("lead", ids["newbie"])),
            (3, "stranger@nowhere.example"),
            (4, "hidden@nowhere.example"),
        ],
        key=str,
    )


def test_outgoing_mail_is_a_sent_email(world):
    world.start()
    sim = world.h.sim
    sent = sim.deliver(
        ALICE, mail("our offer", sender=f"Alice <{ALICE}>", to=["info@contoso.com"]), "Sent Items"
    )
    sim.mailbox(ALICE).copy_item(sent, CONTOSO)
    email = world.in_crm("our offer", regarding=("account", world.ids["contoso"]))
    assert email["directioncode"] is True
    assert _state(email) == (EMAIL_STATE_COMPLETED, EMAIL_STATUS_SENT)
    assert (2, ("account", world.ids["contoso"])) in email["parties"]


def test_attachments_within_the_limit_are_copied_larger_ones_named(world):
    world.start(max_attachment_bytes=4096)
    small, exact, large = b"s" * 1000, b"e" * 4096, bytes(range(256)) * 40  # 10,240 bytes
    world.file(
        "with attachments",
        attachments=[
            ("notes.txt", "text/plain", small),
            ("exact.bin", "application/octet-stream", exact),
            ("big.pdf", "application/pdf", large),
        ],
    )
    email = world.in_crm("with attachments")
    assert sorted(email["attachments"]) == [
        ("exact.bin", "application/octet-stream", 4096),
        ("notes.txt", "text/plain", 1000),
    ]
    assert "big.pdf" in email["description"] and "over the size limit" in email["description"]
    contents = {
        row["filename"]: world.crm.attachment_content(row["activitymimeattachmentid"])
        for row in world.crm.records("activitymimeattachment")
    }
    assert contents == {"notes.txt": small, "exact.bin": exact}


def test_mail_without_message_id_is_one_email_however_often_filed(world):
    world.start()
    box = world.h.sim.mailbox(ALICE)
    item = world.file("no message id", CONTOSO, message_id="")
    email = world.in_crm("no message id", regarding=("account", world.ids["contoso"]))
    assert email["messageid"] is None
    assert email["activityid"] == activity_id(world.h.activity("no message id")["key"])
    item = box.move_item(box.move_item(item, ELSEWHERE), CONTOSO)
    box.copy_item(item, FABRIKAM)
    world.in_crm("no message id", regarding=("account", world.ids["fabrikam"]))
    world.sentinel()
    assert len(world.emails("no message id")) == 1


def _backdate(world, item_id, minutes):
    """Make an item look received ``minutes`` ago (clearly before its folder's rule appeared)."""
    store = world.h.sim.store
    with store.lock:
        store.item_by_id(store.mailbox(ALICE), item_id).received = datetime.now(UTC) - timedelta(
            minutes=minutes
        )


def _conflicts(world):
    from sqlalchemy import select

    from foldertrack.state.schema import conflicts

    with world.h.engine.connect() as conn:
        return list(conn.execute(select(conflicts)))


def test_on_leave_delete_only_removes_the_copy_this_mailbox_created(world):
    world.start(world.rules(on_leave="delete"))
    world.file("shared then left", CONTOSO, ALICE, to=[ALICE, BOB], sent_at=SENT)
    world.in_crm("shared then left", regarding=("account", world.ids["contoso"]))
    bobs = world.file("shared then left", FABRIKAM, BOB, to=[ALICE, BOB], sent_at=SENT)
    world.h.wait_for(lambda: _conflicts(world), what="bob's copy recorded as a conflict")
    world.h.sim.mailbox(BOB).move_item(bobs, ELSEWHERE)  # bob did not create the CRM email: it stays
    world.sentinel()
    assert world.email("shared then left")["regarding"] == ("account", world.ids["contoso"])
