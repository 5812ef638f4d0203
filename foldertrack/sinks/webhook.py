"""The webhook sink: one signed JSON POST per tracking decision, for CRMs and automation tools without a
dedicated plug-in (``sink.name = "webhook"``).

Every body validates against ``webhook.schema.json`` (shipped beside this module). Headers:

- ``Idempotency-Key``: the outbox entry's key, identical on every retry of one decision and new for the
  next decision; outside a delivery worker it is derived from op, mail key and a hash of the body.
- ``X-Foldertrack-Signature: t=<unix seconds>,v1=<hex>``: HMAC-SHA256 with the shared secret over
  ``"<t>." + raw body`` (the scheme Stripe uses). A receiver recomputes it, compares in constant time and
  rejects a ``t`` older than a few minutes (:func:`verify_signature` does both).

Answers: 2xx is success; 429/503 (honouring ``Retry-After``), 408, other 5xx, timeouts and connection or
TLS failures are transient (retried by delivery); any other answer is a permanent rejection carrying the
receiver's own message. Redirects are not followed: configure the final URL.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from email.utils import parsedate_to_datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import requests

from foldertrack import __version__
from foldertrack.config.secrets import SECRETS, resolve_secret
from foldertrack.errors import ConfigError, PermanentSinkError, TransientSinkError
from foldertrack.model import Activity
from foldertrack.sinks.base import ActivitySink, DeliveryOp, UpsertOutcome, current_delivery
from foldertrack.sinks.webhook_payload import (
    PAYLOAD_VERSION,
    SIGNATURE_HEADER,
    activity_document,
    derived_key,
    payload_schema,
    sign,
    verify_signature,
)

if TYPE_CHECKING:
    from sqlalchemy import Connection

log = logging.getLogger(__name__)

__all__ = [
    "SIGNATURE_HEADER",
    "WebhookActivitySink",
    "escape_message",
    "payload_schema",
    "sign",
    "verify_signature",
]

#: how much of a receiver's answer goes into an error (and so a dead letter)
MAX_MESSAGE_CHARS = 500
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def escape_message(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A receiver's text made safe for one log line: control characters escaped, cut at ``limit``."""
    escaped = _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text.strip())
    return escaped if len(escaped) <= limit else escaped[: limit - 1] + "…"


def _retry_after(response: requests.Response) -> float | None:
    """``Retry-After`` in seconds (delta or HTTP date), or None when absent or unreadable."""
    value = (response.headers.get("Retry-After") or "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError, IndexError, OverflowError):
        return None


def _receiver_message(response: requests.Response) -> tuple[str, str | None]:
    """(message, code) from the receiver's answer: JSON ``message``/``error`` and ``code`` if it sent them."""
    text = response.text or ""
    code = None
    try:
        data = response.json()
    except ValueError:
        data = None
    if isinstance(data, dict):
        inner = data.get("error") if isinstance(data.get("error"), dict) else data
        message = inner.get("message") or (data.get("error") if isinstance(data.get("error"), str) else None)
        code = inner.get("code") if isinstance(inner.get("code"), (str, int)) else None
        text = str(message) if message else text
    return escape_message(text or response.reason or ""), (str(code) if code is not None else None)


def _cause(error: Exception) -> str:
    """The root cause of a transport failure in a few words (``[Errno 111] Connection refused``). Never
    the exception's text as a whole: requests puts the URL (with its query, which may hold a token) in it."""
    text = str(error)
    found = re.search(r"\[Errno -?\d+\] [^'\")\]]+", text)
    if found:
        return found.group()
    ssl = re.search(r"\[SSL: [A-Z_]+\][^'\")\]]*", text)
    if ssl:
        return ssl.group().strip()
    return type(error).__name__


class WebhookActivitySink(ActivitySink):
    """POSTs ``upsert``/``untrack``/``delete`` decisions to ``webhook.url``, signed with the shared secret."""

    name = "webhook"

    def __init__(
        self,
        url: str,
        secret: str,
        *,
        timeout: float = 10.0,
        ca_file: str | os.PathLike[str] | None = None,
        max_concurrency: int = 4,
        include_body: bool = True,
        include_attachments: bool = False,
    ) -> None:
        if not secret:
            raise ConfigError("webhook secret is empty")
        self.url = url
        self._secret = secret.encode("utf-8")
        self.timeout = timeout
        self.verify: str | bool = str(ca_file) if ca_file else True
        self.max_concurrency = max_concurrency
        self.include_body = include_body
        self.include_attachments = include_attachments
        parts = urlsplit(url)
        host = f"[{parts.hostname}]" if ":" in (parts.hostname or "") else parts.hostname or ""
        #: the URL for messages and logs: no user:password, no query (either may hold a token)
        self.display_url = urlunsplit(
            parts._replace(netloc=f"{host}:{parts.port}" if parts.port else host, query="", fragment="")
        )
        if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "::1", "localhost"):
            log.warning("webhook.url %s is plain http: mail content travels unencrypted", self.display_url)
        self._local = threading.local()
        self._sessions: list[requests.Session] = []
        self._lock = threading.Lock()

    @classmethod
    def create(cls, config: Any, engine: Any = None) -> WebhookActivitySink:
        """Plug-in factory: ``[webhook]`` settings; ConfigError naming what is missing."""
        settings = config.webhook
        if not settings.url:
            raise ConfigError('webhook.url is not set (needed for sink.name = "webhook")')
        secret = settings.secret
        if secret is None:
            spec = next(s for s in SECRETS if s.section == "webhook")
            _, note = resolve_secret(spec, settings.secret_file, os.environ)
            raise ConfigError(f"webhook secret is {note}")
        return cls(
            settings.url,
            secret.reveal(),
            timeout=settings.timeout,
            ca_file=settings.ca_file,
            max_concurrency=settings.max_concurrency,
            include_body=settings.include_body,
            include_attachments=settings.include_attachments,
        )

    # -- the sink contract ---------------------------------------------------------------------------------

    def upsert(self, activity: Activity, conn: Connection | None = None) -> UpsertOutcome:
        document = activity_document(
            activity, include_body=self.include_body, include_attachments=self.include_attachments
        )
        response = self._post("upsert", activity.key, activity.mailbox, document)
        if response.status_code == 201:
            return "created"
        try:
            outcome = (response.json() or {}).get("outcome")
        except (ValueError, AttributeError):
            outcome = None
        return outcome if outcome in ("created", "updated", "unchanged") else "updated"

    def untrack(self, key: str, conn: Connection | None = None) -> bool:
        return self._post("untrack", key, None, None).status_code not in (404, 410)

    def delete(self, key: str, conn: Connection | None = None) -> bool:
        return self._post("delete", key, None, None).status_code not in (404, 410)

    def close(self) -> None:
        with self._lock:
            sessions, self._sessions = self._sessions, []
        for session in sessions:
            session.close()

    # -- HTTP ----------------------------------------------------------------------------------------------

    def body(self, op: DeliveryOp, key: str, mailbox: str | None, document: dict | None) -> tuple[str, bytes]:
        """(idempotency key, raw JSON body) for one decision; deterministic, so a retry repeats it."""
        delivery = current_delivery()
        if delivery is not None and delivery.key == key and delivery.op == op:
            idempotency_key = delivery.idempotency_key
            mailbox = delivery.mailbox  # whose decision it is (the activity's owner may be another)
        else:
            idempotency_key = derived_key(op, key, {"mailbox": mailbox, "activity": document})
        data: dict[str, Any] = {
            "version": PAYLOAD_VERSION,
            "idempotency_key": idempotency_key,
            "op": op,
            "key": key,
            "mailbox": mailbox,
        }
        if document is not None:
            data["activity"] = document
        raw = json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return idempotency_key, raw

    def _session(self) -> requests.Session:
        session = getattr(self._local, "session", None)
        if session is None:
            session = requests.Session()
            session.headers["User-Agent"] = f"foldertrack/{__version__}"
            self._local.session = session
            with self._lock:
                self._sessions.append(session)
        return session

    def _post(
        self, op: DeliveryOp, key: str, mailbox: str | None, document: dict | None
    ) -> requests.Response:
        idempotency_key, raw = self.body(op, key, mailbox, document)
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Idempotency-Key": idempotency_key,
            "X-Foldertrack-Event": op,
            SIGNATURE_HEADER: sign(self._secret, raw, int(time.time())),
        }
        where = f"webhook {op} {self.display_url}"
        try:
            response = self._session().post(
                self.url,
                data=raw,
                headers=headers,
                timeout=self.timeout,
                verify=self.verify,
                allow_redirects=False,
            )
        except requests.exceptions.SSLError as error:
            raise TransientSinkError(f"{where}: TLS failed: {_cause(error)}", code="tls") from None
        except requests.exceptions.Timeout:
            raise TransientSinkError(f"{where}: no answer within {self.timeout:g}s", code="timeout") from None
        except requests.exceptions.ConnectionError as error:
            raise TransientSinkError(
                f"{where}: connection failed: {_cause(error)}", code="connection"
            ) from None
        except requests.exceptions.RequestException as error:
            raise TransientSinkError(f"{where}: {_cause(error)}", code="request") from None
        return self._check(where, op, response)

    def _check(self, where: str, op: DeliveryOp, response: requests.Response) -> requests.Response:
        status = response.status_code
        if 200 <= status < 300 or (status in (404, 410) and op != "upsert"):
            return response
        message, code = _receiver_message(response)
        text = f"{where}: HTTP {status} {response.reason or ''}".rstrip() + (
            f": {message}" if message else ""
        )
        if status in (408, 429) or status >= 500:
            raise TransientSinkError(text, retry_after=_retry_after(response), code=code or str(status))
        if 300 <= status < 400:
            location = escape_message(response.headers.get("Location", ""), 200)
            text += f" (redirect to {location!r} not followed: set webhook.url to the final URL)"
        raise PermanentSinkError(text, code=code or str(status))
