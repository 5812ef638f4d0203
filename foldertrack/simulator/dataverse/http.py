"""The Dataverse front door: outage, bearer token check, injected faults, the per-user request and
concurrency limits, then the operation; every answer in Dataverse's JSON shape with ``OData-Version: 4.0``.

https://learn.microsoft.com/power-apps/developer/data-platform/webapi/compose-http-requests-handle-errors
A missing, expired or foreign-audience token gets 401 with ``WWW-Authenticate: Bearer authorization_uri=…``
(as Dataverse answers) before any other fault: service protection is evaluated per authenticated user.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from foldertrack.simulator.dataverse import errors
from foldertrack.simulator.dataverse.handlers import Request, Response, dispatch
from foldertrack.simulator.dataverse.metadata import MetadataMissing
from foldertrack.simulator.identity import InvalidToken

if TYPE_CHECKING:
    from foldertrack.simulator.simulator import Simulator

log = logging.getLogger(__name__)

API_PREFIX = "/api/data/v9.2"


def _send(handler: Any, response: Response) -> None:
    body = b"" if response.body is None else json.dumps(response.body).encode("utf-8")
    handler.send_response(response.status)
    if response.body is not None:
        handler.send_header("Content-Type", "application/json; odata.metadata=minimal")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("OData-Version", "4.0")
    handler.send_header("x-ms-service-request-id", str(uuid.uuid4()))
    for key, value in response.headers.items():
        handler.send_header(key, value)
    handler.end_headers()
    if body:
        handler.wfile.write(body)


def _error(handler: Any, exc: errors.DataverseError) -> None:
    _send(handler, Response(exc.status, exc.body(), exc.headers))


def serve(handler: Any, sim: Simulator, method: str, body: bytes | None) -> None:
    """Answer one ``/api/data/v9.2/…`` request on ``handler`` (a BaseHTTPRequestHandler)."""
    crm = sim.crm
    base = getattr(handler.server, "base_url", "")
    outage = crm.faults.take_outage()
    if outage == "reset":
        handler._reset()
        return
    if outage == "503":
        _send(handler, Response(503, None, {"Retry-After": "1"}))
        return
    principal = _authenticate(handler, sim, base)
    if principal is None:
        return
    fault = crm.faults.take()  # after authentication: service protection counts per user
    if fault is not None and fault[0] == "http":
        status = int(fault[1])
        _error(
            handler,
            errors.DataverseError(status, "0x80040216", f"An unexpected error occurred. (HTTP {status})"),
        )
        return
    if fault is not None and fault[0] == "throttle":
        _error(handler, errors.too_many_requests(fault[1]))
        return
    faults = crm.faults
    if faults.request_limit is not None:
        wait = faults.window.admit(principal, faults.request_limit, faults.request_window)
        if wait is not None:
            faults.count_rate_refusal()
            _error(handler, errors.too_many_requests(wait, faults.request_limit, faults.request_window))
            return
    limit = crm.faults.concurrency_limit
    if not crm.faults.in_flight.enter(principal, limit):
        crm.faults.count_concurrency_refusal()
        _error(handler, errors.too_many_concurrent(limit, 1))
        return
    try:
        if crm.faults.response_delay_ms:
            sim.stopping.wait(crm.faults.response_delay_ms / 1000.0)
        if body is None:
            raise errors.DataverseError(400, "0x80048d19", "The request body could not be read.")
        parts = urlsplit(handler.path)
        request = Request(
            method=method,
            path=parts.path[len(API_PREFIX) :].lstrip("/"),
            query=dict(parse_qsl(parts.query, keep_blank_values=True)),
            headers={k.lower(): v for k, v in handler.headers.items()},
            body=body,
            base=f"{base}{API_PREFIX}",
            prefer=handler.headers.get_all("Prefer") or [],
        )
        response = dispatch(crm, request)
    except errors.DataverseError as exc:
        _error(handler, exc)
        return
    except MetadataMissing as exc:
        _error(handler, errors.DataverseError(500, "0x80040216", str(exc)))
        return
    except Exception as exc:
        log.exception("dataverse simulator: unexpected error")
        _error(handler, errors.DataverseError(500, "0x80040216", f"{type(exc).__name__}: {exc}"))
        return
    finally:
        crm.faults.in_flight.leave(principal)
    _send(handler, response)


def _authenticate(handler: Any, sim: Simulator, base: str) -> str | None:
    """The caller's user id (token ``oid``), or None after answering 401."""
    header = handler.headers.get("Authorization") or ""
    scheme, _, token = header.partition(" ")
    challenge = f"Bearer authorization_uri={base}/common/oauth2/authorize, resource_id={base}/"
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("Bearer token is missing.")
        if not base.startswith("https://"):
            raise InvalidToken("Dataverse only accepts requests over https.")
        claims = sim.identity.validate(token.strip(), base)
    except InvalidToken as exc:
        sim.crm.faults.count_unauthorized()
        reason = str(exc).replace('"', "'")
        _send(
            handler,
            Response(
                401,
                None,
                {"WWW-Authenticate": f'{challenge}, error="invalid_token", error_description="{reason}"'},
            ),
        )
        return None
    return str(claims.get("oid") or claims.get("appid"))
