"""Injected throttling and Graph's per-mailbox concurrency limit, as raw HTTP answers."""

from __future__ import annotations

import threading

from foldertrack.simulator.mime import MailSpec


def test_429_and_503_carry_retry_after_and_can_target_one_mailbox(graph):
    graph.sim.add_mailbox("bob@contoso.example")
    faults = graph.sim.graph.faults
    session = graph.session()
    faults.throttle(requests=2, retry_after=7, mailbox=graph.mailbox)
    for _ in range(2):
        answer = session.get(graph.user("mailFolders"))
        assert answer.status_code == 429 and answer.headers["Retry-After"] == "7"
        assert answer.json()["error"]["code"] == "TooManyRequests"
        assert session.get(graph.user("mailFolders", mailbox="bob@contoso.example")).status_code == 200
    assert session.get(graph.user("mailFolders")).status_code == 200
    faults.throttle(requests=1, retry_after=3, status=503)
    unavailable = session.get(graph.user("mailFolders", mailbox="bob@contoso.example"))
    assert unavailable.status_code == 503 and unavailable.headers["Retry-After"] == "3"
    assert unavailable.json()["error"]["code"] == "ServiceNotAvailable"
    assert faults.snapshot()["injected"] == {"429": 2, "503": 1}


def test_more_than_four_concurrent_requests_per_mailbox_get_429(graph):
    box = graph.sim.mailbox(graph.mailbox)
    box.deliver(MailSpec(subject="x", to=[graph.mailbox]))
    gate = threading.Event()
    graph.sim.graph.faults.hold = gate  # admitted requests wait inside the server, holding their slot
    statuses: list[int] = []
    lock = threading.Lock()
    token = graph.token()

    def call() -> None:
        answer = graph.session(token=token).get(graph.user("mailFolders/inbox/messages"))
        with lock:
            statuses.append(answer.status_code)
            if answer.status_code == 429:
                assert answer.json()["error"]["code"] == "ApplicationThrottled"
            if statuses.count(429) == 4:
                gate.set()

    threads = [threading.Thread(target=call) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(20)
    assert sorted(statuses) == [200] * 4 + [429] * 4
    assert graph.sim.graph.faults.peak(graph.mailbox) == 4


def test_faults_through_the_loopback_control_endpoint(graph):
    import requests

    control = graph.sim.control_url
    answer = requests.post(
        control, json={"target": "graph", "action": "throttle", "requests": 1, "retry_after": 2}
    )
    assert answer.status_code == 200 and answer.json()["throttles"] == 1
    throttled = graph.session().get(graph.user("mailFolders"))
    assert throttled.status_code == 429 and throttled.headers["Retry-After"] == "2"
    snapshot = requests.get(control, params={"target": "graph"}).json()
    assert snapshot["injected"] == {"429": 1} and snapshot["throttles"] == 0
    assert requests.post(control, json={"target": "graph", "action": "nope"}).status_code == 400
    requests.post(control, json={"target": "graph", "action": "expire_delta_tokens"})
    assert graph.sim.graph.faults.delta_generation == 1
