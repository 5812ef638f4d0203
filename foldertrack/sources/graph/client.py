"""A thin Microsoft Graph client: one pooled ``requests.Session``, an app-only bearer token, the
per-mailbox throttle, and Graph's answers turned into :mod:`.errors`.

Every call sends ``Prefer: IdType="ImmutableId"`` (message ids survive moves). A 401 gets one retry with
a fresh token (an expired or revoked token MSAL still trusted); nothing else is retried here: 429/503 set
the mailbox's back-off and raise :class:`GraphThrottled`, and the caller's one retry layer re-schedules.
"""

from __future__ import annotations

from dataclasses import dataclass
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
MAX_BATCH = 20  # Graph's limit of steps per $batch request


@dataclass(frozen=True)
class BatchResult:
    """One ``$batch`` step's answer: ``body`` on success, else ``error`` (a :class:`GraphError`)."""

    status: int
    body: Any
    error: GraphError | None


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

    def batch(self, mailbox: str, calls: list[tuple[str, str, Any]]) -> list[BatchResult]:
        """``(method, path, body)`` calls for one mailbox through ``$batch``, 20 per request; results in
        order. A throttled step sets the mailbox's back-off; its result carries the error (nothing raised)."""
        results: list[BatchResult] = []
        for start in range(0, len(calls), MAX_BATCH):
            chunk = calls[start : start + MAX_BATCH]
            steps = []
            for index, (method, path, body) in enumerate(chunk):
                step: dict[str, Any] = {
                    "id": str(index),
                    "method": method,
                    "url": "/" + path.lstrip("/"),
                    "headers": {"Prefer": IMMUTABLE_IDS},
                }
                if body is not None:
                    step["body"] = body
                    step["headers"]["Content-Type"] = "application/json"
                steps.append(step)
            answer = self.request("POST", mailbox, "$batch", json={"requests": steps})
            by_id = {str(r.get("id")): r for r in answer.get("responses", [])}
            for index in range(len(chunk)):
                results.append(self._batch_result(mailbox, by_id.get(str(index))))
        return results

    def _batch_result(self, mailbox: str, response: dict[str, Any] | None) -> BatchResult:
        if response is None:
            return BatchResult(500, None, GraphTransientError("Graph $batch: a step got no response"))
        status = int(response.get("status") or 500)
        body = response.get("body")
        if 200 <= status < 300:
            return BatchResult(status, body, None)
        error = body.get("error") if isinstance(body, dict) and isinstance(body.get("error"), dict) else {}
        code, message = error.get("code"), str(error.get("message") or "")
        text = (
            f"Graph $batch step: HTTP {status}"
            + (f" {code}" if code else "")
            + (f": {message}" if message else "")
        )
        headers = {k.lower(): v for k, v in (response.get("headers") or {}).items()}
        if status in (429, 503):
            retry_after = parse_retry_after(headers.get("retry-after"))
            self.throttle.back_off(mailbox, retry_after if retry_after is not None else 1.0)
            return BatchResult(status, None, GraphThrottled(text, status, code, retry_after))
        kind = {
            404: GraphNotFound,
            410: GraphSyncStateNotFound,
            401: GraphAuthError,
            403: GraphAuthError,
        }.get(status, GraphTransientError if status >= 500 else GraphError)
        return BatchResult(status, None, kind(text, status, code))

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
