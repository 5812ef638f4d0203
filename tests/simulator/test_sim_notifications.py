"""Streaming and pull notifications through exchangelib: MovedEvent with old ids, Closed, watermarks."""

from __future__ import annotations

import threading
import time

import pytest
from exchangelib.errors import ErrorSubscriptionNotFound
from exchangelib.properties import (
    CopiedEvent,
    CreatedEvent,
    ModifiedEvent,
    MovedEvent,
    NewMailEvent,
    StatusEvent,
)
from exchangelib.services import GetEvents

from foldertrack.simulator import MailSpec
from foldertrack.testing.fixtures_simulator import exchangelib_account
from foldertrack.testing.pytest_plugin import wait_for


@pytest.fixture
def sim(simulator_factory):
    # one "minute" of ConnectionTimeout lasts 0.5 s here, so streams close quickly
    sim = simulator_factory(minute=0.5, heartbeat=0.1)
    mb = sim.add_mailbox("alice@example.com")
    mb.create_folder("Inbox/Customers/Contoso")
    return sim


def _events(notifications):
    return [e for n in notifications for e in n.events]


def test_streaming_delivery_and_move_with_old_ids(sim):
    mb = sim.mailbox("alice@example.com")
    account = exchangelib_account(sim, "alice@example.com")
    contoso = account.inbox / "Customers" / "Contoso"
    sub_id = account.inbox.subscribe_to_streaming()
    item_id = sim.deliver("alice@example.com", MailSpec(subject="hello"))
    moved_to: list[str] = []

    def act_when_stream_open():
        wait_for(lambda: sim.stats.snapshot()["open_streams"] == 1, message="stream open")
        moved_to.append(mb.move_item(item_id, "Inbox/Customers/Contoso"))

    actor = threading.Thread(target=act_when_stream_open)
    actor.start()
    started = time.monotonic()
    notifications = list(account.inbox.get_streaming_events(sub_id, connection_timeout=1))
    actor.join()
    assert time.monotonic() - started < 5  # ended by ConnectionStatus Closed after one (scaled) minute
    events = _events(notifications)
    kinds = [type(e) for e in events]
    assert kinds[:2] == [CreatedEvent, NewMailEvent]
    assert ModifiedEvent in kinds  # the parent folder's ModifiedEvent for the same delivery
    moved = next(e for e in events if isinstance(e, MovedEvent))
    assert moved.item_id.id == moved_to[0]
    assert moved.old_item_id.id == item_id
    assert moved.parent_folder_id.id == contoso.id
    assert moved.old_parent_folder_id.id == account.inbox.id
    assert all(n.subscription_id == sub_id for n in notifications)


def test_at_most_50_events_per_notification(sim):
    account = exchangelib_account(sim, "alice@example.com")
    sub_id = account.inbox.subscribe_to_streaming(event_types=["NewMailEvent"])
    for n in range(120):
        sim.deliver("alice@example.com", MailSpec(subject=f"burst {n}"))
    notifications = list(account.inbox.get_streaming_events(sub_id, connection_timeout=1))
    sizes = [len(n.events) for n in notifications if n.events]
    assert sum(sizes) == 120 and max(sizes) == 50


def test_subscription_to_all_folders_and_folder_filter(sim):
    mb = sim.mailbox("alice@example.com")
    account = exchangelib_account(sim, "alice@example.com")
    contoso = account.inbox / "Customers" / "Contoso"
    only_contoso = contoso.subscribe_to_streaming()
    everything = account.root.subscribe_to_streaming() if False else None
    from exchangelib.folders import FolderCollection

    everything = FolderCollection(account=account, folders=[account.inbox]).subscribe_to_streaming()
    item_id = sim.deliver("alice@example.com", MailSpec(subject="x"), folder="Junk Email")
    mb.move_item(item_id, "Inbox")
    got = _events(account.inbox.get_streaming_events([only_contoso, everything], connection_timeout=1))
    assert any(isinstance(e, MovedEvent) for e in got)
    assert not any(getattr(e, "parent_folder_id", None) and e.parent_folder_id.id == contoso.id for e in got)


def test_unknown_or_expired_streaming_subscription(sim):
    account = exchangelib_account(sim, "alice@example.com")
    sub_id = account.inbox.subscribe_to_streaming()
    sim.faults.expire_subscriptions()
    with pytest.raises(ErrorSubscriptionNotFound):
        list(account.inbox.get_streaming_events(sub_id, connection_timeout=1))


def _pull_all(account, sub_id, watermark):
    """GetEvents until MoreEvents is false, advancing the watermark (exchangelib's get_events() does not)."""
    svc = GetEvents(account=account)
    notes = []
    while True:
        note = svc.get(subscription_id=sub_id, watermark=watermark)
        notes.append(note)
        watermark = note.events[-1].watermark
        if not note.more_events:
            return notes, watermark


def test_pull_subscription_with_watermarks_and_more_events(sim):
    mb = sim.mailbox("alice@example.com")
    account = exchangelib_account(sim, "alice@example.com")
    sub_id, watermark = account.inbox.subscribe_to_pull(
        event_types=["NewMailEvent", "MovedEvent"], timeout=10
    )
    (status,) = list(account.inbox.get_events(sub_id, watermark))
    assert isinstance(status.events[0], StatusEvent)
    for n in range(60):
        sim.deliver("alice@example.com", MailSpec(subject=f"p{n}"))
    notes, last = _pull_all(account, sub_id, watermark)
    assert [n.more_events for n in notes] == [True, False]
    assert len(_events(notes)) == 60
    mb.move_item(mb.item_ids("Inbox")[0], "Inbox/Customers/Contoso")
    notes, _ = _pull_all(account, sub_id, last)
    assert [type(e) for e in _events(notes)] == [MovedEvent]
    assert notes[0].previous_watermark == last
    account.inbox.unsubscribe(sub_id)
    with pytest.raises(ErrorSubscriptionNotFound):
        list(account.inbox.get_events(sub_id, last))


def test_pull_subscription_times_out(sim):
    account = exchangelib_account(sim, "alice@example.com")
    sub_id, watermark = account.inbox.subscribe_to_pull(timeout=1)  # 1 scaled minute = 0.5 s
    assert [s["id"] for s in sim.subscriptions()] == [sub_id]
    wait_for(lambda: sim.subscriptions() == [], timeout=5, message="pull subscription expiry")
    with pytest.raises(ErrorSubscriptionNotFound):
        list(account.inbox.get_events(sub_id, watermark))


def test_copy_and_folder_events(sim):
    mb = sim.mailbox("alice@example.com")
    account = exchangelib_account(sim, "alice@example.com")
    item_id = sim.deliver("alice@example.com", MailSpec(subject="c"))
    from exchangelib.folders import FolderCollection

    everywhere = FolderCollection(account=account, folders=[account.inbox]).subscribe_to_streaming()
    copy_id = mb.copy_item(item_id, "Inbox/Customers/Contoso")
    folder_id = mb.folder_id("Inbox/Customers/Contoso")
    mb.move_folder(folder_id, "Inbox")
    mb.rename_folder(folder_id, "Contoso Ltd")  # now a child of the Inbox: its ModifiedEvent is in scope
    events = _events(account.inbox.get_streaming_events(everywhere, connection_timeout=1))
    copied = next(e for e in events if isinstance(e, CopiedEvent))
    assert (copied.item_id.id, copied.old_item_id.id) == (copy_id, item_id)
    folder_moves = [e for e in events if isinstance(e, MovedEvent) and e.folder_id is not None]
    assert folder_moves[0].folder_id.id == folder_id == folder_moves[0].old_folder_id.id
    assert any(isinstance(e, ModifiedEvent) and e.folder_id and e.folder_id.id == folder_id for e in events)
