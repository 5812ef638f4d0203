"""Change notification subscriptions: ``POST/GET/PATCH/DELETE /subscriptions``, the validation handshake,
notifications posted to the subscriber's URL, lifecycle notifications.

https://learn.microsoft.com/graph/api/resources/subscription,
https://learn.microsoft.com/graph/change-notifications-delivery-webhooks,
https://learn.microsoft.com/graph/change-notifications-lifecycle-events

Creating (or nothing else) first POSTs ``?validationToken=…`` to ``notificationUrl`` (and to a different
``lifecycleNotificationUrl``); the endpoint must echo the token as ``text/plain`` with 200 within 10 s,
else 400 ``ValidationError``. Notifications carry no data beyond the message id (``resourceData``), the
``clientState`` and the subscription's expiry; they leave from one notifier thread in batches. Outlook
message subscriptions last at most 10,080 minutes. Deviation: ``http://`` is accepted for loopback URLs
(tests), where Graph insists on HTTPS.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import requests

from foldertrack.simulator.events import Event
from foldertrack.simulator.graph import errors
from foldertrack.simulator.model import EwsError, Mailbox

if TYPE_CHECKING:
    from foldertrack.simulator.graph.service import GraphService

MAX_MINUTES = 10080
VALIDATION_TIMEOUT = 10.0
CHANGE_TYPES = ("created", "updated", "deleted")
LIFECYCLE_EVENTS = ("reauthorizationRequired", "missed", "subscriptionRemoved")
_RESOURCE = re.compile(
    r"^/?(?:users/(?P<user>[^/]+)|(?P<me>me))"
    r"(?:/mailFolders(?:\('(?P<quoted>[^']+)'\)|/(?P<folder>[^/]+)))?/messages$",
    re.IGNORECASE,
)
_LOOPBACK = ("127.0.0.1", "localhost", "::1")


@dataclass(eq=False)
class GraphSubscription:
    id: str
    resource: str
    mailbox: int
    folder: int | None  # folder serial; None: every message of the mailbox
    change_types: frozenset[str]
    notification_url: str
    lifecycle_url: str | None
    client_state: str | None
    expiration: dt.datetime
    application_id: str
    tenant_id: str
    immutable: bool
    user_id: str
    removed: bool = False
    delivered: int = 0
    failed: int = 0
    sent_ids: list[str] = field(default_factory=list)

    def live(self) -> bool:
        return not self.removed and self.expiration > dt.datetime.now(dt.UTC)

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.application_id,
            "changeType": ",".join(c for c in CHANGE_TYPES if c in self.change_types),
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_url,
            "expirationDateTime": _when(self.expiration),
            "creatorId": self.application_id,
            "includeResourceData": False,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": None,
            "encryptionCertificateId": None,
            "notificationUrlAppId": None,
        }


def _when(value: dt.datetime) -> str:
    return value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")


def _parse_when(text: Any) -> dt.datetime:
    if not isinstance(text, str):
        raise errors.bad_request("expirationDateTime is required.", "InvalidRequest")
    try:
        value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise errors.bad_request(f"Invalid expirationDateTime '{text}'.", "InvalidRequest") from None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def check_expiration(value: dt.datetime) -> None:
    now = dt.datetime.now(dt.UTC)
    if value <= now:
        raise errors.bad_request("Subscription expiration must be in the future.", "InvalidRequest")
    if value > now + dt.timedelta(minutes=MAX_MINUTES):
        raise errors.bad_request(
            f"Subscription expiration can only be {MAX_MINUTES} minutes in the future.", "InvalidRequest"
        )


def _check_url(name: str, url: Any) -> str:
    if not isinstance(url, str) or not url:
        raise errors.bad_request(f"{name} is required.", "InvalidRequest")
    parts = urlsplit(url)
    if parts.scheme == "https" or (parts.scheme == "http" and parts.hostname in _LOOPBACK):
        return url
    raise errors.bad_request(f"The {name} must be an https URL.", "InvalidRequest")


def validate_endpoint(url: str, verify: bool | str) -> None:
    """The handshake: POST ``?validationToken=…``; the token must come back verbatim, text/plain, 200."""
    token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
    try:
        response = requests.post(
            url,
            params={"validationToken": token},
            data=b"",
            headers={"Content-Type": "text/plain; charset=utf-8"},
            timeout=VALIDATION_TIMEOUT,
            verify=verify,
        )
    except requests.RequestException as exc:
        raise errors.GraphError(
            400, "ValidationError", f"Subscription validation request failed. {type(exc).__name__}."
        ) from None
    content_type = (response.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if response.status_code != 200 or response.text != token or content_type != "text/plain":
        raise errors.GraphError(
            400,
            "ValidationError",
            "Subscription validation request failed. Notification endpoint must respond with 200 OK "
            "to validation request.",
        )


def parse_subscription_request(service: GraphService, body: dict[str, Any]) -> dict[str, Any]:
    """Check a create request; returns the fields :class:`GraphSubscription` needs (no handshake yet)."""
    if not isinstance(body, dict):
        raise errors.bad_request("The request body must be a JSON object.", "InvalidRequest")
    resource = body.get("resource")
    match = _RESOURCE.match(resource) if isinstance(resource, str) else None
    if match is None:
        raise errors.bad_request(f"Unsupported resource '{resource}'.", "InvalidRequest")
    if match.group("me"):
        raise errors.bad_request("/me is not valid with application permissions.", "InvalidRequest")
    change_types = frozenset(c.strip() for c in str(body.get("changeType") or "").split(",") if c.strip())
    if not change_types or not change_types <= set(CHANGE_TYPES):
        raise errors.bad_request(f"Invalid changeType '{body.get('changeType')}'.", "InvalidRequest")
    expiration = _parse_when(body.get("expirationDateTime"))
    check_expiration(expiration)
    client_state = body.get("clientState")
    if client_state is not None and (not isinstance(client_state, str) or len(client_state) > 128):
        raise errors.bad_request("clientState must be a string of at most 128 characters.", "InvalidRequest")
    store = service.sim.store
    with store.lock:
        mb = service.mailbox(match.group("user"))
        folder_ref = match.group("quoted") or match.group("folder")
        folder = service.folder(mb, folder_ref).serial if folder_ref else None
    lifecycle = body.get("lifecycleNotificationUrl")
    return {
        "resource": resource,
        "mailbox": mb.number,
        "folder": folder,
        "change_types": change_types,
        "notification_url": _check_url("notificationUrl", body.get("notificationUrl")),
        "lifecycle_url": _check_url("lifecycleNotificationUrl", lifecycle) if lifecycle else None,
        "client_state": client_state,
        "expiration": expiration,
        "user_id": service.user_id(mb),
    }


def _event_changes(event: Event) -> list[tuple[str, str, int]]:
    """(Graph change type, EWS item id, folder serial) for one store event; folder events give none."""
    if event.item_id is None:
        return []
    if event.type == "CreatedEvent" or event.type == "CopiedEvent":
        return [("created", event.item_id[0], event.parent_serial)]
    if event.type == "ModifiedEvent":
        return [("updated", event.item_id[0], event.parent_serial)]
    if event.type == "DeletedEvent":
        return [("deleted", event.item_id[0], event.parent_serial)]
    if event.type == "MovedEvent" and event.old_item_id is not None:
        out = [("created", event.item_id[0], event.parent_serial)]
        if event.old_parent_serial is not None:
            out.append(("deleted", event.old_item_id[0], event.old_parent_serial))
        return out
    return []  # NewMailEvent: the CreatedEvent already tells


def notifications_for(
    service: GraphService, sub: GraphSubscription, mb: Mailbox, events: list[Event]
) -> list[dict[str, Any]]:
    """The notifications one batch of store events gives ``sub`` (called under ``store.lock``)."""
    from foldertrack.simulator import ids as ews_ids

    out = []
    for event in events:
        for change, ews_id, folder in _event_changes(event):
            if change not in sub.change_types or (sub.folder is not None and folder != sub.folder):
                continue
            try:
                item = mb.items[ews_ids.decode_id(ews_id, "I").serial]
            except (KeyError, ews_ids.MalformedId, EwsError):
                continue
            message_id = service.ids.item_id(item, sub.immutable)
            path = f"Users/{sub.user_id}/Messages/{message_id}"
            out.append(
                {
                    "subscriptionId": sub.id,
                    "subscriptionExpirationDateTime": _when(sub.expiration),
                    "changeType": change,
                    "resource": path,
                    "resourceData": {
                        "@odata.type": "#Microsoft.Graph.Message",
                        "@odata.id": path,
                        "@odata.etag": f'W/"{item.change_key}"',
                        "id": message_id,
                    },
                    "clientState": sub.client_state,
                    "tenantId": sub.tenant_id,
                }
            )
    return out


def lifecycle_notification(sub: GraphSubscription, event: str) -> dict[str, Any]:
    return {
        "subscriptionId": sub.id,
        "subscriptionExpirationDateTime": _when(sub.expiration),
        "tenantId": sub.tenant_id,
        "clientState": sub.client_state,
        "lifecycleEvent": event,
    }
