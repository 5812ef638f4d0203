"""Each injected fault, and what unmodified exchangelib (and a raw client) sees."""

from __future__ import annotations

import queue
import threading
import time

import pytest
import requests
from exchangelib.errors import (
    ErrorInternalServerTransientError,
    ErrorServerBusy,
    ErrorSubscriptionNotFound,
    ErrorTimeoutExpired,
    MalformedResponseError,
)
from exchangelib.properties import MovedEvent

from foldertrack.simulator import MailSpec
from foldertrack.testing.fixtures_simulator import exchangelib_account
from foldertrack.testing.pytest_plugin import wait_for


@pytest.fixture
def sim(simulator_factory):
    sim = simulator_factory(minute=2.0, heartbeat=0.2)
    mb = sim.add_mailbox("alice@example.com")
    mb.create_folder("Inbox/Contoso")
    return sim


def test_server_busy_carries_backoff_and_exchangelib_retries(sim):
    sim.faults.server_busy(requests=1, backoff_ms=1234)
    strict = exchangelib_account(sim, "alice@example.com", max_connections=1)
    with pytest.raises(ErrorServerBusy) as caught:
        strict.root.refresh()
    assert caught.value.back_off == pytest.approx(1.234)
    sim.add_mailbox("bob@example.com")  # exchangelib caches protocols (and retry policies) per login
    patient = exchangelib_account(sim, "bob@example.com", fail_fast=False)
    patient.root  # noqa: B018
    sim.faults.server_busy(requests=2, backoff_ms=10)
    assert patient.inbox.all().count() == 0  # retried after 10 ms twice, then served
    assert sim.faults.snapshot()["injected"]["busy"] == 3


def test_server_busy_for_a_period(sim):
    sim.faults.server_busy(seconds=60, backoff_ms=5)
    auth = ("alice@example.com", "pw")
    for _ in range(3):
        assert b"ErrorServerBusy" in requests.post(sim.url, data=b"<x/>", auth=auth, timeout=5).content
    sim.faults.clear()
    assert b"ErrorServerBusy" not in requests.post(sim.url, data=b"<x/>", auth=auth, timeout=5).content


def test_http_errors(sim):
    account = exchangelib_account(sim, "alice@example.com")
    account.root  # noqa: B018 - resolve folders before the faults
    sim.faults.http_error(status=503, requests=1)
    with pytest.raises((ErrorInternalServerTransientError, ErrorServerBusy)):  # fail-fast re-raises as busy
        account.inbox.all().count()
    sim.faults.http_error(status=500, requests=1)
    with pytest.raises(MalformedResponseError):
        account.inbox.all().count()
    assert account.inbox.all().count() == 0


def test_connection_reset(sim):
    account = exchangelib_account(sim, "alice@example.com", max_connections=1)
    account.root  # noqa: B018
    sim.faults.reset_connections(requests=1)
    with pytest.raises((ErrorTimeoutExpired, ErrorServerBusy)):
        account.inbox.all().count()
    assert account.inbox.all().count() == 0


def test_slow_responses(sim):
    auth = ("alice@example.com", "pw")
    sim.faults.slow_responses(150)
    started = time.monotonic()
    requests.post(sim.url, data=b"<x/>", auth=auth, timeout=5)
    assert time.monotonic() - started >= 0.15


def _stream_in_background(account, sub_id, timeout=1):
    """Consume a stream on a thread; put each notification (or the exception) on a queue."""
    out: queue.Queue = queue.Queue()

    def run():
        try:
            for note in account.inbox.get_streaming_events(sub_id, connection_timeout=timeout):
                out.put(note)
            out.put("end")
        except Exception as exc:
            out.put(exc)

    thread = threading.Thread(target=run)
    thread.start()
    return out, thread


def test_drop_streams_breaks_the_connection(sim):
    account = exchangelib_account(sim, "alice@example.com")
    sub_id = account.inbox.subscribe_to_streaming()
    out, thread = _stream_in_background(account, sub_id)
    wait_for(lambda: sim.stats.snapshot()["open_streams"] == 1, message="stream open")
    assert sim.faults.drop_streams() == 1
    thread.join(5)
    result = out.get_nowait()
    assert isinstance(result, requests.exceptions.RequestException | ErrorTimeoutExpired | ErrorServerBusy)
    assert sim.subscriptions()[0]["id"] == sub_id  # the subscription itself survives


def test_drop_streams_every(sim):
    account = exchangelib_account(sim, "alice@example.com")
    sub_id = account.inbox.subscribe_to_streaming()
    sim.faults.drop_streams_every(0.2)
    started = time.monotonic()
    out, thread = _stream_in_background(account, sub_id)
    thread.join(5)
    assert time.monotonic() - started < 1.5  # ConnectionTimeout would be 2 s
    assert isinstance(out.get_nowait(), Exception)


def test_stalled_stream_is_silent_until_cleared(sim):
    mb = sim.mailbox("alice@example.com")
    item_id = sim.deliver("alice@example.com", MailSpec(subject="x"))
    account = exchangelib_account(sim, "alice@example.com")
    sub_id = account.inbox.subscribe_to_streaming(event_types=["MovedEvent"])
    sim.faults.stall_streams()
    out, thread = _stream_in_background(account, sub_id, timeout=1)
    wait_for(lambda: sim.stats.snapshot()["open_streams"] == 1, message="stream open")
    mb.move_item(item_id, "Inbox/Contoso")
    with pytest.raises(queue.Empty):
        out.get(timeout=0.4)  # no event, no keep-alive while stalled
    sim.faults.clear()
    note = out.get(timeout=5)
    assert isinstance(note.events[0], MovedEvent)
    thread.join(10)


def test_expire_subscriptions_ends_open_streams(sim):
    account = exchangelib_account(sim, "alice@example.com")
    sub_id = account.inbox.subscribe_to_streaming()
    out, thread = _stream_in_background(account, sub_id)
    wait_for(lambda: sim.stats.snapshot()["open_streams"] == 1, message="stream open")
    assert sim.faults.expire_subscriptions() == 1
    thread.join(5)
    assert isinstance(out.get_nowait(), ErrorSubscriptionNotFound)
    _, watermark = account.inbox.subscribe_to_pull(timeout=5)
    sim.faults.expire_subscriptions()
    with pytest.raises(ErrorSubscriptionNotFound):
        list(account.inbox.get_events(sub_id, watermark))


def test_delay_notifications(sim):
    account = exchangelib_account(sim, "alice@example.com")
    sub_id = account.inbox.subscribe_to_streaming(event_types=["NewMailEvent"])
    sim.faults.delay_notifications(300)
    out, thread = _stream_in_background(account, sub_id)
    wait_for(lambda: sim.stats.snapshot()["open_streams"] == 1, message="stream open")
    delivered = time.monotonic()
    sim.deliver("alice@example.com", MailSpec(subject="late"))
    note = out.get(timeout=5)
    assert time.monotonic() - delivered >= 0.3
    assert note.events
    sim.faults.drop_streams()
    thread.join(5)


def test_control_endpoint(sim):
    response = requests.post(
        sim.control_url, json={"action": "server_busy", "requests": 1, "backoff_ms": 7}, timeout=5
    )
    assert response.status_code == 200 and response.json()["server_busy"] is True
    auth = ("alice@example.com", "pw")
    assert b">7<" in requests.post(sim.url, data=b"<x/>", auth=auth, timeout=5).content
    assert requests.post(sim.control_url, json={"action": "nope"}, timeout=5).status_code == 400
    assert requests.get(sim.control_url, timeout=5).json()["server_busy"] is False
