"""``/subscriptions`` routes: create (with the validation handshake), list, get, renew, reauthorize, delete.

https://learn.microsoft.com/graph/api/subscription-post-subscriptions
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from foldertrack.simulator.graph import errors
from foldertrack.simulator.graph.query import Preferences

if TYPE_CHECKING:
    from foldertrack.simulator.graph.service import GraphService


def route(
    service: GraphService,
    method: str,
    segments: list[str],
    body: Any,
    base: str,
    claims: dict[str, Any],
    prefs: Preferences,
) -> tuple[int, Any, dict[str, str]]:
    ctx = f"{base}/$metadata#subscriptions"
    if not segments:
        if method == "POST":
            sub = service.create_subscription(body, claims, prefs.immutable_ids)
            return 201, {"@odata.context": f"{ctx}/$entity", **sub.to_json()}, {}
        if method == "GET":
            return (
                200,
                {"@odata.context": ctx, "value": [s.to_json() for s in service.subscriptions(claims)]},
                {},
            )
    elif len(segments) == 1:
        sub = service.subscription(segments[0], claims)
        if method == "GET":
            return 200, {"@odata.context": f"{ctx}/$entity", **sub.to_json()}, {}
        if method == "PATCH":
            service.renew(sub, body)
            return 200, {"@odata.context": f"{ctx}/$entity", **sub.to_json()}, {}
        if method == "DELETE":
            service.delete_subscription(sub)
            return 204, None, {}
    elif len(segments) == 2 and segments[1].lower() == "reauthorize" and method == "POST":
        service.subscription(segments[0], claims)
        return 204, None, {}
    raise errors.GraphError(405, "MethodNotAllowed", f"{method} is not supported on this resource.")
