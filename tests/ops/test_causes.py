"""Every failure named by its true cause: real exchangelib requests to the simulator (and to a closed
port, an unresolvable name, plain HTTP spoken as TLS), classified by :mod:`foldertrack.ops.causes`."""

from __future__ import annotations

import socket
from collections.abc import Callable, Iterator

import pytest

from foldertrack.errors import PermanentSinkError, TransientSinkError
from foldertrack.exchange.connection import ExchangeConnector, ExchangeSettings
from foldertrack.ops.causes import Cause, classify
from foldertrack.retry import describe, server_back_off
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD

ALICE = "alice@example.com"


@pytest.fixture
def sim(simulator):
    simulator.add_service_account(SERVICE_ACCOUNT, password=SERVICE_PASSWORD, impersonation=True)
    simulator.add_mailbox(ALICE, password="user-pw")
    return simulator


@pytest.fixture
def failure(sim) -> Iterator[Callable[..., BaseException]]:
    """The exception a real exchangelib request raises against ``endpoint`` (with a fault armed first)."""
    connectors: list[ExchangeConnector] = []

    def run(endpoint: str | None = None, password: str = SERVICE_PASSWORD) -> BaseException:
        settings = ExchangeSettings(
            endpoint=endpoint or sim.url,
            auth="basic",
            username=SERVICE_ACCOUNT,
            password=password,
            access="impersonation",
            version="Exchange2016",
            request_timeout=5.0,
        )
        connector = ExchangeConnector(settings, max_connections=4)
        connectors.append(connector)
        try:
            connector.account(ALICE).inbox.refresh()
        except Exception as exc:
            return exc
        raise AssertionError("the request succeeded")

    yield run
    for connector in connectors:
        connector.close()


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_connection_refused_is_not_a_timeout(failure):
    port = closed_port()
    exc = failure(f"http://127.0.0.1:{port}/EWS/Exchange.asmx")
    assert type(exc).__name__ == "ErrorTimeoutExpired"  # what exchangelib says
    assert classify(exc) == Cause("connection_refused", f"connection refused (127.0.0.1:{port})")
    assert describe(exc) == f"connection refused (127.0.0.1:{port})"


def test_dns_failure(failure):
    cause = classify(failure("http://no-such-host.invalid/EWS/Exchange.asmx"))
    assert cause.code == "dns" and cause.text.startswith("DNS lookup failed (no-such-host.invalid:80)")


def test_tls_failure(failure, sim):
    cause = classify(failure(sim.url.replace("http://", "https://")))
    assert cause.code == "tls" and cause.text.startswith("TLS failed (127.0.0.1:")


def test_refused_credentials_and_wrong_url(failure, sim):
    cause = classify(failure(password="wrong"))
    assert cause.code == "unauthorized" and "credentials refused: HTTP 401" in cause.text
    assert "wrong" not in cause.text.replace("UnauthorizedError", "")  # no secret, just the URL
    cause = classify(failure(sim.url.replace("Exchange.asmx", "Nope.asmx")))
    assert cause.code == "http_404" and "HTTP 404" in cause.text


def test_http_503_is_not_throttling_but_server_busy_is(failure, sim):
    sim.faults.http_error(503, requests=50)
    exc = failure()
    assert type(exc).__name__ == "ErrorServerBusy"  # exchangelib's own guess
    cause = classify(exc)
    assert (cause.code, cause.throttling) == ("http_503", False)
    assert server_back_off(exc) is None
    sim.faults.clear()

    sim.faults.server_busy(requests=50, backoff_ms=250)
    exc = failure()
    cause = classify(exc)
    assert (cause.code, cause.throttling) == ("ErrorServerBusy", True)
    assert cause.text.endswith("(server asks to back off 0.25s)")
    assert server_back_off(exc) == 0.25
    sim.faults.clear()


def test_closed_connection(failure, sim):
    sim.faults.reset_connections(requests=50)
    cause = classify(failure())
    assert cause.code == "connection_closed" and cause.text.startswith("connection closed by the server")


def test_server_response_codes_and_crm_codes_are_kept():
    from exchangelib.errors import ErrorNonExistentMailbox

    cause = classify(ErrorNonExistentMailbox("The SMTP address has no mailbox associated with it."))
    assert cause == Cause(
        "ErrorNonExistentMailbox",
        "ErrorNonExistentMailbox: The SMTP address has no mailbox associated with it.",
    )
    assert classify(PermanentSinkError("Regarding object not found", code="0x80040217")).code == "0x80040217"
    assert classify(TransientSinkError("outage")).code == "TransientSinkError"
    assert classify(ValueError("x\nsecond line")).text == "ValueError: x"
