"""Service protection and failures on demand: 429 + Retry-After, 5xx, slow responses, outages, token expiry,
the per-user concurrency limit, and the loopback control endpoint."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import msal
import pytest
import requests


def test_throttle_answers_429_with_retry_after_then_recovers(dataverse):
    dataverse.crm.faults.throttle(requests=2, retry_after=7)
    for _ in range(2):
        response = dataverse.session.post(dataverse.url("emails"), json={"subject": "x"})
        assert response.status_code == 429
        assert response.headers["Retry-After"] == "7"
        assert response.json()["error"] == {
            "code": "0x80072322",
            "message": "Number of requests exceeded the limit of 6000 over time window of 300 seconds.",
        }
    assert dataverse.crm.emails() == []
    assert dataverse.session.post(dataverse.url("emails"), json={"subject": "x"}).status_code == 204
    assert dataverse.crm.faults.injected["throttle"] == 2


def test_throttle_for_a_time_window(dataverse):
    dataverse.crm.faults.throttle(seconds=30, retry_after=0)
    assert dataverse.session.get(dataverse.url("WhoAmI")).status_code == 429
    assert dataverse.session.get(dataverse.url("WhoAmI")).status_code == 429
    dataverse.crm.faults.clear()
    assert dataverse.session.get(dataverse.url("WhoAmI")).status_code == 200


@pytest.mark.parametrize("status", [500, 502, 503])
def test_http_errors(dataverse, status):
    dataverse.crm.faults.http_error(status, requests=1)
    response = dataverse.session.get(dataverse.url("WhoAmI"))
    assert response.status_code == status
    assert response.json()["error"]["code"] == "0x80040216"
    assert dataverse.session.get(dataverse.url("WhoAmI")).status_code == 200


def test_slow_responses(dataverse):
    dataverse.crm.faults.slow_responses(300)
    started = time.monotonic()
    assert dataverse.session.get(dataverse.url("WhoAmI")).status_code == 200
    assert time.monotonic() - started >= 0.3
    dataverse.crm.faults.slow_responses(0)


def test_outage_resets_connections_then_recovers(dataverse):
    dataverse.crm.faults.outage(True)
    with pytest.raises(requests.exceptions.ConnectionError):
        dataverse.session.post(dataverse.url("emails"), json={"subject": "x"})
    # the token endpoint (Entra ID) is not part of the CRM outage
    assert dataverse.token()
    dataverse.crm.faults.outage(False)
    assert dataverse.session.post(dataverse.url("emails"), json={"subject": "x"}).status_code == 204
    assert len(dataverse.crm.emails()) == 1


def test_outage_as_503(dataverse):
    dataverse.crm.faults.outage(True, mode="503")
    response = dataverse.session.get(dataverse.url("WhoAmI"))
    assert response.status_code == 503 and response.headers["Retry-After"] == "1"
    dataverse.crm.faults.outage(False)
    assert dataverse.session.get(dataverse.url("WhoAmI")).status_code == 200


def test_expire_tokens_fault(dataverse):
    assert dataverse.crm.faults.expire_tokens() >= 1
    assert dataverse.session.get(dataverse.url("WhoAmI")).status_code == 401
    dataverse.session.headers["Authorization"] = f"Bearer {dataverse.token()}"
    assert dataverse.session.get(dataverse.url("WhoAmI")).status_code == 200


def test_concurrency_limit_per_user(dataverse):
    faults = dataverse.crm.faults
    faults.set_concurrency_limit(2)
    faults.slow_responses(400)
    token = dataverse.token()

    def call(_: int) -> requests.Response:
        with dataverse.new_session(token) as session:
            return session.get(dataverse.url("WhoAmI"))

    with ThreadPoolExecutor(max_workers=6) as pool:
        responses = list(pool.map(call, range(6)))
    statuses = sorted(r.status_code for r in responses)
    assert statuses.count(200) >= 2 and statuses.count(429) >= 1
    refused = next(r for r in responses if r.status_code == 429)
    assert refused.json()["error"] == {
        "code": "0x80072326",
        "message": "Number of concurrent requests exceeded the limit of 2.",
    }
    assert refused.headers["Retry-After"]
    assert faults.in_flight.peak == 2
    faults.clear()
    assert faults.concurrency_limit == 52


def test_control_endpoint_targets_the_crm(dataverse):
    sim = dataverse.sim
    response = requests.post(
        sim.control_url,
        json={"target": "crm", "action": "throttle", "requests": 1, "retry_after": 3},
        timeout=10,
    )
    assert response.status_code == 200 and response.json()["throttle"] is True
    assert dataverse.session.get(dataverse.url("WhoAmI")).headers["Retry-After"] == "3"
    snapshot = requests.get(sim.control_url, params={"target": "crm"}, timeout=10).json()
    assert snapshot["injected"]["throttle"] == 1 and snapshot["throttle"] is False
    bad = requests.post(sim.control_url, json={"target": "crm", "action": "nope"}, timeout=10)
    assert bad.status_code == 400 and "unknown crm action" in bad.json()["error"]
    # without "target" the request still reaches the EWS faults, unchanged
    ews = requests.post(sim.control_url, json={"action": "server_busy", "requests": 1}, timeout=10)
    assert ews.status_code == 200 and ews.json()["server_busy"] is True
    requests.post(sim.control_url, json={"action": "clear"}, timeout=10).raise_for_status()
    assert "server_busy" in requests.get(sim.control_url, timeout=10).json()


def test_request_count_limit_per_user(dataverse):
    faults = dataverse.crm.faults
    assert (faults.request_limit, faults.request_window) == (6000, 300.0)  # Dataverse's default
    faults.set_request_limit(3, window=60)
    assert [dataverse.session.get(dataverse.url("WhoAmI")).status_code for _ in range(3)] == [200, 200, 200]
    refused = dataverse.session.get(dataverse.url("WhoAmI"))
    assert refused.status_code == 429
    assert refused.json()["error"] == {
        "code": "0x80072322",
        "message": "Number of requests exceeded the limit of 3 over time window of 60 seconds.",
    }
    assert 55 <= int(refused.headers["Retry-After"]) <= 60
    other_app = dataverse.sim.identity.add_app(dataverse.tenant, "0a0b0c0d-0000-4000-8000-000000000002", "s")
    other_client = msal.ConfidentialClientApplication(
        other_app.client_id,
        authority=dataverse.authority,
        client_credential="s",
        instance_discovery=False,
        verify=dataverse.ca_path,
    )
    other = other_client.acquire_token_for_client([dataverse.scope])["access_token"]
    assert dataverse.new_session(other).get(dataverse.url("WhoAmI")).status_code == 200  # per user
    faults.set_request_limit(None)
    assert dataverse.session.get(dataverse.url("WhoAmI")).status_code == 200
