"""An Entra ID (Azure AD) v2.0 token endpoint, enough for MSAL's client-credentials flow.

https://learn.microsoft.com/entra/identity-platform/v2-oauth2-client-creds-grant-flow

MSAL (``instance_discovery=False``) reads ``/{tenant}/v2.0/.well-known/openid-configuration`` and then
posts to ``/{tenant}/oauth2/v2.0/token`` with a client secret or a signed client assertion (certificate).
Tokens are RS256 JWTs with ``aud`` (the resource of the ``<resource>/.default`` scope), ``tid``,
``appid``, ``exp`` and, when the app was granted application permissions on that resource, ``roles``;
:meth:`Identity.validate` is what the simulated resource servers (Dataverse, Graph, EWS) check.
Exchange Online (``https://outlook.office365.com``) is a known resource from the start, and an app is
granted its ``full_access_as_app`` role unless ``add_app(roles=…)`` says otherwise.
Errors carry Entra ID's codes: AADSTS7000215 (wrong secret), AADSTS700016 (unknown app), AADSTS90002
(unknown tenant), AADSTS1002012 (scope without ``/.default``), AADSTS500011 (unknown resource).
"""

from __future__ import annotations

import datetime as dt
import functools
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

import jwt
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
#: the application ID URI of Exchange Online (EWS): tokens for it have this audience
EXCHANGE_RESOURCE = "https://outlook.office365.com"
#: the application permission app-only EWS needs (impersonating any mailbox)
FULL_ACCESS_AS_APP = "full_access_as_app"


@dataclass
class App:
    """An app registration with its service principal in one tenant."""

    tenant: str
    client_id: str
    secret: str | None = None
    certificate: x509.Certificate | None = None
    object_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    #: application permissions granted (admin consent) per resource: they become the token's ``roles``
    roles: dict[str, frozenset[str]] = field(default_factory=dict)


class TokenError(Exception):
    """An OAuth2 error response, shaped like Entra ID's (``error``, ``error_description``, ``error_codes``)."""

    def __init__(self, status: int, error: str, code: int, description: str):
        super().__init__(f"{error}: AADSTS{code}: {description}")
        self.status, self.error, self.code, self.description = status, error, code, description

    def body(self) -> dict[str, Any]:
        trace, correlation = str(uuid.uuid4()), str(uuid.uuid4())
        stamp = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M:%SZ")
        return {
            "error": self.error,
            "error_description": f"AADSTS{self.code}: {self.description} Trace ID: {trace} "
            f"Correlation ID: {correlation} Timestamp: {stamp}",
            "error_codes": [self.code],
            "timestamp": stamp,
            "trace_id": trace,
            "correlation_id": correlation,
            "error_uri": f"https://login.microsoftonline.com/error?code={self.code}",
        }


class InvalidToken(Exception):
    """A bearer token a resource server must refuse (401); ``reason`` goes into ``WWW-Authenticate``."""


class TokenExpired(InvalidToken):
    """Past its ``exp``, or revoked by :meth:`Identity.expire_tokens`."""


class WrongAudience(InvalidToken):
    """Signed by us but for another resource; ``audience`` is the token's own ``aud``."""

    def __init__(self, message: str, audience: str):
        super().__init__(message)
        self.audience = audience


class BadSignature(InvalidToken):
    """Not signed by this identity's key."""


_KID = secrets.token_hex(8)


@functools.lru_cache(maxsize=1)
def _process_signing_key() -> rsa.RSAPrivateKey:
    """One RSA key per process (2048-bit generation takes a noticeable fraction of a second); tokens stay
    bound to one simulator by their audience, which carries its port."""
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


class Identity:
    """``sim.identity``: tenants, app registrations, resources, token issuing and validation.

    ``token_lifetime`` (seconds) applies to tokens issued from then on; ``expire_tokens()`` makes every
    token issued so far invalid at once (what a key rollover or a revoked grant looks like to a client).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.token_lifetime: float = 3600.0
        self.apps: dict[tuple[str, str], App] = {}
        self.tenants: set[str] = set()
        self.resources: set[str] = {EXCHANGE_RESOURCE}
        self._kid = _KID
        self._issued: set[str] = set()
        self._revoked: set[str] = set()
        self.tokens_issued = 0

    # -- configuration ------------------------------------------------------------------------------
    def add_tenant(self, tenant: str) -> str:
        with self._lock:
            self.tenants.add(tenant.lower())
        return tenant

    def add_app(
        self,
        tenant: str,
        client_id: str | None = None,
        secret: str | None = None,
        certificate_pem: bytes | None = None,
        roles: Mapping[str, Iterable[str]] | None = None,
    ) -> App:
        """Register an app (service principal) in ``tenant`` with a secret and/or a certificate.

        ``roles`` are the application permissions granted per resource (default: ``full_access_as_app`` on
        Exchange Online, what app-only EWS needs; ``{}``: none, so EWS refuses the app's tokens)."""
        cert = x509.load_pem_x509_certificate(certificate_pem) if certificate_pem else None
        granted = {EXCHANGE_RESOURCE: [FULL_ACCESS_AS_APP]} if roles is None else roles
        app = App(
            tenant.lower(),
            (client_id or str(uuid.uuid4())).lower(),
            secret,
            cert,
            roles={r.rstrip("/").lower(): frozenset(names) for r, names in granted.items()},
        )
        with self._lock:
            self.tenants.add(app.tenant)
            self.apps[(app.tenant, app.client_id)] = app
        return app

    def add_resource(self, resource: str) -> None:
        """A resource (application ID URI, e.g. the Dataverse org URL) tokens may be issued for."""
        with self._lock:
            self.resources.add(resource.rstrip("/").lower())

    def expire_tokens(self) -> int:
        """Invalidate every token issued so far; returns how many."""
        with self._lock:
            count = len(self._issued - self._revoked)
            self._revoked |= self._issued
        return count

    def _signing_key(self) -> rsa.RSAPrivateKey:
        return _process_signing_key()

    # -- endpoints ----------------------------------------------------------------------------------
    def openid_configuration(self, base: str, tenant: str) -> dict[str, Any]:
        self._tenant(tenant)
        root = f"{base}/{tenant}"
        return {
            "token_endpoint": f"{root}/oauth2/v2.0/token",
            "token_endpoint_auth_methods_supported": [
                "client_secret_post",
                "private_key_jwt",
                "client_secret_basic",
            ],
            "jwks_uri": f"{root}/discovery/v2.0/keys",
            "response_modes_supported": ["query", "fragment", "form_post"],
            "subject_types_supported": ["pairwise"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
            "scopes_supported": ["openid", "profile", "email", "offline_access"],
            "issuer": f"{root}/v2.0",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "device_authorization_endpoint": f"{root}/oauth2/v2.0/devicecode",
            "end_session_endpoint": f"{root}/oauth2/v2.0/logout",
            "tenant_region_scope": "EU",
        }

    def jwks(self) -> dict[str, Any]:
        public = jwt.algorithms.RSAAlgorithm.to_jwk(self._signing_key().public_key(), as_dict=True)
        public.update({"kid": self._kid, "use": "sig", "alg": "RS256"})
        return {"keys": [public]}

    def token(self, tenant: str, form: dict[str, str], token_endpoint: str) -> dict[str, Any]:
        """Handle a token request (form fields already decoded); raises :class:`TokenError`."""
        tenant = self._tenant(tenant)
        grant = form.get("grant_type")
        if grant != "client_credentials":
            raise TokenError(
                400,
                "unsupported_grant_type",
                70003,
                f"The app requested an unsupported grant type '{grant}'.",
            )
        client_id = (form.get("client_id") or "").lower()
        if not client_id:
            raise TokenError(
                400,
                "invalid_request",
                900144,
                "The request body must contain the following parameter: 'client_id'.",
            )
        app = self.apps.get((tenant, client_id))
        if app is None:
            raise TokenError(
                400,
                "unauthorized_client",
                700016,
                f"Application with identifier '{client_id}' was not found in the directory '{tenant}'. This can "
                "happen if the application has not been installed by the administrator of the tenant or "
                "consented to by any user in the tenant.",
            )
        self._authenticate_client(app, form, token_endpoint)
        resource = self._resource(form.get("scope") or "")
        return self._issue(app, resource)

    def _authenticate_client(self, app: App, form: dict[str, str], token_endpoint: str) -> None:
        if form.get("client_assertion"):
            if form.get("client_assertion_type") != CLIENT_ASSERTION_TYPE or app.certificate is None:
                raise TokenError(
                    401, "invalid_client", 700027, "Client assertion failed signature validation."
                )
            try:
                claims = jwt.decode(
                    form["client_assertion"],
                    app.certificate.public_key(),  # type: ignore[arg-type]
                    algorithms=["RS256", "PS256"],
                    audience=token_endpoint,
                    options={"require": ["exp", "aud", "iss", "sub"]},
                )
            except jwt.PyJWTError as exc:
                raise TokenError(
                    401, "invalid_client", 700027, f"Client assertion failed signature validation. ({exc})"
                ) from None
            if (
                claims.get("iss", "").lower() != app.client_id
                or claims.get("sub", "").lower() != app.client_id
            ):
                raise TokenError(
                    401, "invalid_client", 700023, "Client assertion audience claim does not match."
                )
            return
        secret = form.get("client_secret")
        if not secret:
            raise TokenError(
                401,
                "invalid_client",
                7000218,
                "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
            )
        if app.secret is None or not secrets.compare_digest(secret.encode(), app.secret.encode()):
            raise TokenError(
                401,
                "invalid_client",
                7000215,
                "Invalid client secret provided. Ensure the secret being sent in the request is the client "
                f"secret value, not the client secret ID, for a secret added to app '{app.client_id}'.",
            )

    def _resource(self, scope: str) -> str:
        scopes = scope.split()
        if len(scopes) != 1 or not scopes[0].endswith("/.default"):
            raise TokenError(
                400,
                "invalid_scope",
                1002012,
                f"The provided value for scope {scope} is not valid. Client credential flows must have a scope "
                "value with /.default suffixed to the resource identifier (application ID URI).",
            )
        resource = scopes[0][: -len("/.default")].rstrip("/")
        if resource.lower() not in self.resources:
            raise TokenError(
                400,
                "invalid_resource",
                500011,
                f"The resource principal named {resource} was not found in the tenant. This can happen if the "
                "application has not been installed by the administrator of the tenant.",
            )
        return resource

    def _issue(self, app: App, resource: str) -> dict[str, Any]:
        now = int(time.time())
        lifetime = max(1, round(self.token_lifetime))
        jti = secrets.token_urlsafe(16)
        claims = {
            "aud": resource,
            "iss": f"https://sts.windows.net/{app.tenant}/",
            "iat": now,
            "nbf": now,
            "exp": now + lifetime,
            "appid": app.client_id,
            "appidacr": "2" if app.certificate is not None else "1",
            "idtyp": "app",
            "oid": app.object_id,
            "sub": app.object_id,
            "tid": app.tenant,
            "ver": "1.0",
            "uti": jti,
        }
        roles = app.roles.get(resource.lower())
        if roles:  # Entra ID leaves the claim out when nothing was granted
            claims["roles"] = sorted(roles)
        token = jwt.encode(claims, self._signing_key(), algorithm="RS256", headers={"kid": self._kid})
        with self._lock:
            self._issued.add(jti)
            self.tokens_issued += 1
        return {
            "token_type": "Bearer",
            "expires_in": lifetime,
            "ext_expires_in": lifetime,
            "access_token": token,
        }

    def _tenant(self, tenant: str) -> str:
        tenant = tenant.lower()
        if tenant not in self.tenants:
            raise TokenError(
                400,
                "invalid_tenant",
                90002,
                f"Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing "
                "into the correct cloud.",
            )
        return tenant

    # -- resource servers ---------------------------------------------------------------------------
    def validate(self, token: str, audience: str) -> dict[str, Any]:
        """The claims of a valid bearer token for ``audience``; raises :class:`InvalidToken` otherwise."""
        try:
            claims = jwt.decode(
                token,
                self._signing_key().public_key(),
                algorithms=["RS256"],
                audience=[audience.rstrip("/"), audience.rstrip("/") + "/"],
                options={"require": ["exp", "aud", "tid", "appid"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenExpired("The access token has expired.") from None
        except jwt.InvalidAudienceError:
            actual = jwt.decode(token, options={"verify_signature": False}).get("aud")
            raise WrongAudience(
                f"The access token is not valid for audience {audience}.", str(actual)
            ) from None
        except jwt.InvalidSignatureError as exc:
            raise BadSignature(f"The access token is invalid: {exc}.") from None
        except jwt.PyJWTError as exc:
            raise InvalidToken(f"The access token is invalid: {exc}.") from None
        with self._lock:
            if claims.get("uti") in self._revoked:
                raise TokenExpired("The access token has expired.")
        return claims


# The demo app registration `foldertrack simulator` and the test fixtures create (not a real tenant).
DEMO_TENANT = "7d6a8f54-5c1e-4b8a-9f00-0000000000a1"
DEMO_CLIENT_ID = "f01d3e7a-2b4c-4d5e-8f60-0000000000c1"
DEMO_CLIENT_SECRET = "foldertrack-demo-secret"
