"""EWS with app-only OAuth2 (Exchange Online): the simulator checks bearer tokens of its token endpoint
like Exchange does, and the watcher's ``auth = "oauth2"`` path (MSAL tokens, renewed and re-acquired once
after a refusal) tracks mail end to end, through token expiry and revocation during an open stream."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import jwt
import pytest
import requests
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric import rsa

from foldertrack.cli import main
from foldertrack.exchange.connection import ExchangeSettings
from foldertrack.exchange.oauth import EXCHANGE_ONLINE_SCOPE, EwsAuthenticator
from foldertrack.ops.status import collect_status
from foldertrack.simulator import MailSpec, Simulator
from foldertrack.simulator.identity import (
    DEMO_CLIENT_ID,
    DEMO_CLIENT_SECRET,
    DEMO_TENANT,
    EXCHANGE_RESOURCE,
)
from foldertrack.testing.harness import Harness, options_for_tests, wait_until
from foldertrack.testing.soap import soap_envelope

ALICE = "alice@example.com"
RULES = f"""
mailboxes:
  - addresses: [{ALICE}]
    folders:
      Inbox/Contoso:
        record: null
"""
GET_INBOX = (
    "<m:GetFolder><m:FolderShape><t:BaseShape>IdOnly</t:BaseShape></m:FolderShape><m:FolderIds>"
    '<t:DistinguishedFolderId Id="inbox"/></m:FolderIds></m:GetFolder>'
)
IMPERSONATE_ALICE = (
    "<t:ExchangeImpersonation><t:ConnectingSID>"
    f"<t:PrimarySmtpAddress>{ALICE}</t:PrimarySmtpAddress></t:ConnectingSID></t:ExchangeImpersonation>"
)
EXCHANGE_CHALLENGE = 'Bearer client_id="00000002-0000-0ff1-ce00-000000000000"'


def oauth2_settings(sim: Simulator, **overrides) -> ExchangeSettings:
    """The watcher's EWS settings for app-only OAuth2 against the simulator's HTTPS listener."""
    settings = ExchangeSettings(
        endpoint=f"{sim.https_base}/EWS/Exchange.asmx",
        auth="oauth2",
        username="",
        password=DEMO_CLIENT_SECRET,
        oauth2_tenant_id=DEMO_TENANT,
        oauth2_client_id=DEMO_CLIENT_ID,
        oauth2_authority=sim.https_base,
        ca_file=sim.ca_path,
        request_timeout=5.0,
    )
    return replace(settings, **overrides)


def app_token(sim: Simulator, scope: str = EXCHANGE_ONLINE_SCOPE, client_id: str = DEMO_CLIENT_ID) -> str:
    auth = EwsAuthenticator(
        DEMO_TENANT, client_id, DEMO_CLIENT_SECRET, authority=sim.https_base, scope=scope, verify=sim.ca_path
    )
    try:
        return auth.token()
    finally:
        auth.close()


def get_inbox(sim: Simulator, token: str, *, impersonate: bool = True, url: str | None = None):
    return requests.post(
        url or f"{sim.https_base}/EWS/Exchange.asmx",
        data=soap_envelope(GET_INBOX, header=IMPERSONATE_ALICE if impersonate else ""),
        headers={"Authorization": f"Bearer {token}", "Content-Type": "text/xml; charset=utf-8"},
        verify=sim.ca_path,
        timeout=10,
    )


# -- the simulator: Exchange Online's checks ------------------------------------------------------------------


@pytest.fixture
def sim(simulator: Simulator) -> Simulator:
    simulator.add_mailbox(ALICE)
    simulator.identity.add_app(DEMO_TENANT, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    return simulator


def test_app_token_with_full_access_as_app_reads_a_mailbox_by_impersonation(sim):
    response = get_inbox(sim, app_token(sim))
    assert response.status_code == 200, response.headers
    assert b"NoError" in response.content
    claims = jwt.decode(app_token(sim), options={"verify_signature": False})
    assert claims["aud"] == EXCHANGE_RESOURCE and claims["roles"] == ["full_access_as_app"]


def test_app_token_without_impersonation_is_refused_as_exchange_does(sim):
    response = get_inbox(sim, app_token(sim), impersonate=False)
    assert response.status_code == 500
    assert b"ErrorInvalidExchangeImpersonationHeaderData" in response.content
    assert (
        b"ExchangeImpersonation SOAP header must be present for this type of OAuth token." in response.content
    )


def _foreign_signature(token: str) -> str:
    claims = jwt.decode(token, options={"verify_signature": False})
    return jwt.encode(claims, rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS256")


@pytest.mark.parametrize(
    ("case", "status", "diagnostics"),
    [
        ("revoked", 401, '2000001;reason="The token has expired.";error_category="invalid_token"'),
        ("graph token", 401, "2000003;reason=\"The hostname component of the audience claim value is "
         "invalid. Expected 'https://outlook.office365.com'. Actual 'https://graph.microsoft.com'.\";"
         'error_category="invalid_resource"'),
        ("foreign signature", 401,
         '2000001;reason="The token has an invalid signature.";error_category="invalid_token"'),
        ("garbage", 401, '2000001;reason="OAuth token submitted with the request can not be parsed.";'
         'error_category="invalid_token"'),
        ("no permissions", 401, '2000008;reason="The token contains no permissions, or permissions can not '
         'be understood.";error_category="invalid_grant"'),
        ("Mail.Read only", 403, '2000008;reason="The token contains not enough scope to make this call.";'
         'error_category="invalid_grant"'),
    ],
)  # fmt: skip
def test_refused_tokens_get_exchange_onlines_answer(sim, case, status, diagnostics):
    token = app_token(sim)
    if case == "revoked":
        sim.identity.expire_tokens()
    elif case == "graph token":
        token = app_token(sim, "https://graph.microsoft.com/.default")
    elif case == "foreign signature":
        token = _foreign_signature(token)
    elif case == "garbage":
        token = "not-a-jwt"
    elif case == "no permissions":
        app = sim.identity.add_app(DEMO_TENANT, secret=DEMO_CLIENT_SECRET, roles={})
        token = app_token(sim, client_id=app.client_id)
    else:
        app = sim.identity.add_app(
            DEMO_TENANT, secret=DEMO_CLIENT_SECRET, roles={EXCHANGE_RESOURCE: ["Mail.Read"]}
        )
        token = app_token(sim, client_id=app.client_id)
    response = get_inbox(sim, token)
    assert response.status_code == status
    assert response.headers["x-ms-diagnostics"] == diagnostics
    if status == 401:
        challenge = response.headers["WWW-Authenticate"]
        assert challenge.startswith(EXCHANGE_CHALLENGE) and 'error="invalid_token"' in challenge
    assert sim.stats.snapshot()["counters"]["unauthorized"] == 1


def test_plain_http_refuses_tokens_like_exchange_behind_tls_offloading(sim):
    response = get_inbox(sim, app_token(sim), url=sim.url)
    assert response.status_code == 401
    assert response.headers["x-ms-diagnostics"].startswith(
        "2000003;reason=\"The hostname component of the audience claim value is invalid. Expected 'http://"
    )


# -- the watcher: auth = "oauth2" end to end ------------------------------------------------------------------


@pytest.fixture
def harness(tmp_path: Path) -> Iterator[Harness]:
    with Harness(tmp_path, **options_for_tests(start_timeout=1.0)) as h:
        _setup(h)
        yield h


def _setup(h: Harness) -> None:
    h.add_mailbox(ALICE).create_folder("Inbox/Contoso")
    h.write_rules(RULES)


def _move_in(h: Harness, subject: str) -> None:
    item = h.sim.deliver(ALICE, MailSpec(subject=subject, sender="dana@contoso.com", to=[ALICE]))
    h.sim.mailbox(ALICE).move_item(item, "Inbox/Contoso")


def test_watcher_tracks_a_moved_mail_with_oauth2(harness):
    harness.sim.identity.add_app(DEMO_TENANT, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    harness.start_watcher(exchange=oauth2_settings(harness.sim))
    _move_in(harness, "over oauth2")
    harness.wait_tracked("over oauth2")
    counters = harness.sim.stats.snapshot()["counters"]
    assert counters.get("unauthorized", 0) == 0
    assert harness.sim.identity.tokens_issued == 1  # one token, from MSAL's cache for every request


def test_tokens_revoked_during_an_open_stream_are_renewed_once(harness):
    harness.sim.identity.add_app(DEMO_TENANT, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    harness.start_watcher(exchange=oauth2_settings(harness.sim))
    stats = harness.sim.stats
    wait_until(lambda: stats.snapshot()["open_streams"] >= 1, 10, "the stream")
    streams = stats.snapshot()["streams_total"]
    assert harness.sim.identity.expire_tokens() >= 1  # the stream's token and MSAL's cached one are dead
    _move_in(harness, "after revocation")
    # the open stream carried the event; GetItem & co. were refused once, re-acquired, re-sent
    harness.wait_tracked("after revocation")
    assert stats.snapshot()["streams_total"] == streams
    assert stats.snapshot()["counters"]["unauthorized"] >= 1
    assert harness.sim.identity.tokens_issued >= 2
    assert all(m["last_error"] is None for m in collect_status(harness.engine)["mailboxes"])


def test_short_lived_tokens_expire_under_a_longer_stream_and_mail_keeps_being_tracked(tmp_path):
    sim = Simulator(heartbeat=1.0, minute=4.0).start()  # a stream stays open 4 s, tokens live 2 s
    try:
        sim.identity.token_lifetime = 2
        sim.identity.add_app(DEMO_TENANT, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
        with Harness(tmp_path, simulator=sim, **options_for_tests(stream_timeout_minutes=1)) as h:
            _setup(h)
            h.start_watcher(exchange=oauth2_settings(sim))
            _move_in(h, "first")
            h.wait_tracked("first")
            streams = sim.stats.snapshot()["streams_total"]
            # two more streams: each ended after its token had expired, the next one needed a new token
            wait_until(lambda: sim.stats.snapshot()["streams_total"] >= streams + 2, 20, "streams renewed")
            _move_in(h, "second")
            h.wait_tracked("second")
            assert sim.identity.tokens_issued >= 3
    finally:
        sim.stop()


@pytest.mark.parametrize(
    ("case", "code", "words"),
    [
        ("wrong secret", "invalid_client", "AADSTS7000215: Invalid client secret provided"),
        ("graph scope", "invalid_resource", "Actual 'https://graph.microsoft.com'"),
        ("no permission", "invalid_grant", "full_access_as_app"),
    ],
)
def test_refusals_are_an_error_naming_the_cause_without_the_secret(harness, case, code, words):
    roles = {} if case == "no permission" else None
    harness.sim.identity.add_app(DEMO_TENANT, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, roles=roles)
    overrides = {
        "wrong secret": {"password": "not-the-secret-0123"},
        "graph scope": {"oauth2_scope": "https://graph.microsoft.com/.default"},
        "no permission": {},
    }[case]
    harness.start_watcher(exchange=oauth2_settings(harness.sim, **overrides))

    def failed():
        box = next((m for m in collect_status(harness.engine)["mailboxes"] if m["mailbox"] == ALICE), None)
        return box if box and box["mode"] == "error" else None

    box = wait_until(failed, 15, "alice in error")
    assert words in box["last_error"] and box["last_error"].startswith("EwsAuthError: ")
    assert code in box["last_error"]
    assert DEMO_CLIENT_SECRET not in box["last_error"] and "not-the-secret" not in box["last_error"]


def test_config_check_accepts_oauth2(clean_config_env, write_config, tmp_path):
    (tmp_path / "client-secret").write_text("s3cret-value\n")
    path = write_config(
        exchange={
            "endpoint": "https://outlook.office365.com/EWS/Exchange.asmx",
            "auth": "oauth2",
            "oauth2_tenant_id": DEMO_TENANT,
            "oauth2_client_id": DEMO_CLIENT_ID,
            "oauth2_client_secret_file": str(tmp_path / "client-secret"),
        }
    )
    result = CliRunner().invoke(main, ["config", "check", "--config", str(path)], catch_exceptions=False)
    assert result.exit_code == 0, result.output
    assert 'auth = "oauth2"' in result.stdout and "s3cret-value" not in result.output
    assert "warning" not in result.stderr
