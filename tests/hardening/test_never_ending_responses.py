"""Issue 10 item 2: a response that never ends must not wedge a mailbox.

The simulator trickles the answer to one mail's GetItem (the right Content-Length, then a byte every half
second), so a read timeout between bytes never fires. Every request has a total deadline; work of one
mailbox without progress is marked stuck in ``status`` and its request cut; and when cutting cannot free
it, the service watchdog pings stop although other mailboxes keep working.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from foldertrack.exchange import transport
from foldertrack.exchange.connection import ExchangeConnector, ExchangeSettings
from foldertrack.ops.notify import Notifier
from foldertrack.ops.status import collect_status
from foldertrack.ops.supervisor import Supervisor
from foldertrack.sinks.sql import SqlActivitySink
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, Harness, options_for_tests
from foldertrack.watch.daemon import Watcher, WatchOptions
from tests.hardening.conftest import ALICE, BOB, file, mail, prepare
from tests.ops.test_notify import NotifyListener


@pytest.fixture
def listener(tmp_path) -> Iterator[NotifyListener]:
    box = NotifyListener(str(tmp_path / "notify.sock"))
    yield box
    box.close()


@pytest.fixture
def two_mailboxes(tmp_path) -> Iterator[Harness]:
    with Harness(tmp_path, **options_for_tests()) as h:
        prepare(h, (ALICE, BOB))
        yield h
    transport.set_limits(transport.Limits().deadline, transport.Limits().max_bytes)


@contextlib.contextmanager
def supervised(
    h: Harness, listener: NotifyListener, *, stuck_timeout: float, request_timeout: float, sink=None
) -> Iterator[Supervisor]:
    """A watcher under the real supervisor main loop, pinging a stand-in for systemd every 0.1 s."""
    options = WatchOptions(rules_dir=h.rules_dir, **options_for_tests(), stuck_timeout=stuck_timeout)
    settings = ExchangeSettings(
        endpoint=h.sim.url,
        auth="basic",
        username=SERVICE_ACCOUNT,
        password=SERVICE_PASSWORD,
        request_timeout=request_timeout,
    )
    connector = ExchangeConnector(settings, max_connections=options.workers + 8)
    watcher = Watcher(options, h.engine, connector, sink or SqlActivitySink(h.engine))
    supervisor = Supervisor(watcher, Notifier({"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000"}))
    result: list[int] = []
    loop = threading.Thread(target=lambda: result.append(supervisor.run()), name="main-loop")
    loop.start()
    try:
        listener.wait_for("READY", "1", timeout=30)
        yield supervisor
    finally:
        supervisor.request_stop()
        loop.join(20)
    assert result == [0]


def _alice(h: Harness) -> dict:
    return next(m for m in collect_status(h.engine)["mailboxes"] if m["mailbox"] == ALICE)


def test_a_trickled_answer_is_cut_at_the_request_deadline(two_mailboxes):
    h = two_mailboxes
    h.start_watcher()
    transport.set_limits(1.5, transport.Limits().max_bytes)
    h.sim.faults.responses.add("TRICKLE", "trickle", times=2, interval=0.5)
    file(h, mail("TRICKLE slowly"))
    file(h, mail("bob meanwhile", to=[BOB]), mailbox=BOB)
    h.wait_tracked("bob meanwhile", timeout=5)  # the other mailbox never waits for Alice's
    h.wait_tracked("TRICKLE slowly", timeout=20, regarding_id="acc-contoso")
    assert h.sim.faults.responses.spoiled["trickle"] == 2


def test_stuck_work_is_shown_cut_and_retried(two_mailboxes, listener):
    h = two_mailboxes
    with supervised(h, listener, stuck_timeout=1.0, request_timeout=600) as supervisor:
        h.sim.faults.responses.add("TRICKLE", "trickle", times=1, interval=0.5)
        file(h, mail("TRICKLE stuck"))
        stuck = h.wait_for(lambda: _alice(h)["last_error"] or "", 15, "alice marked stuck")
        h.wait_for(lambda: (_alice(h)["last_error"] or "").startswith("stuck:"), 15, "alice stuck in status")
        assert _alice(h)["mode"] == "error", stuck
        h.wait_tracked("TRICKLE stuck", timeout=20, regarding_id="acc-contoso")  # cut, retried, tracked
        h.wait_for(lambda: _alice(h)["mode"] == "streaming", 15, "alice streaming again")
        assert supervisor.problem is None  # cutting the request freed the worker: no restart needed
        h.wait_for(lambda: listener.pings() and listener.pings()[-1] > 0)


def test_one_stuck_mailbox_stops_the_watchdog_pings_while_others_work(two_mailboxes, listener):
    """Work that waits for no request (here: resolving one sender's address hangs, as a lookup without a
    timeout would) cannot be freed by cutting a connection: only a restart helps, so the pings stop."""
    h = two_mailboxes
    release = threading.Event()
    with supervised(h, listener, stuck_timeout=0.5, request_timeout=600) as supervisor:
        resolve = supervisor.watcher.sync_context.resolve_address

        def hanging(address: str):
            if address == "blocker@contoso.com":
                release.wait(30)
            return resolve(address)

        supervisor.watcher.sync_context.resolve_address = hanging
        file(h, mail("BLOCK the worker", sender="blocker@contoso.com"))
        last_ping = listener.wait_quiet(1.0)  # 10 intervals without a ping
        file(h, mail("bob is fine", to=[BOB]), mailbox=BOB)
        h.wait_tracked("bob is fine", timeout=5)  # the others progress: only one mailbox is stuck
        assert supervisor.problem and ALICE in supervisor.problem
        listener.wait_status("stuck")
        release.set()
        resumed = listener.wait_for("WATCHDOG", "1", after=last_ping, timeout=15)
        h.wait_tracked("BLOCK the worker", timeout=10)
    assert resumed.at - last_ping > 1.0
