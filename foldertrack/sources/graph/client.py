"""A thin Microsoft Graph client: one pooled ``requests.Session``, an app-only bearer token, the
per-mailbox throttle, and Graph's answers turned into :mod:`.errors`.

Every call sends ``Prefer: IdType="ImmutableId"`` (message ids survive moves). A 401 gets one retry with
a fresh token (an expired or revoked token MSAL still trusted); nothing else is retried here: 429/503 set
the mailbox's back-off and raise :class:`GraphThrottled`, and the caller's one retry layer re-schedules.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import requests

from foldertrack.crm.errors import describe_transport_error, parse_retry_after
from foldertrack.sources.graph.auth import GraphAuthenticator
from foldertrack.sources.graph.errors import (
    GraphAuthError,
    GraphError,
    GraphNotFound,
    GraphSyncStateNotFound,
    GraphThrottled,
    GraphTransientError,
)
from foldertrack.sources.graph.throttle import MailboxThrottle

GRAPH_URL = "https://graph.microsoft.com/v1.0"
IMMUTABLE_IDS = 'IdType="ImmutableId"'
TRANSIENT_STATUSES = frozenset({408, 500, 502, 504})


def _error_of(response: requests.Response) -> tuple[str | None, str]:
    try:
        body = response.json()
    except ValueError:
        body = None
    if isinstance(body, dict) and isinstance(body.get("error"), dict):
        error = body["error"]
        message = str(error.get("message") or "").strip().splitlines()
        return (str(error.get("code")) if error.get("code") else None), (message[0] if message else "")
    return None, response.reason or ""


class GraphClient:
    def __init__(
        self,
        auth: GraphAuthenticator,
        *,
        base_url: str = GRAPH_URL,
        verify: bool | str = True,
        timeout: float = 30.0,
        throttle: MailboxThrottle | None = None,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.auth = auth
        self.throttle = throttle or MailboxThrottle()
        self._verify = verify
        self._timeout = timeout
        self._session = requests.Session()
        self._session.headers.update({"Accept": "application/json"})
        self.requests_sent = 0

    def close(self) -> None:
        self.throttle.close()
        self._session.close()
        self.auth.close()

    def url(self, path: str) -> str:
        return path if path.startswith(("https://", "http://")) else f"{self.base_url}/{path.lstrip('/')}"

    def request(
        self,
        method: str,
        mailbox: str,
        path: str,
        *,
        params: dict[str, str] | None = None,
        json: Any = None,
        page_size: int | None = None,
        prefer: tuple[str, ...] = (),
    ) -> Any:
        """One call for ``mailbox`` (its throttle); ``path`` is relative to the base URL, or a whole link."""
        url = self.url(path)
        preferences = [IMMUTABLE_IDS, *prefer]
        if page_size:
            preferences.append(f"odata.maxpagesize={page_size}")
        with self.throttle.slot(mailbox):
            response = self._send(method, url, params, json, ", ".join(preferences))
            if response.status_code == 401:  # one fresh token: MSAL may have cached a revoked one
                self.auth.invalidate()
                response = self._send(method, url, params, json, ", ".join(preferences))
        return self._result(mailbox, method, url, response)

    def _send(self, method: str, url: str, params: Any, json: Any, prefer: str) -> requests.Response:
        headers = {"Authorization": f"Bearer {self.auth.token()}", "Prefer": prefer}
        self.requests_sent += 1
        try:
            return self._session.request(
                method,
                url,
                params=params,
                json=json,
                headers=headers,
                timeout=self._timeout,
                verify=self._verify,
            )
        except requests.RequestException as error:
            target = urlsplit(url).netloc
            raise GraphTransientError(f"Graph {method}: {describe_transport_error(target, error)}") from None

    def _result(self, mailbox: str, method: str, url: str, response: requests.Response) -> Any:
        status = response.status_code
        if 200 <= status < 300:
            return response.json() if response.content else None
        code, message = _error_of(response)
        where = urlsplit(url).path
        text = (
            f"Graph {method} {where}: HTTP {status}"
            + (f" {code}" if code else "")
            + (f": {message}" if message else "")
        )
        if status in (429, 503):
            retry_after = parse_retry_after(response.headers.get("Retry-After"))
            self.throttle.back_off(mailbox, retry_after if retry_after is not None else 1.0)
            raise GraphThrottled(text, status, code, retry_after)
        if status == 401 or status == 403:
            raise GraphAuthError(text, status, code)
        if status == 404:
            raise GraphNotFound(text, status, code)
        if status == 410:
            raise GraphSyncStateNotFound(text, status, code)
        if status in TRANSIENT_STATUSES or status >= 500:
            raise GraphTransientError(
                text, status, code, parse_retry_after(response.headers.get("Retry-After"))
            )
        raise GraphError(text, status, code)

    def get(self, mailbox: str, path: str, **kwargs: Any) -> Any:
        return self.request("GET", mailbox, path, **kwargs)

    def get_all(
        self, mailbox: str, path: str, params: dict[str, str] | None = None, **kwargs: Any
    ) -> list[Any]:
        """Every ``value`` entry of a collection, following ``@odata.nextLink``."""
        out: list[Any] = []
        page = self.get(mailbox, path, params=params, **kwargs)
        while True:
            out.extend(page.get("value", []))
            link = page.get("@odata.nextLink")
            if not link:
                return out
            page = self.get(mailbox, link, **kwargs)
