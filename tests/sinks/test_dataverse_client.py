"""The Dataverse client's failure modes against the simulator: each error says its true cause, is transient
or permanent as delivery needs it, and never carries a secret or a token."""

from __future__ import annotations

import logging
import socket
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest

from foldertrack.crm.connect import connect
from foldertrack.crm.errors import DataverseAuthError, parse_retry_after
from foldertrack.errors import ConfigError, PermanentSinkError, TransientSinkError
from foldertrack.model import Activity
from foldertrack.ops.logs import REDACTOR
from foldertrack.sinks.dataverse import DataverseActivitySink, activity_id
from foldertrack.testing.fixtures_dataverse_sink import make_dataverse_config

KEY = "<client-test@contoso.example>"


def mail(subject: str = "Hello") -> Activity:
    return Activity(
        key=KEY,
        mailbox="sales@fabrikam.example",
        folder_id="f",
        folder_path="Inbox/Customers",
        message_id=KEY,
        subject=subject,
        direction="incoming",
        regarding=None,
    )


def sink_for(dataverse, secret: str | None = None, **settings) -> DataverseActivitySink:
    return DataverseActivitySink.create(make_dataverse_config(dataverse, secret, **settings), None)


def test_throttling_429_is_transient_with_the_server_s_retry_after(dataverse, dataverse_sink):
    dataverse.crm.faults.throttle(requests=1, retry_after=7)

    with pytest.raises(TransientSinkError) as caught:
        dataverse_sink.upsert(mail())

    assert caught.value.retry_after == 7.0
    assert caught.value.code == "0x80072322"
    assert "HTTP 429" in str(caught.value)
    assert dataverse_sink.upsert(mail()) == "created"  # the next attempt goes through


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_transient_and_name_the_status(dataverse, dataverse_sink, status):
    dataverse.crm.faults.http_error(status, requests=1)

    with pytest.raises(TransientSinkError) as caught:
        dataverse_sink.upsert(mail())

    assert f"HTTP {status}" in str(caught.value)
    assert not isinstance(caught.value, DataverseAuthError)
    assert dataverse.crm.emails() == []


def test_a_dropped_connection_is_transient(dataverse, dataverse_sink):
    dataverse_sink.upsert(mail())  # token fetched, connection pooled
    dataverse.crm.faults.outage(True, mode="reset")

    with pytest.raises(TransientSinkError) as caught:
        dataverse_sink.upsert(mail("changed"))

    assert "dropped" in str(caught.value) or "cannot reach" in str(caught.value)
    dataverse.crm.faults.outage(False)
    assert dataverse_sink.upsert(mail("changed")) == "updated"


def test_connection_refused_names_the_host(dataverse):
    with socket.socket() as probe:  # a loopback port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    dataverse.sim.identity.add_resource(f"https://127.0.0.1:{port}")  # a token for it comes from the sim
    sink = sink_for(dataverse, url=f"https://127.0.0.1:{port}")
    try:
        with pytest.raises(TransientSinkError) as caught:
            sink.delete(KEY)
    finally:
        sink.close()

    assert (
        str(caught.value)
        == f"Dataverse DELETE emails({activity_id(KEY)}): connection refused by 127.0.0.1:{port}"
    )


def test_an_unknown_host_is_a_dns_failure(dataverse):
    dataverse.sim.identity.add_resource("https://foldertrack-test.invalid")
    sink = sink_for(dataverse, url="https://foldertrack-test.invalid")
    try:
        with pytest.raises(TransientSinkError) as caught:
            sink.delete(KEY)
    finally:
        sink.close()

    assert str(caught.value).endswith(": DNS lookup of foldertrack-test.invalid failed")


def test_a_slow_server_is_a_timeout(dataverse):
    sink = sink_for(dataverse, timeout="300ms")
    try:
        sink.delete(KEY)  # token fetched at full speed
        dataverse.crm.faults.slow_responses(1500)
        with pytest.raises(TransientSinkError) as caught:
            sink.delete(KEY)
    finally:
        dataverse.crm.faults.slow_responses(0)
        sink.close()

    assert "timed out waiting for 127.0.0.1:" in str(caught.value)


def test_tls_is_verified_by_default(dataverse):
    sink = sink_for(dataverse, ca_file=None)  # the system's CAs do not know the simulator's CA
    try:
        with pytest.raises(DataverseAuthError) as caught:
            sink.upsert(mail())
    finally:
        sink.close()

    assert "TLS error talking to 127.0.0.1:" in str(caught.value)
    assert "certificate verify failed" in str(caught.value)


def test_an_expired_token_is_refreshed_once_and_the_request_repeated(dataverse, dataverse_sink):
    dataverse_sink.upsert(mail())
    issued = dataverse.sim.identity.tokens_issued
    dataverse.crm.faults.expire_tokens()  # MSAL still trusts its cached token; Dataverse refuses it

    assert dataverse_sink.upsert(mail("after expiry")) == "updated"

    assert dataverse.sim.identity.tokens_issued == issued + 1
    assert dataverse.crm.faults.injected.get("unauthorized", 0) >= 1
    assert dataverse.crm.email(activity_id(KEY))["subject"] == "after expiry"


def test_a_wrong_secret_is_a_clear_error_without_the_secret(dataverse, caplog):
    wrong = "not-the-secret-Zq8~w41"
    sink = sink_for(dataverse, secret=wrong)
    try:
        with caplog.at_level(logging.DEBUG), pytest.raises(DataverseAuthError) as caught:
            sink.upsert(mail())
    finally:
        sink.close()

    message = str(caught.value)
    assert "invalid_client" in message and "AADSTS7000215" in message
    assert dataverse.client_id in message
    assert wrong not in message and wrong not in repr(caught.value.__dict__)
    assert wrong not in REDACTOR.redact(caplog.text)
    assert isinstance(caught.value, TransientSinkError)  # the item is fine: delivery keeps it
    assert dataverse.crm.emails() == []


def test_tokens_and_secrets_are_masked_in_logs(dataverse, dataverse_sink):
    dataverse_sink.upsert(mail())
    token = dataverse_sink.client.auth.headers()["Authorization"].split()[1]

    assert REDACTOR.redact(f"header Bearer {token}") == "header Bearer ***"
    assert REDACTOR.redact(dataverse.client_secret) == "***"


def test_a_rejection_is_permanent_with_dataverse_s_code_and_message(dataverse, dataverse_sink):
    with pytest.raises(PermanentSinkError) as caught:
        dataverse_sink.client.request("PATCH", "emails(not-a-guid)", json={"subject": "x"})

    assert caught.value.code is not None
    assert str(caught.value).startswith("Dataverse PATCH emails(not-a-guid): HTTP 4")


def test_missing_settings_are_listed_at_once(dataverse):
    config = make_dataverse_config(dataverse)
    broken = replace(
        config, dataverse=replace(config.dataverse, url=None, client_id=None, client_secret=None)
    )
    with pytest.raises(ConfigError) as caught:
        connect(broken)

    lines = str(caught.value).splitlines()
    assert lines[0] == "dataverse.url is not set"
    assert lines[1] == 'dataverse.client_id is not set (needed for auth = "oauth2")'
    assert lines[2].startswith("dataverse client secret is ")


def test_concurrency_cap_comes_from_the_configuration(dataverse):
    sink = sink_for(dataverse, max_concurrency=3)
    try:
        assert sink.max_concurrency == 3
        assert sink.client.session.get_adapter(dataverse.org_url)._pool_maxsize == 3
    finally:
        sink.close()


def test_retry_after_accepts_seconds_and_http_dates():
    now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)
    later = (now + timedelta(seconds=90)).strftime("%a, %d %b %Y %H:%M:%S GMT")

    assert parse_retry_after("12") == 12.0
    assert parse_retry_after(later, now=now.timestamp()) == 90.0
    assert parse_retry_after("soon") is None
    assert parse_retry_after(None) is None


def test_a_certificate_authenticates_instead_of_a_secret(dataverse, tmp_path):
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "foldertrack")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    pem = tmp_path / "foldertrack-app.pem"
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    pem.write_bytes(key_pem + cert_pem)
    app = dataverse.sim.identity.add_app(
        dataverse.tenant, "0c3e1a9d-0000-4000-8000-00000000ce27", certificate_pem=cert_pem
    )

    sink = sink_for(dataverse, secret="", client_id=app.client_id, certificate_file=str(pem))
    try:
        assert sink.upsert(mail()) == "created"
    finally:
        sink.close()
    assert REDACTOR.redact(key_pem.decode().strip()) == "***"


def test_a_certificate_file_without_a_key_is_a_config_error(dataverse, tmp_path):
    pem = tmp_path / "only-cert.pem"
    pem.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n", encoding="utf-8")
    sink = sink_for(dataverse, secret="", certificate_file=str(pem))
    try:
        with pytest.raises(ConfigError, match="needs the private key and the certificate"):
            sink.upsert(mail())
    finally:
        sink.close()


def test_never_more_requests_in_flight_than_the_cap(dataverse):
    from concurrent.futures import ThreadPoolExecutor

    dataverse.crm.faults.set_concurrency_limit(2)  # a third concurrent request would get 429 0x80072326
    sink = sink_for(dataverse, max_concurrency=2)
    try:
        sink.delete(KEY)  # the token, fetched once
        dataverse.crm.faults.slow_responses(50)
        with ThreadPoolExecutor(8) as pool:
            outcomes = list(pool.map(lambda n: sink.upsert(mail_with_key(f"<cap-{n}@x>")), range(8)))
    finally:
        dataverse.crm.faults.slow_responses(0)
        sink.close()

    assert outcomes == ["created"] * 8
    assert dataverse.crm.faults.injected.get("concurrency", 0) == 0


def mail_with_key(key: str) -> Activity:
    return Activity(
        key=key,
        mailbox="m@x",
        folder_id="f",
        folder_path="Inbox",
        message_id=key,
        subject="s",
        direction="incoming",
        regarding=None,
    )


def test_a_redirect_is_never_taken_for_success(dataverse):
    """A 302 (an AD FS login page, or http → https) must not mark the entry delivered: nothing reached the
    CRM. It is a configuration problem: transient (the outbox keeps the entry), naming where it points."""
    import threading
    from http.server import BaseHTTPRequestHandler, HTTPServer

    class Redirect(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            self.send_response(302)
            self.send_header("Location", "https://adfs.example/adfs/ls/?wa=wsignin1.0")
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_PATCH = do_POST = do_DELETE = _answer

        def log_message(self, *args) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Redirect)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}"
    dataverse.sim.identity.add_resource(url)
    sink = sink_for(dataverse, url=url)
    try:
        with pytest.raises(TransientSinkError) as caught:
            sink.upsert(mail())
    finally:
        sink.close()
        server.shutdown()
        server.server_close()
        thread.join(5)
    assert "HTTP 302" in str(caught.value) and "redirected to https://adfs.example/adfs/ls/" in str(
        caught.value
    )
    assert "wsignin" not in str(caught.value)


def test_a_plain_http_org_url_is_refused_unless_loopback(dataverse):
    from foldertrack.errors import ConfigError

    with pytest.raises(ConfigError, match="must be an https URL"):
        make_dataverse_config(dataverse, url="http://contoso.crm4.dynamics.com")
