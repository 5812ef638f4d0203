"""App-only tokens for Microsoft Graph: MSAL client credentials (secret or certificate).

https://learn.microsoft.com/graph/auth-v2-service. The scope is ``https://graph.microsoft.com/.default``
(the app's ``Mail.Read`` / ``Mail.ReadWrite`` application permissions). MSAL caches the token and renews it
before expiry; :meth:`GraphAuthenticator.invalidate` drops it after a 401. The HTTP session and the
certificate reader are the Dataverse client's (:mod:`foldertrack.crm.auth`), so TLS verification and
timeouts behave the same.
"""

from __future__ import annotations

import threading
from typing import Any
from urllib.parse import urlsplit

import requests

from foldertrack.crm.auth import DEFAULT_AUTHORITY, CertificateCredential, PinnedSession
from foldertrack.crm.errors import describe_transport_error
from foldertrack.ops.logs import register_secret
from foldertrack.sources.graph.errors import GraphAuthError

GRAPH_SCOPE = "https://graph.microsoft.com/.default"


class GraphAuthenticator:
    def __init__(
        self,
        tenant_id: str,
        client_id: str,
        credential: str | CertificateCredential,
        *,
        authority: str = DEFAULT_AUTHORITY,
        scope: str = GRAPH_SCOPE,
        verify: bool | str = True,
        timeout: float = 30.0,
    ) -> None:
        self.authority = f"{authority.rstrip('/')}/{tenant_id}"
        self.client_id = client_id
        self.scope = scope
        self._credential = credential
        if isinstance(credential, str):
            register_secret(credential)
        self._lock = threading.Lock()
        self._app: Any = None
        self._token: str | None = None
        self._http = PinnedSession(verify, timeout)

    def _application(self) -> Any:
        import msal

        if self._app is None:
            credential = self._credential
            client_credential = credential if isinstance(credential, str) else credential.for_msal()
            if not isinstance(credential, str):
                register_secret(client_credential["private_key"])
            try:
                self._app = msal.ConfidentialClientApplication(
                    self.client_id,
                    client_credential=client_credential,
                    authority=self.authority,
                    instance_discovery=False,
                    http_client=self._http,
                )
            except requests.RequestException as error:
                target = urlsplit(self.authority).netloc
                raise GraphAuthError(f"Graph token: {describe_transport_error(target, error)}") from None
            except ValueError as error:
                raise GraphAuthError(f"Graph token: authority {self.authority}: {error}") from None
        return self._app

    def token(self) -> str:
        with self._lock:
            app = self._application()
            try:
                result = app.acquire_token_for_client(scopes=[self.scope])
            except requests.RequestException as error:
                target = urlsplit(self.authority).netloc
                raise GraphAuthError(f"Graph token: {describe_transport_error(target, error)}") from None
            if "access_token" not in result:
                lines = str(result.get("error_description") or "").strip().splitlines()
                raise GraphAuthError(
                    f"Graph token for app {self.client_id} from {self.authority} refused: "
                    f"{result.get('error', 'error')}" + (f": {lines[0]}" if lines else ""),
                    code=result.get("error"),
                )
            token = str(result["access_token"])
            if token != self._token:
                register_secret(token)
                self._token = token
            return token

    def invalidate(self) -> None:
        with self._lock:
            if self._app is not None:
                self._app.remove_tokens_for_client()
            self._token = None

    def close(self) -> None:
        self._http.close()
