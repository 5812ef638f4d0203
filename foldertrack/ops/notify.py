"""The service manager protocol: readiness, status, reloads and watchdog pings over ``$NOTIFY_SOCKET``.

https://www.freedesktop.org/software/systemd/man/latest/sd_notify.html

A few datagrams on an ``AF_UNIX`` socket, so no dependency: ``sdnotify`` (last release 2017) knows
nothing of the watchdog variables, ``systemd-python`` needs libsystemd headers to build. Without
``$NOTIFY_SOCKET`` (not started by systemd, or ``Type=simple``) every call is a no-op. Sending never
raises: a service manager that went away must not take the daemon down with it.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Mapping

log = logging.getLogger(__name__)

SEND_TIMEOUT = 1.0  # seconds


class Notifier:
    """Sends ``KEY=value`` messages to the service manager; ``watchdog_interval`` says how often to ping."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # abstract namespace socket
            address = "\0" + address[1:]
        elif address and not address.startswith("/"):
            log.warning("NOTIFY_SOCKET %r is not a unix socket path: not notifying", address)
            address = ""
        self.address = address
        self._socket: socket.socket | None = None
        #: seconds between ``WATCHDOG=1`` pings (half of ``$WATCHDOG_USEC``), None when there is no watchdog
        self.watchdog_interval = _watchdog_interval(env) if address else None

    @property
    def enabled(self) -> bool:
        return bool(self.address)

    def send(self, *fields: str) -> bool:
        """Send ``KEY=value`` fields in one datagram; True when the service manager got it."""
        if not self.address:
            return False
        try:
            if self._socket is None:
                self._socket = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
                self._socket.settimeout(SEND_TIMEOUT)  # a stuck service manager must not wedge us
            self._socket.sendto("\n".join(fields).encode(), self.address)
            return True
        except OSError as exc:
            log.debug("sd_notify %s failed: %s", fields[0] if fields else "", exc)
            return False

    def ready(self, status: str | None = None) -> bool:
        return self.send("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self, status: str | None = None) -> bool:
        """``RELOADING=1`` with the ``MONOTONIC_USEC`` that systemd ≥ 253 (``Type=notify-reload``) wants."""
        stamp = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={stamp}", *([f"STATUS={status}"] if status else []))

    def stopping(self, status: str | None = None) -> bool:
        return self.send("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.send(f"STATUS={text}")

    def extend_timeout(self, seconds: float) -> bool:
        """More time for the current phase (start-up): the next message must come within ``seconds``."""
        return self.send(f"EXTEND_TIMEOUT_USEC={int(seconds * 1_000_000)}")

    def watchdog(self) -> bool:
        return self.send("WATCHDOG=1") if self.watchdog_interval else False

    def close(self) -> None:
        if self._socket is not None:
            self._socket.close()
            self._socket = None


def _watchdog_interval(env: Mapping[str, str]) -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, if the watchdog is for this process (``$WATCHDOG_PID``)."""
    try:
        usec = int(env.get("WATCHDOG_USEC", "0"))
        pid = int(env.get("WATCHDOG_PID") or os.getpid())
    except ValueError:
        return None
    if usec <= 0 or pid != os.getpid():
        return None
    return usec / 2_000_000
