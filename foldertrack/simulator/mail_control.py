"""``POST /control/mail`` (loopback only): act as a mailbox's user on a running simulator, so an admin can
try rules without writing a client. ``foldertrack simctl`` is its command line.

Requests are JSON objects with an ``action``:

- ``{"action": "deliver", "mailbox": M, "folder": "Inbox", "subject": S, "from": A, "to": [A…],
  "body": T, "message_id": "<…>"}`` → ``{"item_id": …}`` (Created + NewMail events, like SMTP or an
  inbox rule);
- ``{"action": "move" | "copy", "mailbox": M, "to_folder": F, "item_id": I}`` or, instead of ``item_id``,
  ``"subject": S`` (and ``"folder"``, default Inbox): the newest item with that subject there
  → ``{"item_id": <new id>}``;
- ``{"action": "items", "mailbox": M, "folder": F}`` → ``{"items": [{"id", "subject", "message_id"}…]}``;
- ``{"action": "folders", "mailbox": M}`` → ``{"folders": [paths]}``.

Errors: 400 with ``{"error": …}`` (unknown action, missing field, EWS error such as an unknown folder).
"""

from __future__ import annotations

import json
from typing import Any

from foldertrack.simulator.mime import MailSpec
from foldertrack.simulator.model import EwsError

PATH = "/control/mail"


class BadRequest(Exception):
    """The request names no valid action or lacks a field."""


def serve(handler: Any, sim: Any, method: str) -> bool:
    """Answer one request on :data:`PATH`; returns True (the route is ours)."""
    if method != "POST":
        _reply(handler, 405, {"error": "POST a JSON object with an action"})
        return True
    body = handler._read_body()
    if not handler._loopback():
        _reply(handler, 403, {"error": "control endpoint is loopback-only"})
        return True
    try:
        spec = json.loads(body or b"{}")
        if not isinstance(spec, dict):
            raise BadRequest("the request must be a JSON object")
        _reply(handler, 200, apply(sim, spec))
    except (BadRequest, ValueError) as exc:
        _reply(handler, 400, {"error": str(exc)})
    except EwsError as exc:
        _reply(handler, 400, {"error": str(exc)})
    return True


def apply(sim: Any, spec: dict[str, Any]) -> dict[str, Any]:
    """Run one action on ``sim`` (a :class:`~foldertrack.simulator.Simulator`)."""
    action = spec.get("action")
    actions = {"deliver": _deliver, "move": _move, "copy": _move, "items": _items, "folders": _folders}
    if action not in actions:
        raise BadRequest(f"unknown action {action!r}; known: {', '.join(sorted(actions))}")
    mailbox = sim.mailbox(_text(spec, "mailbox"))
    return actions[action](sim, mailbox, spec)


def _text(spec: dict[str, Any], key: str, default: str | None = None) -> str:
    value = spec.get(key, default)
    if not isinstance(value, str) or not value:
        raise BadRequest(f"{key!r} is required (a non-empty string)")
    return value


def _deliver(sim: Any, mailbox: Any, spec: dict[str, Any]) -> dict[str, Any]:
    to = spec.get("to") or [mailbox.address]
    if not isinstance(to, list) or not all(isinstance(a, str) for a in to):
        raise BadRequest("'to' must be a list of addresses")
    mail = MailSpec(
        subject=_text(spec, "subject"),
        sender=_text(spec, "from", "sender@example.net"),
        to=to,
        body=str(spec.get("body") or "Hello."),
        message_id=spec.get("message_id") or None,
    )
    return {"item_id": mailbox.deliver(mail, folder=_text(spec, "folder", "Inbox"))}


def _move(sim: Any, mailbox: Any, spec: dict[str, Any]) -> dict[str, Any]:
    target = _text(spec, "to_folder")
    item_id = spec.get("item_id")
    if not item_id:
        subject = _text(spec, "subject")
        folder = _text(spec, "folder", "Inbox")
        found = [i for i in mailbox.items(folder) if i.subject == subject]
        if not found:
            raise BadRequest(f"no item with subject {subject!r} in {folder}")
        item_id = found[-1].id  # items() lists in arrival order: the newest is last
    if spec["action"] == "copy":
        return {"item_id": mailbox.copy_item(item_id, target)}
    return {"item_id": mailbox.move_item(item_id, target)}


def _items(sim: Any, mailbox: Any, spec: dict[str, Any]) -> dict[str, Any]:
    items = mailbox.items(_text(spec, "folder", "Inbox"))
    return {"items": [{"id": i.id, "subject": i.subject, "message_id": i.message_id} for i in items]}


def _folders(sim: Any, mailbox: Any, spec: dict[str, Any]) -> dict[str, Any]:
    return {"folders": mailbox.folders()}


def _reply(handler: Any, status: int, payload: dict[str, Any]) -> None:
    body = json.dumps(payload).encode("utf-8")
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)
