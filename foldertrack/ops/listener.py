"""One local HTTP listener for a running watcher: ``/metrics`` (Prometheus) and the probes ``/livez``
(threads alive), ``/readyz`` (started) and ``/healthz`` (working): 200 ``ok`` or 503 with one line saying
what is wrong (:mod:`foldertrack.ops.health`).

Entry point for ``foldertrack run``: :func:`start_metrics` (``--metrics-address`` / ``metrics.address``).
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable, Iterable
from socketserver import TCPServer, ThreadingMixIn
from typing import TYPE_CHECKING, Any
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server

from prometheus_client import CollectorRegistry, make_wsgi_app

from foldertrack.ops.health import health_problem, liveness_problem, readiness_problem
from foldertrack.ops.metrics import metrics_registry

if TYPE_CHECKING:
    from foldertrack.watch.daemon import Watcher

log = logging.getLogger(__name__)


class _Server(ThreadingMixIn, WSGIServer):
    """One thread per request; ``server_close()`` joins them (they are not daemons) so ``stop()`` is clean."""

    daemon_threads = False
    block_on_close = True
    allow_reuse_address = True

    def server_bind(self) -> None:
        """As HTTPServer's, without its reverse DNS lookup of the bound address (slow where DNS is)."""
        TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), int(self.server_address[1])
        self.setup_environ()


class _Server6(_Server):
    address_family = socket.AF_INET6


class _QuietHandler(WSGIRequestHandler):
    timeout = 10.0  # a client that connects and says nothing cannot hold stop() up for long

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("metrics listener: %s - %s", self.address_string(), format % args)


StartResponse = Callable[..., Any]


def make_app(
    watcher: Watcher, registry: CollectorRegistry
) -> Callable[[dict, StartResponse], Iterable[bytes]]:
    """The WSGI app: ``/metrics`` (Prometheus text format), ``/livez``, ``/readyz``, ``/healthz`` (200 ok /
    503 reason)."""
    metrics_app = make_wsgi_app(registry)
    probes = {"/livez": liveness_problem, "/readyz": readiness_problem, "/healthz": health_problem}

    def app(environ: dict, start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "/")
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path in probes:
            try:
                problem = probes[path](watcher)
            except Exception as exc:  # the check itself failing is a reason too
                problem = f"health check failed: {type(exc).__name__}"
            status = "200 OK" if problem is None else "503 Service Unavailable"
            body = ("ok" if problem is None else problem).encode() + b"\n"
            start_response(
                status, [("Content-Type", "text/plain; charset=utf-8"), ("Cache-Control", "no-store")]
            )
            return [body]
        start_response("404 Not Found", [("Content-Type", "text/plain; charset=utf-8")])
        return [b"foldertrack: /metrics, /livez, /readyz, /healthz\n"]

    return app


class MetricsServer:
    """``/metrics`` and ``/healthz`` of one watcher on ``host:port`` (port 0 picks a free one).

    ``start()`` binds (OSError if it cannot) and serves from one thread; ``stop()`` shuts the listener down
    and joins its threads.
    """

    def __init__(self, host: str, port: int, watcher: Watcher, registry: CollectorRegistry | None = None):
        self.host = host
        self.port = port
        self.watcher = watcher
        self.registry = registry if registry is not None else metrics_registry(watcher)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def start(self) -> MetricsServer:
        if self._server is not None:
            return self
        server_class = _Server6 if ":" in self.host else _Server
        self._server = make_server(
            self.host,
            self.port,
            make_app(self.watcher, self.registry),
            server_class=server_class,
            handler_class=_QuietHandler,
        )
        self.port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="foldertrack-metrics",
            daemon=True,
        )
        self._thread.start()
        log.info("metrics on %s/metrics, probes on %s/livez, /readyz, /healthz", self.url, self.url)
        return self

    def stop(self, timeout: float = 5.0) -> None:
        server, self._server = self._server, None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> MetricsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def parse_address(address: str) -> tuple[str, int]:
    """``"127.0.0.1:9464"`` or ``"[::1]:9464"`` → (host, port); as ``metrics.address`` is validated."""
    host, sep, port = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ValueError(f'metrics address must be HOST:PORT like "127.0.0.1:9464", not {address!r}')
    return host, int(port)


def start_metrics(address: str, watcher: Watcher) -> MetricsServer:
    """Serve ``watcher``'s metrics and health on ``address`` (HOST:PORT); returns the started server.

    Call it before ``watcher.start()`` (counters start when the observer is attached) and ``stop()`` it
    after ``watcher.stop()``.
    """
    host, port = parse_address(address)
    return MetricsServer(host, port, watcher).start()
