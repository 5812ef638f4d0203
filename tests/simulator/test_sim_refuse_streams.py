"""``sim.faults.refuse_streams``: subscribing works, every GetStreamingEvents gets an HTTP error."""

from __future__ import annotations

import pytest
import requests
from exchangelib.errors import ErrorInternalServerTransientError, ErrorServerBusy

from foldertrack.testing.fixtures_simulator import exchangelib_account


@pytest.fixture
def sim(simulator_factory):
    sim = simulator_factory(minute=2.0, heartbeat=0.2)
    sim.add_mailbox("alice@example.com")
    return sim


def _first_notification(account, sub_id):
    return next(iter(account.inbox.get_streaming_events(sub_id, connection_timeout=1)), None)


def test_refused_streams_get_http_503_until_cleared(sim):
    account = exchangelib_account(sim, "alice@example.com")
    sub_id = account.inbox.subscribe_to_streaming()
    sim.faults.refuse_streams()
    with pytest.raises((ErrorInternalServerTransientError, ErrorServerBusy)):  # fail-fast re-raises as busy
        _first_notification(account, sub_id)
    assert account.inbox.all().count() == 0  # other operations are served
    snapshot = sim.faults.snapshot()
    assert snapshot["streams_refused"] == 503 and snapshot["injected"]["refuse_streams"] == 1
    assert sim.subscriptions()[0]["id"] == sub_id  # the subscription itself survives
    sim.faults.clear()
    assert sim.faults.snapshot()["streams_refused"] == 0
    _first_notification(account, sub_id)  # a stream opens again (ends with Closed after the timeout)


def test_refuse_streams_from_the_control_endpoint(sim):
    response = requests.post(sim.control_url, json={"action": "refuse_streams", "status": 502}, timeout=5)
    assert response.status_code == 200 and response.json()["streams_refused"] == 502
