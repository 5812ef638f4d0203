"""The Graph front door under ``/v1.0/``: bearer token, injected faults, per-mailbox concurrency, then the
operation; every answer is Graph's JSON (errors as ``{"error": {"code", "message"}}``).

https://learn.microsoft.com/graph/use-the-api, https://learn.microsoft.com/graph/throttling
A missing, expired, revoked or foreign-audience token gets 401 ``InvalidAuthenticationToken`` before any
fault; Graph is HTTPS only, so a request on the plain HTTP listener is refused the same way.
"""

from __future__ import annotations

import json
import logging
import uuid
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, unquote, urlsplit

from foldertrack.simulator.graph import errors, handlers, subscription_routes
from foldertrack.simulator.graph.query import parse_prefer
from foldertrack.simulator.graph.service import GRAPH_RESOURCE
from foldertrack.simulator.identity import InvalidToken

if TYPE_CHECKING:
    from foldertrack.simulator.graph.service import GraphService

log = logging.getLogger(__name__)

PREFIX = "/v1.0/"
MAX_BATCH = 20
BODY_METHODS = ("POST", "PATCH", "PUT")
JSON_TYPE = (
    "application/json;odata.metadata=minimal;odata.streaming=true;IEEE754Compatible=false;charset=utf-8"
)


def _send(handler: Any, status: int, body: Any, headers: dict[str, str]) -> None:
    data = b"" if body is None else json.dumps(body).encode("utf-8")
    handler.send_response(status)
    if body is not None:
        handler.send_header("Content-Type", JSON_TYPE)
    handler.send_header("Content-Length", str(len(data)))
    handler.send_header("request-id", str(uuid.uuid4()))
    client_id = handler.headers.get("client-request-id")
    handler.send_header("client-request-id", client_id or str(uuid.uuid4()))
    handler.send_header("OData-Version", "4.0")
    for key, value in headers.items():
        handler.send_header(key, value)
    handler.end_headers()
    if data:
        handler.wfile.write(data)


def _claims(handler: Any, service: GraphService, base: str) -> dict[str, Any]:
    scheme, _, token = (handler.headers.get("Authorization") or "").partition(" ")
    try:
        if scheme.lower() != "bearer" or not token.strip():
            raise InvalidToken("Access token is empty.")
        if not base.startswith("https://"):
            raise InvalidToken("Microsoft Graph only accepts requests over https.")
        return service.sim.identity.validate(token.strip(), GRAPH_RESOURCE)
    except InvalidToken as exc:
        service.faults.count("unauthorized")
        raise errors.unauthorized(str(exc)) from None


def serve(handler: Any, service: GraphService, method: str) -> None:
    """Answer one ``/v1.0/…`` request on ``handler`` (a BaseHTTPRequestHandler)."""
    raw = handler._read_body() if method in BODY_METHODS else b""
    parts = urlsplit(handler.path)
    base = f"{getattr(handler.server, 'base_url', '')}/v1.0"
    try:
        claims = _claims(handler, service, base)
        body = None
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                raise errors.bad_request("Unable to read JSON request payload.") from None
        segments = [unquote(s) for s in parts.path[len(PREFIX) :].split("/") if s]
        params = dict(parse_qsl(parts.query, keep_blank_values=True))
        prefs = parse_prefer(handler.headers.get_all("Prefer") or [])
        status, payload, headers = _dispatch(service, method, segments, params, prefs, body, base, claims)
    except errors.GraphError as exc:
        _send(handler, exc.status, exc.body(), exc.headers)
        return
    except Exception as exc:
        log.exception("graph simulator: unexpected error")
        error = errors.GraphError(500, "InternalServerError", f"{type(exc).__name__}: {exc}")
        _send(handler, 500, error.body(), {})
        return
    applied = []
    if prefs.max_page_size and isinstance(payload, dict) and "value" in payload:
        applied.append(f"odata.maxpagesize={prefs.max_page_size}")
    if prefs.immutable_ids:
        applied.append('IdType="ImmutableId"')
    if applied:
        headers = {**headers, "Preference-Applied": ", ".join(applied)}
    _send(handler, status, payload, headers)


def _batch(service: GraphService, body: Any, base: str, claims: dict[str, Any]) -> dict[str, Any]:
    """JSON batching: up to 20 requests, each answered (and throttled) on its own, in order.
    https://learn.microsoft.com/graph/json-batching"""
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        raise errors.bad_request("Invalid batch payload: 'requests' is required.", "BadRequest")
    if len(requests) > MAX_BATCH:
        raise errors.bad_request(f"Number of batch request steps exceeds the maximum of {MAX_BATCH}.")
    responses = []
    for entry in requests:
        if not isinstance(entry, dict) or not isinstance(entry.get("url"), str):
            raise errors.bad_request("Invalid batch payload: every request needs an id, a method and a url.")
        parts = urlsplit(entry["url"])
        segments = [unquote(s) for s in parts.path.split("/") if s]
        if segments and segments[0].lower() == "v1.0":
            segments = segments[1:]
        headers = entry.get("headers") if isinstance(entry.get("headers"), dict) else {}
        prefer = [v for k, v in headers.items() if k.lower() == "prefer"]
        method = str(entry.get("method") or "GET").upper()
        try:
            if segments and segments[0].lower() == "$batch":
                raise errors.bad_request("A batch cannot contain a batch.")
            status, payload, extra = _dispatch(
                service,
                method,
                segments,
                dict(parse_qsl(parts.query, keep_blank_values=True)),
                parse_prefer(prefer),
                entry.get("body"),
                base,
                claims,
            )
        except errors.GraphError as exc:
            status, payload, extra = exc.status, exc.body(), exc.headers
        answer: dict[str, Any] = {"id": str(entry.get("id")), "status": status, "headers": dict(extra)}
        if payload is not None:
            answer["headers"].setdefault("Content-Type", "application/json")
            answer["body"] = payload
        responses.append(answer)
    return {"responses": responses}


def _dispatch(
    service: GraphService,
    method: str,
    segments: list[str],
    params: dict[str, str],
    prefs: Any,
    body: Any,
    base: str,
    claims: dict[str, Any],
) -> handlers.Result:
    head = segments[0].lower() if segments else ""
    if head == "$batch" and len(segments) == 1 and method == "POST":
        return 200, _batch(service, body, base, claims), {}
    if head == "subscriptions":
        service.faults.check("")
        return subscription_routes.route(service, method, segments[1:], body, base, claims, prefs)
    if head != "users" or len(segments) < 3:
        raise errors.GraphError(400, "BadRequest", f"Resource not found for the segment '{head}'.")
    store = service.sim.store
    with store.lock:
        mb = service.mailbox(segments[1])
    key = mb.address.lower()
    service.faults.check(key)
    service.faults.enter(key)
    try:
        hold = service.faults.hold
        if hold is not None:
            hold.wait(service.faults.hold_timeout)
        request = handlers.GraphRequest(method, segments[2:], params, prefs, body, base, segments[1], claims)
        with store.lock:
            return handlers.user_route(service, mb, request)
    finally:
        service.faults.leave(key)
