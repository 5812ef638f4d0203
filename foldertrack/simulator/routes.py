"""What the simulator serves besides EWS, on both listeners: the Entra ID token endpoint
(``/{tenant}/v2.0/.well-known/openid-configuration``, ``/{tenant}/oauth2/v2.0/token``,
``/{tenant}/discovery/v2.0/keys``), the Dataverse Web API (``/api/data/v9.2/``) and the CRM side of the
loopback control endpoint (``/control/faults`` with ``"target": "crm"``).

``handle(handler, method)`` answers the request and returns True, or returns False without reading
anything so the EWS routes take over.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

from foldertrack.simulator import mail_control
from foldertrack.simulator.dataverse import http as dataverse_http
from foldertrack.simulator.graph import control as graph_control
from foldertrack.simulator.graph import http as graph_http
from foldertrack.simulator.identity import TokenError

IDENTITY = re.compile(
    r"^/([A-Za-z0-9._-]+)/(v2\.0/\.well-known/openid-configuration|oauth2/v2\.0/token|discovery/v2\.0/keys)$"
)
CONTROL_PATH = "/control/faults"
BODY_METHODS = ("POST", "PATCH", "PUT")


def _base(handler: Any) -> str:
    server = handler.server
    base = getattr(server, "base_url", None)
    if base:
        return str(base)
    host, port = server.server_address[:2]
    host = f"[{host}]" if ":" in str(host) else host
    return f"http://{host}:{port}"


def _json(handler: Any, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode("utf-8")
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    handler.send_header("Cache-Control", "no-store, no-cache")
    handler.end_headers()
    handler.wfile.write(body)


def handle(handler: Any, method: str) -> bool:
    parts = urlsplit(handler.path)
    path = parts.path
    sim = handler.server.sim
    if path.lower().startswith("/api/data/"):
        body = handler._read_body() if method in BODY_METHODS else b""
        if not path.startswith(dataverse_http.API_PREFIX + "/") and path != dataverse_http.API_PREFIX:
            _json(
                handler,
                404,
                {"error": {"code": "0x8006088a", "message": f"Resource not found for the segment '{path}'."}},
            )
        else:
            dataverse_http.serve(handler, sim, method, body)
        return True
    match = IDENTITY.match(path)
    if match is not None:
        _identity(handler, sim, method, match.group(1), match.group(2))
        return True
    if path.lower() == CONTROL_PATH:
        return _control(handler, sim, method, parts.query)
    if path.startswith(graph_http.PREFIX):  # Microsoft Graph (simulator/graph/, H8)
        graph_http.serve(handler, sim.graph, method)
        return True
    if path.lower() == mail_control.PATH:  # deliver/move/copy for `foldertrack simctl` (H7)
        return mail_control.serve(handler, sim, method)
    return False


def _identity(handler: Any, sim: Any, method: str, tenant: str, endpoint: str) -> None:
    base = _base(handler)
    try:
        if endpoint.endswith("openid-configuration") and method == "GET":
            _json(handler, 200, sim.identity.openid_configuration(base, tenant))
        elif endpoint.endswith("keys") and method == "GET":
            _json(handler, 200, sim.identity.jwks())
        elif endpoint.endswith("token") and method == "POST":
            body = handler._read_body() or b""
            form = {k: v for k, v in parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True)}
            _basic_client(handler, form)
            _json(handler, 200, sim.identity.token(tenant, form, f"{base}/{tenant}/oauth2/v2.0/token"))
        else:
            if method in BODY_METHODS:
                handler._read_body()
            _json(
                handler,
                405,
                {"error": "invalid_request", "error_description": f"{method} is not supported here."},
            )
    except TokenError as exc:
        _json(handler, exc.status, exc.body())


def _basic_client(handler: Any, form: dict[str, str]) -> None:
    """``client_secret_basic``: client id and secret in the Authorization header."""
    scheme, _, value = (handler.headers.get("Authorization") or "").partition(" ")
    if scheme.lower() != "basic" or "client_secret" in form:
        return
    try:
        client_id, _, secret = base64.b64decode(value.strip(), validate=True).decode("utf-8").partition(":")
    except (binascii.Error, UnicodeDecodeError):
        return
    form.setdefault("client_id", unquote(client_id))
    form["client_secret"] = unquote(secret)


def _control(handler: Any, sim: Any, method: str, query: str) -> bool:
    """``{"target": "crm", …}`` goes to ``sim.crm.faults``; anything else to the EWS faults, unchanged."""
    loopback = handler._loopback()
    if method == "GET":
        if dict(parse_qsl(query)).get("target") == "graph":  # Graph faults (simulator/graph/control.py, H8)
            return graph_control.serve(handler, sim.graph, None, loopback)
        if dict(parse_qsl(query)).get("target") != "crm":
            return False
        if not loopback:
            _json(handler, 403, {"error": "control endpoint is loopback-only"})
        else:
            _json(handler, 200, sim.crm.faults.snapshot())
        return True
    if method != "POST":
        return False
    body = handler._read_body()
    try:
        spec = json.loads(body or b"{}")
    except ValueError:
        spec = None
    if isinstance(spec, dict) and spec.get("target") == "graph":  # Graph faults (H8)
        return graph_control.serve(handler, sim.graph, spec, loopback)
    if not isinstance(spec, dict) or spec.get("target") != "crm":
        handler._control(body or b"")  # the EWS faults' own handling
        return True
    if not loopback:
        _json(handler, 403, {"error": "control endpoint is loopback-only"})
        return True
    try:
        _json(handler, 200, sim.crm.faults.apply(spec))
    except (ValueError, KeyError, TypeError) as exc:
        _json(handler, 400, {"error": str(exc)})
    return True
