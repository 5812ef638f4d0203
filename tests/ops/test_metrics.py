"""Prometheus metrics and /healthz, end to end: simulator + watcher + PrometheusObserver + HTTP scrape."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from types import SimpleNamespace

import pytest
from prometheus_client.parser import text_string_to_metric_families

from foldertrack.ops.health import health_problem
from foldertrack.ops.listener import MetricsServer, parse_address, start_metrics
from foldertrack.ops.metrics import PrometheusObserver
from foldertrack.simulator import MailSpec
from foldertrack.sync import SyncResult
from foldertrack.testing.harness import Harness, options_for_tests, wait_until
from foldertrack.watch.mailbox import MailboxState

ALICE = "alice@example.com"
RECORDS = """type,id,name,number,emails
account,acc-contoso,Contoso,C-100,info@contoso.com
account,acc-fabrikam,Fabrikam,F-200,
"""
RULES = f"""
mailboxes:
  - addresses: [{ALICE}]
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/Customers/Fabrikam: account:acc-fabrikam
"""


def fetch(url: str) -> tuple[int, str]:
    """(status, body) of a GET; an HTTP error status is an answer too."""
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, exc.read().decode()


def samples(server: MetricsServer) -> dict[tuple[str, frozenset], float]:
    """Every sample of a scrape: (name, labels) → value."""
    status, text = fetch(server.url + "/metrics")
    assert status == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(scrape: dict, name: str, **labels: str) -> float | None:
    return scrape.get((name, frozenset(labels.items())))


@pytest.fixture
def harness(tmp_path):
    # the simulator's keep-alives come every 30 s: no stall detection within a test, so the stream stays up
    with Harness(tmp_path, **options_for_tests(stream_stall_timeout=120.0)) as h:
        h.import_records(RECORDS)
        mailbox = h.add_mailbox(ALICE)
        for path in ("Inbox/Customers/Contoso", "Inbox/Customers/Fabrikam", "Inbox/Elsewhere"):
            mailbox.create_folder(path)
        h.write_rules(RULES)
        yield h


def _mail(subject: str) -> MailSpec:
    return MailSpec(subject=subject, sender="dana@contoso.com", to=[ALICE], body=f"body of {subject}")


def test_scrape_counts_tracked_mails_latency_modes_and_health(harness):
    watcher = harness.start_watcher(observer=PrometheusObserver())
    server = start_metrics("127.0.0.1:0", watcher)
    try:
        harness.settle()  # the folders' first syncs (backfill) are done: what follows are live moves
        mailbox = harness.sim.mailbox(ALICE)
        first = mailbox.move_item(harness.sim.deliver(ALICE, _mail("one")), "Inbox/Customers/Contoso")
        mailbox.move_item(harness.sim.deliver(ALICE, _mail("two")), "Inbox/Customers/Contoso")
        harness.wait_tracked("one", regarding_id="acc-contoso")
        harness.wait_tracked("two", regarding_id="acc-contoso")
        wait_until(
            lambda: (value(samples(server), "foldertrack_events_received_total") or 0) >= 2,
            what="the moves' notifications counted",
        )
        harness.sim.faults.server_busy(requests=1, backoff_ms=50)  # the next sync is throttled once
        mailbox.move_item(first, "Inbox/Customers/Fabrikam")
        harness.wait_tracked("one", regarding_id="acc-fabrikam")

        # the observer hears of a sync right after its commit: wait for the scrape, not the database
        scrape = wait_until(
            lambda: (
                (s := samples(server)) and value(s, "foldertrack_items_total", outcome="relinked") == 1 and s
            ),
            what="the relink to show in /metrics",
        )
        assert value(scrape, "foldertrack_items_total", outcome="tracked") == 2
        assert value(scrape, "foldertrack_items_total", outcome="dead_lettered") == 0
        assert value(scrape, "foldertrack_activity_latency_seconds_count") == 3
        assert 0 < value(scrape, "foldertrack_activity_latency_seconds_sum") < 3 * 5.0
        assert value(scrape, "foldertrack_syncs_total", outcome="committed") >= 2
        assert value(scrape, "foldertrack_sync_duration_seconds_count") >= 2
        # the throttled request is the sync's, unless a stream re-issue happened to take it first
        busy = {
            dict(labels)["operation"]: v
            for (name, labels), v in scrape.items()
            if name == "foldertrack_errors_total" and dict(labels)["code"] == "ErrorServerBusy"
        }
        assert sum(busy.values()) == 1 and set(busy) <= {"sync", "stream"}
        assert value(scrape, "foldertrack_syncs_total", outcome="failed") == busy.get("sync", 0)
        assert value(scrape, "foldertrack_mailboxes", mode="streaming") == 1
        assert value(scrape, "foldertrack_mailboxes", mode="polling") == 0
        assert value(scrape, "foldertrack_tracked_folders") == 2
        assert value(scrape, "foldertrack_streams_connected") == 1
        assert value(scrape, "foldertrack_ready") == 1
        assert value(scrape, "foldertrack_backlog") is not None
        # bounded cardinality: nothing is labelled by mailbox or folder
        assert not any(dict(labels).keys() & {"mailbox", "folder"} for _, labels in scrape)
        assert ALICE not in fetch(server.url + "/metrics")[1]

        assert fetch(server.url + "/healthz") == (200, "ok\n")
        assert fetch(server.url + "/nothing-here")[0] == 404
    finally:
        server.stop()


class WorkerKiller(BaseException):
    """Escapes every ``except Exception`` in the worker: the thread really dies, as after a bug."""


class KillingObserver(PrometheusObserver):
    def __init__(self) -> None:
        super().__init__()
        self.armed = threading.Event()

    def sync_finished(self, mailbox, folder_path, seconds, result: SyncResult, trigger_age) -> None:
        super().sync_finished(mailbox, folder_path, seconds, result, trigger_age)
        if self.armed.is_set():
            self.armed.clear()
            raise WorkerKiller("a bug that no handler catches")


def test_healthz_turns_503_with_the_reason_when_a_worker_thread_dies(harness, monkeypatch):
    died: list[BaseException] = []
    monkeypatch.setattr(threading, "excepthook", lambda args: died.append(args.exc_value))
    observer = KillingObserver()
    watcher = harness.start_watcher(observer=observer)
    with MetricsServer("127.0.0.1", 0, watcher) as server:
        assert fetch(server.url + "/healthz") == (200, "ok\n")
        observer.armed.set()
        harness.sim.deliver(ALICE, _mail("fatal"), folder="Inbox/Customers/Contoso")
        answer = wait_until(
            lambda: (got := fetch(server.url + "/healthz"))[0] == 503 and got,
            what="/healthz to report the dead worker",
        )
        assert answer == (503, "a sync worker thread died\n")
        assert [type(e) for e in died] == [WorkerKiller]
        assert fetch(server.url + "/metrics")[0] == 200  # metrics keep working for the post-mortem


def _watcher_stub(*, ready=True, problem=None, modes=("streaming",)):
    states = [
        MailboxState(
            mailbox=f"m{i}@example.com",
            mode=mode,
            resolved=mode != "starting",
            subscription_id="sub" if mode == "streaming" else None,
            watch_ids=frozenset({"f"}),
            last_error="ErrorNonExistentMailbox: no such mailbox" if mode in ("starting", "error") else None,
        )
        for i, mode in enumerate(modes)
    ]
    event = threading.Event()
    if ready:
        event.set()
    return SimpleNamespace(check=lambda: problem, ready=event, mailbox_states=lambda: states)


def test_health_reasons():
    assert health_problem(_watcher_stub()) is None
    assert health_problem(_watcher_stub(modes=("polling",))) is None  # its stream fails: still tracking
    assert health_problem(_watcher_stub(modes=("polling", "error"))) == (  # partly working: not healthy
        "degraded: 1 of 2 mailbox(es): m1@example.com (ErrorNonExistentMailbox: no such mailbox) in error"
    )
    assert health_problem(_watcher_stub(problem="the timer thread died")) == "the timer thread died"
    assert health_problem(_watcher_stub(ready=False, modes=("streaming", "starting"))) == (
        "starting: 1 of 2 mailbox(es): m1@example.com (ErrorNonExistentMailbox: no such mailbox)"
        " not subscribed or polling yet"
    )
    assert health_problem(_watcher_stub(modes=("error",) * 5)).startswith(
        "every mailbox is in error: 5 of 5 mailbox(es): m0@example.com ("
    )
    assert health_problem(_watcher_stub(modes=("error",) * 5)).endswith(" and 2 more")
    stub = _watcher_stub(modes=("error",))
    stub.mailbox_states()[0].last_error = "MalformedResponseError: Code: 500\nheaders: " + "x" * 500
    (line,) = health_problem(stub).splitlines()
    assert line.startswith("every mailbox is in error: 1 of 1 mailbox(es): m0@example.com (MalformedResponse")
    assert line.endswith("…)") and len(line) < 250


def test_server_binds_loopback_and_stops_by_itself():
    watcher = SimpleNamespace(
        observer=None,
        check=lambda: None,
        ready=threading.Event(),
        mailbox_states=list,
        dispatcher=SimpleNamespace(backlog=dict),
        stream_groups=list,
    )
    server = start_metrics("127.0.0.1:0", watcher)  # installs a PrometheusObserver on the watcher
    try:
        assert isinstance(watcher.observer, PrometheusObserver)
        assert server.url.startswith("http://127.0.0.1:") and server.port != 0
        status, body = fetch(server.url + "/healthz")
        assert (status, body) == (503, "starting: 0 of 0 mailbox(es) not subscribed or polling yet\n")
        watcher.ready.set()
        assert fetch(server.url + "/healthz") == (200, "ok\n")
        watcher.observer.error("alice@example.com", "subscribe", "ErrorAccessDenied")
        scrape = samples(server)
        assert value(scrape, "foldertrack_errors_total", operation="subscribe", code="ErrorAccessDenied") == 1
        assert value(scrape, "foldertrack_mailboxes", mode="streaming") == 0
    finally:
        server.stop()
    server.stop()  # idempotent
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url + "/healthz", timeout=2)


@pytest.mark.parametrize(
    ("address", "expected"),
    [
        ("127.0.0.1:9464", ("127.0.0.1", 9464)),
        ("[::1]:9464", ("::1", 9464)),
        ("localhost:0", ("localhost", 0)),
    ],
)
def test_parse_address(address, expected):
    assert parse_address(address) == expected


@pytest.mark.parametrize("address", ["9464", ":9464", "127.0.0.1:", "127.0.0.1:http", "host:70000"])
def test_parse_address_rejects(address):
    with pytest.raises(ValueError, match="HOST:PORT"):
        parse_address(address)
