"""The dispatcher's ordering promises, with a real worker thread and a recording handler."""

from __future__ import annotations

import threading

from foldertrack.testing.harness import wait_until
from foldertrack.watch.dispatcher import Dispatcher
from foldertrack.watch.events import FolderChanged


def _recording_dispatcher():
    ran: list[tuple[str, list[str]]] = []
    gate = threading.Event()

    def handler(key, reasons, first_trigger):
        if key[2] == "blocker":
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
