"""The simulated Entra ID token endpoint through real MSAL over verified TLS: tokens, Entra's errors, expiry."""

from __future__ import annotations

import datetime as dt
import time

import jwt
import msal
import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from foldertrack.simulator.identity import InvalidToken
from foldertrack.testing.harness import wait_until


def _app(ctx, secret=None, tenant=None, client_id=None):
    return msal.ConfidentialClientApplication(
        client_id or ctx.client_id,
        authority=f"{ctx.org_url}/{tenant or ctx.tenant}",
        client_credential=secret if secret is not None else ctx.client_secret,
        instance_discovery=False,
        verify=ctx.ca_path,
    )


def test_msal_gets_a_jwt_for_the_org(dataverse):
    result = _app(dataverse).acquire_token_for_client([dataverse.scope])
    assert result["token_type"] == "Bearer"
    assert 3500 <= result["expires_in"] <= 3600
    header = jwt.get_unverified_header(result["access_token"])
    assert header["alg"] == "RS256" and header["kid"]
    claims = dataverse.sim.identity.validate(result["access_token"], dataverse.org_url)
    assert claims["aud"] == dataverse.org_url
    assert claims["tid"] == dataverse.tenant
    assert claims["appid"] == dataverse.client_id
    assert claims["exp"] > time.time() + 3000


def test_token_signature_checks_against_the_published_keys(dataverse):
    config = requests.get(
        f"{dataverse.authority}/v2.0/.well-known/openid-configuration", verify=dataverse.ca_path, timeout=10
    ).json()
    assert config["token_endpoint"] == f"{dataverse.authority}/oauth2/v2.0/token"
    keys = requests.get(config["jwks_uri"], verify=dataverse.ca_path, timeout=10).json()["keys"]
    token = dataverse.token()
    key = jwt.PyJWK(keys[0]).key
    claims = jwt.decode(token, key, algorithms=["RS256"], audience=dataverse.org_url)
    assert claims["appid"] == dataverse.client_id


def test_wrong_secret_is_invalid_client_aadsts7000215(dataverse):
    result = _app(dataverse, secret="not-the-secret").acquire_token_for_client([dataverse.scope])
    assert result["error"] == "invalid_client"
    assert result["error_codes"] == [7000215]
    assert result["error_description"].startswith("AADSTS7000215: Invalid client secret provided.")
    assert "not-the-secret" not in str(result)


def test_unknown_app_is_aadsts700016(dataverse):
    app = _app(dataverse, client_id="00000000-0000-0000-0000-00000000beef")
    result = app.acquire_token_for_client([dataverse.scope])
    assert result["error"] == "unauthorized_client"
    assert result["error_codes"] == [700016]


def test_unknown_tenant_fails_discovery(dataverse):
    with pytest.raises(ValueError, match="Unable to get authority configuration"):
        _app(dataverse, tenant="no-such-tenant")
    raw = requests.get(
        f"{dataverse.org_url}/no-such-tenant/v2.0/.well-known/openid-configuration",
        verify=dataverse.ca_path,
        timeout=10,
    )
    assert raw.status_code == 400
    assert raw.json()["error"] == "invalid_tenant" and raw.json()["error_codes"] == [90002]


def test_scope_without_default_is_invalid_scope(dataverse):
    result = _app(dataverse).acquire_token_for_client([f"{dataverse.org_url}/user_impersonation"])
    assert result["error"] == "invalid_scope"
    assert result["error_codes"] == [1002012]


def test_unknown_resource_is_invalid_resource(dataverse):
    result = _app(dataverse).acquire_token_for_client(["https://contoso.crm4.dynamics.com/.default"])
    assert result["error"] == "invalid_resource"
    assert result["error_codes"] == [500011]


def test_short_lived_token_expires_and_dataverse_says_401(dataverse):
    dataverse.sim.identity.token_lifetime = 1
    app = _app(dataverse)
    token = app.acquire_token_for_client([dataverse.scope])["access_token"]
    session = dataverse.new_session(token)
    assert session.get(dataverse.url("WhoAmI")).status_code == 200

    def expired() -> bool:
        try:
            dataverse.sim.identity.validate(token, dataverse.org_url)
        except InvalidToken:
            return True
        return False

    wait_until(expired, 5.0, "the 1 s token to expire")
    response = session.get(dataverse.url("WhoAmI"))
    assert response.status_code == 401
    assert response.headers["WWW-Authenticate"].startswith("Bearer authorization_uri=")
    assert "expired" in response.headers["WWW-Authenticate"]
    # MSAL never serves a token with < 5 min left from its cache: the next call gets a new one
    fresh = app.acquire_token_for_client([dataverse.scope])["access_token"]
    assert fresh != token
    assert dataverse.new_session(fresh).get(dataverse.url("WhoAmI")).status_code == 200


def test_expire_tokens_revokes_issued_tokens(dataverse):
    assert dataverse.session.get(dataverse.url("WhoAmI")).status_code == 200
    assert dataverse.sim.identity.expire_tokens() >= 1
    assert dataverse.session.get(dataverse.url("WhoAmI")).status_code == 401
    assert dataverse.new_session().get(dataverse.url("WhoAmI")).status_code == 200


def _certificate() -> tuple[bytes, bytes, str]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "foldertrack-test-app")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=1))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    return key_pem, cert.public_bytes(serialization.Encoding.PEM), cert.fingerprint(hashes.SHA1()).hex()


def test_certificate_credential(dataverse):
    key_pem, cert_pem, thumbprint = _certificate()
    sim = dataverse.sim
    app = sim.identity.add_app(
        dataverse.tenant, "c3e7a1f0-0000-4000-8000-00000000ce27", certificate_pem=cert_pem
    )
    client = msal.ConfidentialClientApplication(
        app.client_id,
        authority=dataverse.authority,
        client_credential={
            "private_key": key_pem.decode(),
            "thumbprint": thumbprint,
            "public_certificate": cert_pem.decode(),
        },
        instance_discovery=False,
        verify=dataverse.ca_path,
    )
    result = client.acquire_token_for_client([dataverse.scope])
    assert "access_token" in result, result
    assert sim.identity.validate(result["access_token"], dataverse.org_url)["appidacr"] == "2"
    other_key, _, _ = _certificate()
    forged = msal.ConfidentialClientApplication(
        app.client_id,
        authority=dataverse.authority,
        client_credential={"private_key": other_key.decode(), "thumbprint": thumbprint},
        instance_discovery=False,
        verify=dataverse.ca_path,
    )
    assert forged.acquire_token_for_client([dataverse.scope])["error"] == "invalid_client"


def test_https_listener_is_verified_and_serves_the_same_routes(dataverse):
    with pytest.raises(requests.exceptions.SSLError):
        requests.get(f"{dataverse.org_url}/api/data/v9.2/WhoAmI", timeout=10)  # not our CA: refused
    ews = requests.post(
        f"{dataverse.org_url}/EWS/Exchange.asmx", data=b"<x/>", verify=dataverse.ca_path, timeout=10
    )
    assert ews.status_code == 401 and ews.headers["WWW-Authenticate"].startswith("Basic")
    plain = requests.get(dataverse.sim.url.replace("/EWS/Exchange.asmx", "/api/data/v9.2/WhoAmI"), timeout=10)
    assert plain.status_code == 401  # Dataverse only over https
