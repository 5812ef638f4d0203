"""App-only OAuth2 for EWS (Exchange Online): tokens from MSAL, handed to exchangelib per request.

https://learn.microsoft.com/exchange/client-developer/exchange-web-services/how-to-authenticate-an-ews-application-by-using-oauth
The app needs the ``full_access_as_app`` application permission of Office 365 Exchange Online; its tokens
(scope ``https://outlook.office365.com/.default``) act through impersonation, never as a mailbox.

exchangelib's own ``OAuth2Credentials`` fetch tokens through requests-oauthlib from a fixed
login.microsoftonline.com; instead, :class:`MsalCredentials` plugs into its supported hooks:

- the credentials' ``client`` (an oauthlib client) puts MSAL's current token on each request, so MSAL's
  cache renews it before it expires (:class:`EwsAuthenticator`, the Dataverse client's MSAL logic);
- :class:`OAuth2FailFast`, the retry policy, reads Exchange's refusal (``WWW-Authenticate`` and
  ``x-ms-diagnostics``): an ``invalid_token`` 401 drops the token and the request is sent once more
  with a new one (exchangelib re-sends at once on ``TokenExpiredError``); any other refusal, or a second
  one, raises :class:`EwsAuthError` naming Exchange's reason — never the secret nor the token.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from exchangelib.credentials import OAuth2Credentials
from exchangelib.protocol import FailFast
from oauthlib.oauth2 import BackendApplicationClient, InsecureTransportError, TokenExpiredError
from oauthlib.oauth2.rfc6749.utils import is_secure_transport

from foldertrack.crm.auth import AppAuthenticator
from foldertrack.errors import ExchangeError

#: Exchange Online's application ID URI + ``/.default`` (sovereign clouds and hybrid on-premises
#: Exchange use their own host, e.g. ``https://outlook.office365.us/.default``)
EXCHANGE_ONLINE_SCOPE = "https://outlook.office365.com/.default"
_DIAGNOSTICS = re.compile(r'^\s*(\d+)\s*;\s*reason="(.*)"\s*;\s*error_category="([^"]*)"', re.S)
_HINTS = {
    "invalid_resource": f"a token for another resource; Exchange Online's scope is {EXCHANGE_ONLINE_SCOPE}",
    "invalid_grant": "the app needs the Exchange Online application permission full_access_as_app "
    "(admin consent)",
    "invalid_token": "a new token was refused too: check tenant, authority and clocks",
}


class EwsAuthError(ExchangeError):
    """No usable token for EWS: getting one failed (``code``: Entra ID's, e.g. ``invalid_client``), or
    Exchange refused it (``code``: its ``error_category``, ``status``: 401 or 403)."""

    def __init__(self, message: str, code: str | None = None, status: int | None = None):
        super().__init__(message)
        self.code = code
        self.status = status


class EwsAuthenticator(AppAuthenticator):
    """Client-credentials tokens for EWS; remembers what it handed out, so a refused token is dropped only
    while it is still the current one (many requests refused at once cost one new token)."""

    default_scope = EXCHANGE_ONLINE_SCOPE
    label = "EWS"
    error = EwsAuthError

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._handed_out: str | None = None
        #: why the last renewal failed while an earlier token was still sent (reported if that is refused)
        self.renewal_error: EwsAuthError | None = None

    def bearer(self) -> str:
        """The token for the next request. When renewing fails but an earlier token exists, that one is
        sent (it may well still be valid; if the server refuses it, ``renewal_error`` is the cause)."""
        try:
            token = self.token()
        except EwsAuthError as error:
            with self._lock:
                if self._handed_out is None:
                    raise
                self.renewal_error = error
                return self._handed_out
        with self._lock:
            self._handed_out, self.renewal_error = token, None
        return token

    def refused(self, token: str | None) -> None:
        """The server refused ``token``: drop it from MSAL's cache, unless a newer one is in use already."""
        with self._lock:
            if token is not None and self._handed_out is not None and token != self._handed_out:
                return
        self.invalidate()


class _MsalClient(BackendApplicationClient):
    """The oauthlib client exchangelib's sessions put tokens on requests with: MSAL's token, per request."""

    def __init__(self, client_id: str, authenticator: EwsAuthenticator) -> None:
        super().__init__(client_id)
        self._authenticator = authenticator

    def add_token(self, uri, http_method="GET", body=None, headers=None, token_placement=None, **kwargs):
        if not is_secure_transport(uri):
            raise InsecureTransportError()
        headers = {} if headers is None else headers
        # requests-oauthlib asks twice per request (its session, then its auth hook): one token is enough
        if not any(key.lower() == "authorization" for key in headers):
            headers["Authorization"] = f"Bearer {self._authenticator.bearer()}"
        return uri, headers, body


class MsalCredentials(OAuth2Credentials):
    """exchangelib credentials for app-only OAuth2 whose tokens come from an :class:`EwsAuthenticator`.

    ``identity`` (an ``exchangelib.Identity``) is only for delegate access through one impersonated user;
    with impersonation each account names its mailbox itself. Compared by identity: one per connector.
    """

    def __init__(self, authenticator: EwsAuthenticator, identity: Any = None) -> None:
        super().__init__(
            client_id=authenticator.client_id,
            client_secret=None,  # exchangelib never sees the secret; MSAL holds it
            tenant_id=None,
            identity=identity,
        )
        self.authenticator = authenticator
        self._client = _MsalClient(authenticator.client_id, authenticator)

    @property
    def client(self) -> _MsalClient:  # type: ignore[override]
        return self._client

    @property
    def token_url(self) -> str:
        return f"{self.authenticator.authority}/oauth2/v2.0/token"

    def session_params(self) -> dict[str, Any]:
        """A new exchangelib session starts with a token (else it would fetch one itself)."""
        return {"token": {"access_token": self.authenticator.bearer(), "token_type": "Bearer"}}

    def __eq__(self, other: object) -> bool:
        return self is other

    def __hash__(self) -> int:
        return id(self)

    def __repr__(self) -> str:
        return f"MsalCredentials({self.client_id!r}, authority={self.authenticator.authority!r})"


@dataclass(frozen=True)
class Refusal:
    """Exchange's answer to a token it does not take."""

    status: int
    category: str  # x-ms-diagnostics' error_category, else WWW-Authenticate's error
    reason: str
    code: str | None  # x-ms-diagnostics' number

    @property
    def renewable(self) -> bool:
        """A new token may be taken (expired, revoked, unreadable); not so a wrong audience or role."""
        return self.status == 401 and self.category == "invalid_token"

    def describe(self) -> str:
        code = f" {self.code}" if self.code else ""
        hint = _HINTS.get(self.category)
        text = f"EWS refused the token (HTTP {self.status} {self.category}{code}): {self.reason}"
        return text + (f" ({hint})" if hint else "")


def refusal_of(response: Any) -> Refusal | None:
    """The token refusal in an EWS response (401/403 with a Bearer challenge or ``x-ms-diagnostics``)."""
    if response.status_code not in (401, 403):
        return None
    challenge = response.headers.get("WWW-Authenticate") or ""
    diagnostics = _DIAGNOSTICS.match(response.headers.get("x-ms-diagnostics") or "")
    if diagnostics is None and "bearer" not in challenge.lower():
        return None  # not about a token (Basic auth, a proxy): exchangelib's own handling
    if diagnostics is not None:
        code, reason, category = diagnostics.groups()
        return Refusal(response.status_code, category or "invalid_token", " ".join(reason.split()), code)
    error = re.search(r'error="([^"]*)"', challenge)
    category = error.group(1) if error else "invalid_token"
    return Refusal(response.status_code, category, "no reason given", None)


class OAuth2FailFast(FailFast):
    """exchangelib's fail-fast policy (our dispatcher is the one retry layer) that understands token
    refusals: one immediate re-send with a new token per refused request, then :class:`EwsAuthError`."""

    def __init__(self, authenticator: EwsAuthenticator) -> None:
        self._authenticator = authenticator
        self._retried = threading.local()  # exchangelib re-sends on the thread that was refused

    def raise_response_errors(self, response: Any) -> None:
        refusal = refusal_of(response)
        if refusal is None:
            self._retried.value = False
            super().raise_response_errors(response)
            return
        if refusal.renewable and not getattr(self._retried, "value", False):
            self._retried.value = True
            self._authenticator.refused(_bearer_sent(response))
            raise TokenExpiredError(description="EWS refused the token; re-sending with a new one")
        self._retried.value = False
        renewal = self._authenticator.renewal_error
        if renewal is not None and refusal.category == "invalid_token":
            # the old token was sent because no new one could be had: that is the cause
            raise EwsAuthError(str(renewal), code=renewal.code, status=refusal.status)
        raise EwsAuthError(refusal.describe(), code=refusal.category, status=refusal.status)


def _bearer_sent(response: Any) -> str | None:
    header = str(getattr(response.request, "headers", {}).get("Authorization") or "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return token.strip()


__all__ = [
    "EXCHANGE_ONLINE_SCOPE",
    "EwsAuthError",
    "EwsAuthenticator",
    "MsalCredentials",
    "OAuth2FailFast",
    "Refusal",
    "refusal_of",
]
