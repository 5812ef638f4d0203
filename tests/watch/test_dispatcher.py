"""The dispatcher's ordering promises, with a real worker thread and a recording handler."""

from __future__ import annotations

import random
import threading

from foldertrack.retry import Backoff
from foldertrack.testing.harness import wait_until
from foldertrack.watch.dispatcher import Dispatcher, Reschedule
from foldertrack.watch.events import FolderChanged, HierarchyChanged, SubscribeMailbox


def _recording_dispatcher():
    ran: list[tuple[str, list[str]]] = []
    gate = threading.Event()

    def handler(key, reasons, first_trigger):
        if key[-1] == "blocker":
            gate.wait(10)
        ran.append((key[1], list(reasons)))

    return Dispatcher(handler, workers=1, debounce=0.0), ran, gate


def test_triggered_work_runs_before_queued_background_work():
    dispatcher, ran, gate = _recording_dispatcher()
    dispatcher.start()
    try:
        dispatcher.put(FolderChanged("blocker@x", "blocker", "event"))
        wait_until(lambda: not dispatcher.idle() and dispatcher.backlog().get("blocker@x"), 5, "blocker")
        for n in range(5):
            dispatcher.put(FolderChanged(f"m{n}@x", "f", "safety-net"))
        dispatcher.put(FolderChanged("moved@x", "f", "event"))
        gate.set()
        wait_until(lambda: len(ran) == 7, 5, "all work done")
    finally:
        dispatcher.stop()
    assert ran[1] == ("moved@x", ["event"]), ran


def test_an_event_promotes_work_queued_as_background():
    dispatcher, ran, gate = _recording_dispatcher()
    dispatcher.start()
    try:
        dispatcher.put(FolderChanged("blocker@x", "blocker", "event"))
        wait_until(lambda: dispatcher.backlog().get("blocker@x"), 5, "blocker")
        for n in range(3):
            dispatcher.put(FolderChanged(f"m{n}@x", "f", "poll"))
        dispatcher.put(FolderChanged("m2@x", "f", "event"))  # the same folder, now with a notification
        gate.set()
        wait_until(lambda: len(ran) == 4, 5, "all work done")
    finally:
        dispatcher.stop()
    assert ran[1] == ("m2@x", ["poll", "event"]), ran
    assert sorted(m for m, _ in ran) == ["blocker@x", "m0@x", "m1@x", "m2@x"]  # each once


def test_lease_acquired_work_waits_behind_live_events():
    """A takeover's resolve and the work it queues (catch-ups, subscription) are background work: an event in
    a mailbox already watched, queued after them, is taken first; an event in the taken-over mailbox too."""
    dispatcher, ran, gate = _recording_dispatcher()
    dispatcher.start()
    try:
        dispatcher.put(FolderChanged("blocker@x", "blocker", "event"))
        wait_until(lambda: dispatcher._running, 5, "blocker running")
        for n in range(3):
            dispatcher.put(HierarchyChanged(f"new{n}@x", "lease-acquired"), delay=0.0)
        dispatcher.put(FolderChanged("new0@x", "f", "backfill"))  # what its resolve queues: background too
        dispatcher.put(SubscribeMailbox("new0@x", "start"))
        dispatcher.put(FolderChanged("old@x", "f", "event"))
        dispatcher.put(FolderChanged("new1@x", "g", "event"))  # a notification in a taken-over mailbox
        gate.set()
        wait_until(lambda: len(ran) == 8, 5, "all work done")
    finally:
        dispatcher.stop()
    assert ran[1:3] == [("old@x", ["event"]), ("new1@x", ["event"])], ran
    assert ran[3:] == [  # then the takeovers: subscriptions first, then in the order they came due
        ("new0@x", ["start"]),
        ("new0@x", ["lease-acquired"]),
        ("new1@x", ["lease-acquired"]),
        ("new2@x", ["lease-acquired"]),
        ("new0@x", ["backfill"]),
    ], ran


def test_a_takeover_ends_when_its_mailbox_has_no_work_left():
    dispatcher = Dispatcher(lambda key, reasons, first: None, workers=1, debounce=0.0)
    dispatcher.put(HierarchyChanged("new@x", "lease-acquired"), delay=0.0)
    dispatcher.put(FolderChanged("new@x", "f", "resolved"))
    assert dispatcher._queued_in[("sync", "new@x", "f")][0] is True  # background while taken over
    dispatcher.start()
    try:
        wait_until(dispatcher.idle, 5, "takeover done")
        dispatcher.put(FolderChanged("new@x", "f", "resolved"))
        queued = dispatcher._queued_in.get(("sync", "new@x", "f"))
        assert queued is None or queued[0] is False  # ordinary work again
        wait_until(dispatcher.idle, 5, "done")
    finally:
        dispatcher.stop()


def _takeover_order(reason: str) -> list[tuple[str, list[str]]]:
    """What one worker runs when three mailboxes are taken over with ``reason`` and each resolve queues the
    subscription, whose success queues the mailbox's catch-up (as watch/subscribing.py does)."""
    ran: list[tuple[str, list[str]]] = []
    dispatcher: Dispatcher

    def handler(key, reasons, first_trigger):
        ran.append(("/".join(key[:1] + key[2:]) + " " + key[1], list(reasons)))
        if key[0] == "hierarchy" and reason in reasons:  # the resolve
            dispatcher.put(SubscribeMailbox(key[1], "resolved"))
        elif key[0] == "subscribe":
            dispatcher.put(HierarchyChanged(key[1], "resubscribed"), delay=0.0)
            for folder in ("f", "g"):
                dispatcher.put(FolderChanged(key[1], folder, "resubscribed"))

    dispatcher = Dispatcher(handler, workers=1, debounce=0.0)
    for n in range(3):
        dispatcher.put(HierarchyChanged(f"m{n}@x", reason), delay=0.0)
    dispatcher.start()
    try:
        wait_until(lambda: dispatcher.idle() and len(ran) == 15, 5, "takeover done")
    finally:
        dispatcher.stop()
    return ran


def test_a_resumed_takeover_catches_each_mailbox_up_right_after_its_subscription():
    """Mails moved while nobody watched a mailbox are found by the catch-up its subscription queues: in a
    takeover of mailboxes watched before (cursors committed: the catch-ups read only what changed), that
    catch-up goes before the next mailbox's resolve, so the first mailboxes' mails are in the CRM within
    seconds instead of after every mailbox is subscribed."""
    ran = [name for name, _ in _takeover_order("lease-resumed")]
    assert ran == [
        step
        for n in range(3)
        for step in (
            f"hierarchy m{n}@x",
            f"subscribe m{n}@x",
            f"hierarchy m{n}@x",
            f"sync/f m{n}@x",
            f"sync/g m{n}@x",
        )
    ], ran


def test_a_first_claim_subscribes_every_mailbox_before_the_catch_ups():
    """A new fleet's first catch-ups are backfills (every mail already in the folders): subscriptions first,
    so every mailbox is live before the long reads start."""
    ran = [name for name, _ in _takeover_order("lease-acquired")]
    assert ran[:6] == [f"{kind} m{n}@x" for n in range(3) for kind in ("hierarchy", "subscribe")], ran
    assert sorted(ran[6:]) == sorted(
        f"{kind} m{n}@x" for n in range(3) for kind in ("hierarchy", "sync/f", "sync/g")
    )


def _walk(dispatcher: Dispatcher) -> dict[str, int]:
    """The backlog as the old code computed it: a walk over everything queued or running."""
    counts: dict[str, int] = {}
    for key in set(dispatcher._due) | dispatcher._running:
        counts[key[1]] = counts.get(key[1], 0) + 1
    return counts


def test_the_backlog_count_equals_a_walk_after_random_put_take_and_reschedule():
    rng = random.Random(12)
    outcomes = threading.Lock()
    changed: list[str] = []

    def handler(key, reasons, first_trigger):
        with outcomes:
            roll = rng.random()
        if roll < 0.25:
            raise Reschedule(rng.random() * 0.01, block_mailbox=0.005 if roll < 0.05 else None)
        if roll < 0.3:
            raise RuntimeError("a bad event")  # retried with back-off

    dispatcher = Dispatcher(
        handler,
        workers=3,
        debounce=0.001,
        backoff=Backoff(initial=0.001, maximum=0.01, jitter=0.001),
        on_backlog=changed.append,
    )
    mailboxes = [f"m{n}@x" for n in range(12)]
    dispatcher.start()
    try:
        for step in range(600):
            mailbox = rng.choice(mailboxes)
            kind = rng.random()
            if kind < 0.6:
                dispatcher.put(
                    FolderChanged(mailbox, rng.choice("abc"), rng.choice(["event", "poll", "safety-net"]))
                )
            elif kind < 0.8:
                dispatcher.put(
                    HierarchyChanged(
                        mailbox, rng.choice(["folder-event", "lease-acquired", "lease-resumed"])
                    ),
                    delay=0.0,
                )
            else:
                dispatcher.put(SubscribeMailbox(mailbox, "start"))
            if step % 7 == 0:
                with dispatcher._cond:  # a consistent moment: no worker between two changes
                    walked = _walk(dispatcher)
                    assert dispatcher.backlog() == walked
                    assert dispatcher.backlog_total() == sum(walked.values())
                    assert all(dispatcher.backlog_of(m) == walked.get(m, 0) for m in mailboxes)
        wait_until(dispatcher.idle, 20, "all work done")
    finally:
        dispatcher.stop()
    assert dispatcher.backlog() == {} and dispatcher.backlog_total() == 0
    assert dispatcher._takeovers == {}
    assert set(changed) <= set(mailboxes) and changed


def test_due_subscriptions_go_before_queued_catch_ups():
    """Streaming has no watermark: catch-ups must follow the subscription, so one queued before it would run
    twice. Subscriptions are taken first (every mailbox is live sooner at start-up), and their catch-ups then
    merge with the queued ones."""
    dispatcher, ran, gate = _recording_dispatcher()
    dispatcher.start()
    try:
        dispatcher.put(FolderChanged("blocker@x", "blocker", "event"))
        wait_until(lambda: dispatcher._running, 5, "blocker running")
        for folder in ("a", "b"):
            dispatcher.put(FolderChanged("new@x", folder, "backfill"))
        dispatcher.put(FolderChanged("other@x", "a", "backfill"))
        dispatcher.put(SubscribeMailbox("new@x", "start"))
        dispatcher.put(SubscribeMailbox("other@x", "start"))
        gate.set()
        wait_until(lambda: len(ran) == 6, 5, "all work done")
    finally:
        dispatcher.stop()
    assert ran[1:3] == [("new@x", ["start"]), ("other@x", ["start"])], ran


def test_wait_idle_is_woken_by_the_end_of_the_last_work():
    """Tests and the demo wait for a quiet dispatcher: the end of the last piece of work wakes the waiter, so
    the short quiet moments between a poller's rounds are seen (looking every 10 ms could miss them all on a
    loaded machine)."""
    dispatcher, ran, gate = _recording_dispatcher()
    dispatcher.start()
    try:
        dispatcher.put(FolderChanged("blocker@x", "blocker", "event"))
        dispatcher.put(FolderChanged("other@x", "f", "event"))
        assert dispatcher.wait_idle(0.1) is False  # the blocker runs
        releaser = threading.Timer(0.05, gate.set)
        releaser.start()
        assert dispatcher.wait_idle(5) is True
        assert len(ran) == 2 and dispatcher.idle()
        assert dispatcher.wait_idle(0) is True  # idle already: no wait
    finally:
        dispatcher.stop()
