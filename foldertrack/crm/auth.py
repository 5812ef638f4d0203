"""Credentials for the Dataverse Web API: OAuth2 client credentials through MSAL, or NTLM on-premises.

MSAL keeps the token in its cache and fetches a new one shortly before it expires; ``invalidate()`` drops
it, for the one retry after a 401 (a token the server no longer accepts although MSAL still trusts it).
Secrets are registered with the log redactor, and never appear in an error: Entra ID's own error code and
first description line do (``invalid_client: AADSTS7000215: Invalid client secret provided…``).

Reference: https://learn.microsoft.com/entra/msal/python/ (``ConfidentialClientApplication``,
``acquire_token_for_client``) and https://learn.microsoft.com/power-apps/developer/data-platform/authenticate-oauth
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

import requests

from foldertrack.crm.errors import DataverseAuthError, describe_transport_error
from foldertrack.errors import ConfigError
from foldertrack.ops.logs import register_credentials, register_secret

DEFAULT_AUTHORITY = "https://login.microsoftonline.com"


class Authenticator(Protocol):
    """What the client needs from a credential: headers for a request, and a way to drop a bad token."""

    def prepare(self, session: requests.Session) -> None: ...

    def headers(self) -> dict[str, str]: ...

    def invalidate(self) -> bool:
        """Forget the current token; True when a retry with a new one makes sense."""
        ...


@dataclass(frozen=True)
class CertificateCredential:
    """A PEM file holding the app's private key and its certificate (as uploaded to the app registration)."""

    path: Path

    def for_msal(self) -> dict[str, str]:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes

        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as error:
            raise ConfigError(
                f"dataverse.certificate_file {self.path}: cannot read ({error.strerror or error})"
            ) from None
        certificate = re.search(r"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", text, re.S)
        key = re.search(r"-----BEGIN ([A-Z ]*PRIVATE KEY)-----.+?-----END \1-----", text, re.S)
        if certificate is None or key is None:
            raise ConfigError(
                f"dataverse.certificate_file {self.path}: needs the private key and the certificate, both PEM"
            )
        try:
            cert = x509.load_pem_x509_certificate(certificate.group(0).encode())
        except ValueError as error:
            raise ConfigError(f"dataverse.certificate_file {self.path}: bad certificate ({error})") from None
        return {
            "private_key": key.group(0),
            "thumbprint": cert.fingerprint(hashes.SHA1()).hex(),
            "public_certificate": certificate.group(0),
        }


class PinnedSession(requests.Session):
    """MSAL's HTTP client: always our TLS verification and timeout. (With a plain session,
    ``$REQUESTS_CA_BUNDLE`` would replace a configured CA file, and MSAL sets no timeout of its own.)"""

    def __init__(self, verify: bool | str, timeout: float) -> None:
        super().__init__()
        self.verify = verify
        self._timeout = timeout

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        kwargs.setdefault("timeout", self._timeout)
        if kwargs.get("verify") in (None, True):
            kwargs["verify"] = self.verify
        return super().request(method, url, *args, **kwargs)


class MsalAuthenticator:
    """Client-credentials tokens for ``https://ORG/.default`` (or ``scope``) from Entra ID or any compatible
    authority. ``label`` and ``error`` name the service in messages and the error raised; the Graph source
    subclasses this through :class:`AppAuthenticator` (Graph, EWS)."""

    label = "Dataverse"
    error: type[Exception] = DataverseAuthError

    def __init__(
        self,
        org_url: str,
        tenant_id: str,
        client_id: str,
        credential: str | CertificateCredential,
        *,
        authority: str = DEFAULT_AUTHORITY,
        verify: bool | str = True,
        timeout: float = 30.0,
        scope: str | None = None,
    ) -> None:
        parts = urlsplit(org_url)
        self.scope = scope or f"{parts.scheme}://{parts.netloc}/.default"
        self.authority = f"{authority.rstrip('/')}/{tenant_id}"
        self.client_id = client_id
        self._credential = credential
        if isinstance(credential, str):
            register_secret(credential)
        self._verify = verify
        self._timeout = timeout
        self._lock = threading.Lock()
        self._app: Any = None
        self._token: str | None = None
        self._http = PinnedSession(verify, timeout)

    def prepare(self, session: requests.Session) -> None:
        """Nothing to set on the session: the bearer token goes into each request's headers."""

    def _application(self) -> Any:
        import msal

        if self._app is None:
            credential = self._credential
            client_credential = credential if isinstance(credential, str) else credential.for_msal()
            if not isinstance(credential, str):
                register_secret(client_credential["private_key"])
            try:
                # builds the authority from its OpenID configuration: a network call
                self._app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=client_credential,
                    authority=self.authority,
                    instance_discovery=False,
                    http_client=self._http,
                )
            except requests.RequestException as error:
                target = urlsplit(self.authority).netloc
                raise self.error(f"{self.label} token: {describe_transport_error(target, error)}") from None
            except ValueError as error:  # MSAL: authority unknown or its discovery document unusable
                raise self.error(f"{self.label} token: authority {self.authority}: {error}") from None
        return self._app

    def token(self) -> str:
        """A valid access token (MSAL's cache, renewed before expiry); registered for log masking."""
        with self._lock:
            app = self._application()
            try:
                result = app.acquire_token_for_client(scopes=[self.scope])
            except requests.RequestException as error:
                target = urlsplit(self.authority).netloc
                raise self.error(f"{self.label} token: {describe_transport_error(target, error)}") from None
            if "access_token" not in result:
                raise self.error(self._describe_failure(result), code=result.get("error"))
            token = str(result["access_token"])
            if token != self._token:
                register_secret(token)
                self._token = token
        return token

    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token()}"}

    def _describe_failure(self, result: dict[str, Any]) -> str:
        description = str(result.get("error_description") or "").strip().splitlines()
        first = description[0] if description else ""
        return (
            f"{self.label} token for app {self.client_id} from {self.authority} refused: "
            f"{result.get('error', 'error')}" + (f": {first}" if first else "")
        )

    def invalidate(self) -> bool:
        with self._lock:
            if self._app is None:
                return False
            self._app.remove_tokens_for_client()
            self._token = None
            return True

    def close(self) -> None:
        with self._lock:
            self._http.close()


class NtlmAuthenticator:
    """Windows authentication against Dynamics 365 on-premises (``requests_ntlm``); no tokens to refresh."""

    def __init__(self, username: str, password: str) -> None:
        register_credentials(username, password)
        self._username = username
        self._password = password

    def prepare(self, session: requests.Session) -> None:
        from requests_ntlm import HttpNtlmAuth

        session.auth = HttpNtlmAuth(self._username, self._password)

    def headers(self) -> dict[str, str]:
        return {}

    def invalidate(self) -> bool:
        return False


class AppAuthenticator(MsalAuthenticator):
    """Client-credentials tokens for a fixed Microsoft API (Graph, Exchange Online) rather than a Dataverse
    organisation: subclasses name ``default_scope``, ``label`` and ``error``."""

    default_scope: str = ""

    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        credential: str | CertificateCredential,
        *,
        authority: str = DEFAULT_AUTHORITY,
        scope: str | None = None,
        verify: bool | str = True,
        timeout: float = 30.0,
    ) -> None:
        scope = scope or self.default_scope
        super().__init__(
            scope,
            tenant_id,
            client_id,
            credential,
            authority=authority,
            verify=verify,
            timeout=timeout,
            scope=scope,
        )
