"""Logging to stderr (journald picks it up), one line per event, secrets never included.

Two formats: ``text`` (a readable line) and ``json`` (one JSON object per line for log shippers: ``time``
ISO-8601 UTC, ``level``, ``logger``, ``message``, plus ``mailbox``/``folder`` when a record carries them
as ``extra`` and ``exception`` when there is one). Whatever the format, every known secret value
(:func:`register_secret`) is replaced by ``***`` before a line is written: the last line of defence
behind :class:`~foldertrack.config.Secret`, which already keeps secrets out of ``repr`` and messages.
"""

from __future__ import annotations

import base64
import json
import logging
import re
import sys
import threading
import warnings
from datetime import UTC, datetime
from typing import TextIO

FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"
FORMATS = ("text", "json")
#: ``extra`` attributes copied into JSON lines when a record has them.
CONTEXT_FIELDS = ("mailbox", "folder")
MASK = "***"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary text everywhere (and are no secret anyway)


class SecretRedactor(logging.Filter):
    """A handler filter that masks every registered secret in a record's message, exception and stack."""

    def __init__(self) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: tuple[str, ...] = ()

    def add(self, value: str) -> None:
        """Mask ``value`` in every line logged from now on (values under 4 characters are ignored)."""
        if not isinstance(value, str) or len(value) < MIN_SECRET_LENGTH:
            return
        with self._lock:
            if value not in self._secrets:
                # longest first, so a secret that contains another is masked whole
                self._secrets = tuple(sorted({*self._secrets, value}, key=len, reverse=True))

    def clear(self) -> None:
        with self._lock:
            self._secrets = ()

    def redact(self, text: str) -> str:
        for secret in self._secrets:
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        if not self._secrets:
            return True
        message = record.getMessage()
        redacted = self.redact(message)
        if redacted != message:
            record.msg, record.args = redacted, None
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redact(record.stack_info)
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if isinstance(value, str):
                setattr(record, name, self.redact(value))
        return True


#: The process's redactor: logging is process-wide, so is the list of secrets it must never print.
REDACTOR = SecretRedactor()


def register_secret(value: str) -> None:
    """Never log ``value`` (a password, client secret, token, Basic-auth header value) from now on."""
    REDACTOR.add(value)


def register_credentials(username: str | None, secret: str) -> None:
    """Never log ``secret`` nor, with a ``username``, the ``Authorization: Basic`` value made of both
    (exchangelib logs request headers at DEBUG)."""
    register_secret(secret)
    if username:
        register_secret(base64.b64encode(f"{username}:{secret}".encode()).decode("ascii"))


#: Characters that could end a text log line or fake one (CR, LF, NEL, U+2028/9) or drive a terminal (ESC…).
_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u2028\u2029]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
CONTINUATION = "  | "


def escape_controls(text: str) -> str:
    """``text`` with every control character written as an escape (``\\n``, ``\\x1b``…): one line, inert."""
    return _CONTROL.sub(lambda m: _NAMED.get(m.group(), f"\\x{ord(m.group()):02x}"), text)


class TextFormatter(logging.Formatter):
    """One line per record whatever a subject, address or server message contains (no forged lines).

    The message (with its arguments) is escaped whole; a traceback keeps its lines, each escaped and
    prefixed with ``"  | "``, so nothing in it can start a line that looks like a new record."""

    def __init__(self) -> None:
        super().__init__(FORMAT)

    def formatMessage(self, record: logging.LogRecord) -> str:
        record.message = escape_controls(record.message)
        return super().formatMessage(record)

    def formatException(self, ei) -> str:
        return _continuation(super().formatException(ei))

    def formatStack(self, stack_info: str) -> str:
        return _continuation(stack_info)

    def format(self, record: logging.LogRecord) -> str:
        if record.exc_text and not record.exc_text.startswith(CONTINUATION):
            record.exc_text = _continuation(record.exc_text)  # set by the redactor, unescaped
        return super().format(record)


def _continuation(text: str) -> str:
    return "\n".join(CONTINUATION + escape_controls(line) for line in text.splitlines())


class TransientTracebacks(logging.Filter):
    """A transient failure (database or Exchange unreachable) is one line with its cause; its traceback
    is only worth the space at DEBUG (a database outage would otherwise print ~90 lines every retry)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.exc_info or logging.getLogger().isEnabledFor(logging.DEBUG):
            return True
        exc = record.exc_info[1]
        if exc is None:
            return True
        from foldertrack.retry import describe, is_transient

        if is_transient(exc):
            cause = describe(exc)
            message = record.getMessage()
            if cause not in message:
                message = f"{message} ({cause})"
            record.msg, record.args = message, None
            record.exc_info, record.exc_text = None, None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line; non-ASCII kept as is, newlines in messages escaped by JSON."""

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds")[:-6] + "Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for name in CONTEXT_FIELDS:
            value = getattr(record, name, None)
            if value is not None:
                line[name] = value if isinstance(value, (str, int, float, bool)) else str(value)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False)


def make_formatter(fmt: str) -> logging.Formatter:
    if fmt == "text":
        return TextFormatter()
    if fmt == "json":
        return JsonFormatter()
    raise ValueError(f"log format must be one of {', '.join(FORMATS)}, not {fmt!r}")


def setup_logging(level: str | int = "INFO", fmt: str = "text", *, stream: TextIO | None = None) -> None:
    """Send every log record to ``stream`` (stderr) as ``fmt`` (``text`` or ``json``), secrets masked."""
    formatter = make_formatter(fmt)
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.setFormatter(formatter)
    handler.addFilter(TransientTracebacks())
    handler.addFilter(REDACTOR)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    # Python warnings (urllib3's InsecureRequestWarning…) go through this handler too, never raw to stderr
    # where they would break JSON lines; each is logged once
    # (off, then on: captureWarnings(True) does nothing when it believes it is on already, although
    # something, e.g. a warnings.catch_warnings() block, may have put the original showwarning back)
    logging.captureWarnings(False)
    logging.captureWarnings(True)
    warnings.simplefilter("once")
    # exchangelib logs request bodies at DEBUG (they carry the impersonation header, never the password);
    # keep its chatter out unless asked for
    for noisy in ("exchangelib", "urllib3", "watchdog", "requests_ntlm"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))
