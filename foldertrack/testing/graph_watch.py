"""The in-process ``Harness`` with the watcher reading through Microsoft Graph (``source = "graph"``):
same simulator, same mailboxes, real MSAL → token endpoint and ``requests`` → ``/v1.0/`` over verified TLS.
"""

from __future__ import annotations

from typing import Any

from foldertrack.simulator.identity import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT
from foldertrack.sinks.sql import SqlActivitySink
from foldertrack.sources.graph.auth import GraphAuthenticator
from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.source import GraphSource
from foldertrack.sources.graph.throttle import MailboxThrottle
from foldertrack.testing.harness import Harness
from foldertrack.watch.daemon import Watcher, WatchOptions
from foldertrack.watch.observer import WatchObserver


def graph_source(sim: Any, *, page_size: int = 100, engine: Any = None) -> GraphSource:
    """A Graph source for the demo app on ``sim`` (registered here)."""
    sim.identity.add_app(DEMO_TENANT, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    auth = GraphAuthenticator(
        DEMO_TENANT, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, authority=sim.https_base, verify=sim.ca_path
    )
    client = GraphClient(
        auth, base_url=f"{sim.https_base}/v1.0", verify=sim.ca_path, throttle=MailboxThrottle(max_wait=1.0)
    )
    return GraphSource(client, page_size=page_size, engine=engine)


#: Graph has no streaming: the watcher polls each mailbox's delta chains every ``poll_interval``; tests poll
#: often so a move is seen about as soon as a stream would report it
TEST_POLL_INTERVAL = 0.3


def graph_options(options: dict[str, Any]) -> dict[str, Any]:
    """``options_for_tests()`` for a watcher on the Graph source (a short poll interval)."""
    return {**options, "poll_interval": TEST_POLL_INTERVAL}


class GraphHarness(Harness):
    """``start_watcher`` builds the watcher on a :class:`GraphSource` (no EWS connection at all)."""

    def start_watcher(
        self,
        *,
        observer: WatchObserver | None = None,
        sink: Any = None,
        feedback: Any = None,
        ready_timeout: float = 20.0,
        push: bool = False,
        **overrides: Any,
    ) -> Watcher:
        """``push``: change notifications to a loopback listener (else delta polling only)."""
        options = WatchOptions(rules_dir=self.rules_dir, **{**self.options, **overrides})
        self.source = graph_source(self.sim, engine=self.engine)
        self.watcher = Watcher(
            options,
            self.engine,
            None,  # type: ignore[arg-type]  # no EWS connector: every call goes through the source
            sink or SqlActivitySink(self.engine),
            observer=observer,
            feedback=feedback,
            source=self.source,
        )
        if push:
            from foldertrack.watch.graph_push import attach_push

            self.push = attach_push(self.watcher, self.source.client, notification_url=None)
        self.watcher.start()
        if not self.watcher.ready.wait(ready_timeout):
            raise TimeoutError("watcher did not become ready")
        return self.watcher


__all__ = ["TEST_POLL_INTERVAL", "GraphHarness", "graph_options", "graph_source"]
