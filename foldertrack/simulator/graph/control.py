"""Graph faults on the loopback control endpoint (``/control/faults``), for a simulator running as its own
process (``foldertrack simulator``, benchmarks, the demo): ``POST {"target": "graph", "action": …}`` and
``GET ?target=graph`` (the snapshot).

Actions: ``throttle`` (``requests``, ``seconds``, ``retry_after``, ``status``, ``mailbox``),
``concurrency_limit`` (``limit``), ``expire_delta_tokens``, ``drop_notifications`` (``count``),
``notification_delay`` (``seconds``), ``lifecycle`` (``subscription``, ``event``), ``expire_subscriptions``,
``clear``.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from foldertrack.simulator.graph.service import GraphService


def _json(handler: Any, status: int, payload: Any) -> None:
    body = json.dumps(payload).encode("utf-8")
    handler.send_response(status)
    handler.send_header("Content-Type", "application/json; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    handler.end_headers()
    handler.wfile.write(body)


def snapshot(service: GraphService) -> dict[str, Any]:
    return {
        **service.faults.snapshot(),
        "subscriptions": [s.id for s in service.subscriptions()],
        "notifications_posted": service.notifier.posted,
        "notifications_failed": service.notifier.failed,
    }


def apply(service: GraphService, spec: dict[str, Any]) -> dict[str, Any]:
    """Apply one fault action; raises ValueError/KeyError/TypeError for a bad spec."""
    action = spec.get("action")
    faults = service.faults
    if action == "throttle":
        faults.throttle(
            requests=spec.get("requests"),
            seconds=spec.get("seconds"),
            retry_after=float(spec.get("retry_after", 1)),
            status=int(spec.get("status", 429)),
            mailbox=spec.get("mailbox"),
        )
    elif action == "concurrency_limit":
        faults.concurrency_limit = int(spec["limit"])
    elif action == "expire_delta_tokens":
        faults.expire_delta_tokens()
    elif action == "drop_notifications":
        faults.drop_notifications(int(spec.get("count", 1)))
    elif action == "notification_delay":
        service.notification_delay = float(spec["seconds"])
    elif action == "lifecycle":
        service.lifecycle(str(spec["subscription"]), str(spec["event"]))
    elif action == "expire_subscriptions":
        service.expire_subscriptions()
    elif action == "clear":
        faults.clear()
        service.notification_delay = 0.0
    else:
        raise ValueError(f"unknown graph fault action {action!r}")
    return snapshot(service)


def serve(handler: Any, service: GraphService, spec: dict[str, Any] | None, loopback: bool) -> bool:
    """Answer a control request aimed at Graph (``spec`` None: the GET snapshot)."""
    if not loopback:
        _json(handler, 403, {"error": "control endpoint is loopback-only"})
    elif spec is None:
        _json(handler, 200, snapshot(service))
    else:
        try:
            _json(handler, 200, apply(service, spec))
        except (ValueError, KeyError, TypeError) as exc:
            _json(handler, 400, {"error": str(exc)})
    return True
