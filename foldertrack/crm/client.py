"""A thin Dataverse Web API client: one ``requests`` session, pooled connections, verified TLS, timeouts.

It does not retry (tenacity in the delivery layer is the one retry layer), with one exception: a 401 while
MSAL still trusted its token drops the token and repeats the request once with a new one.
At most ``max_concurrency`` requests are in flight at once, well under Dataverse's limit of 52 concurrent
requests per user (service protection limits).

Reference: https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import requests
from requests.adapters import HTTPAdapter

from foldertrack.crm.auth import Authenticator
from foldertrack.crm.errors import error_for_exception, error_for_response

log = logging.getLogger("foldertrack.crm")

DEFAULT_API_VERSION = "9.2"
#: Dataverse answers at most 5,000 rows per page; we ask for fewer (smaller responses, steady progress)
DEFAULT_PAGE_SIZE = 500


@dataclass(frozen=True)
class Page:
    """One page of a collection: its rows, and the link to the next page or (last page) the delta link."""

    rows: list[dict[str, Any]]
    next_link: str | None
    delta_link: str | None


class DataverseClient:
    """``request()`` returns the response for success statuses and for the statuses the caller says it
    handles (``expect``, e.g. 404, 412); everything else raises Transient/PermanentSinkError."""

    def __init__(
        self,
        org_url: str,
        auth: Authenticator,
        *,
        api_version: str = DEFAULT_API_VERSION,
        verify: bool | str = True,
        timeout: float = 30.0,
        max_concurrency: int = 8,
    ) -> None:
        self.org_url = org_url.rstrip("/")
        self.base = f"{self.org_url}/api/data/v{api_version.lstrip('v')}/"
        self.host = urlsplit(self.org_url).netloc
        self.auth = auth
        self.timeout = timeout
        self.verify = verify
        self.session = requests.Session()
        self.session.verify = verify
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=max_concurrency, max_retries=0)
        self.session.mount("https://", adapter)
        self.session.mount("http://", adapter)
        self.session.headers.update(
            {
                "Accept": "application/json",
                "OData-MaxVersion": "4.0",
                "OData-Version": "4.0",
                "User-Agent": "foldertrack",
            }
        )
        auth.prepare(self.session)
        self._slots = threading.BoundedSemaphore(max_concurrency)

    def url(self, path: str) -> str:
        """An absolute URL for ``path`` relative to the API root (absolute links are kept as they are)."""
        return path if path.startswith(("https://", "http://")) else self.base + path.lstrip("/")

    def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        headers: Mapping[str, str] | None = None,
        expect: tuple[int, ...] = (),
    ) -> requests.Response:
        """Send one request (with the one 401 retry); raise a sink error for anything but 2xx and ``expect``."""
        url = self.url(path)
        what = f"{method} {_short(url, self.base)}"
        response = self._send(method, url, what, json, headers)
        if response.status_code == 401 and self.auth.invalidate():
            log.info("Dataverse refused the token (%s): getting a new one", what)
            response = self._send(method, url, what, json, headers)
        # 2xx only: redirects are not followed, and a 3xx (an AD FS login page, http → https) is no success
        if 200 <= response.status_code < 300 or response.status_code in expect:
            return response
        raise error_for_response(what, response)

    def _send(
        self, method: str, url: str, what: str, body: Any, headers: Mapping[str, str] | None
    ) -> requests.Response:
        all_headers = dict(self.auth.headers())
        if body is not None:
            all_headers["Content-Type"] = "application/json; charset=utf-8"
        all_headers.update(headers or {})
        with self._slots:
            try:
                return self.session.request(
                    method,
                    url,
                    json=body,
                    headers=all_headers,
                    timeout=self.timeout,
                    verify=self.verify,  # per request: $REQUESTS_CA_BUNDLE must not replace a configured CA
                    allow_redirects=False,
                )
            except requests.RequestException as error:
                raise error_for_exception(what, self.host, error) from None

    def get_json(self, path: str, *, headers: Mapping[str, str] | None = None) -> dict[str, Any] | None:
        """The JSON body of a GET, or None for 404."""
        response = self.request("GET", path, headers=headers, expect=(404,))
        return None if response.status_code == 404 else response.json()

    def pages(
        self, path: str, *, page_size: int = DEFAULT_PAGE_SIZE, track_changes: bool = False
    ) -> Iterator[Page]:
        """Every page of a collection query, following ``@odata.nextLink``; with ``track_changes`` the last
        page carries the ``@odata.deltaLink`` (``path`` may itself be a delta link)."""
        prefer = [f"odata.maxpagesize={page_size}"]
        if track_changes:
            prefer.insert(0, "odata.track-changes")
        headers = {"Prefer": ", ".join(prefer), "Cache-Control": "no-cache"}
        link: str | None = path
        while link:
            body = self.request("GET", link, headers=headers).json()
            link = body.get("@odata.nextLink")
            yield Page(list(body.get("value", [])), link, body.get("@odata.deltaLink"))

    def close(self) -> None:
        self.session.close()
        closer = getattr(self.auth, "close", None)
        if closer is not None:
            closer()


def _short(url: str, base: str) -> str:
    """The request target without the API root and query, for messages (``emails(…)``)."""
    short = url[len(base) :] if url.startswith(base) else urlsplit(url).path
    return short.split("?", 1)[0]
