"""The watcher on the Microsoft Graph source for the benchmarks: delta polling only, or change notifications
to a loopback listener (the simulator posts them, from its own process by default), on a harness's database.

Graph requests are counted by the client (``GraphClient.requests_sent``): the simulator counts EWS only.
"""

from __future__ import annotations

from typing import Any

from foldertrack.simulator.identity import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT
from foldertrack.sinks.sql import SqlActivitySink
from foldertrack.sources.graph.auth import GraphAuthenticator
from foldertrack.sources.graph.client import GraphClient
from foldertrack.sources.graph.source import GraphSource
from foldertrack.watch.daemon import Watcher, WatchOptions
from foldertrack.watch.graph_push import attach_push

#: ``graph.poll_interval``'s default (foldertrack.config.settings)
DEFAULT_POLL_INTERVAL = 5.0


def register_app(sim: Any) -> tuple[str, str]:
    """Where the simulator runs: register the demo app; returns (HTTPS base URL, CA file)."""
    sim.identity.add_app(DEMO_TENANT, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    return sim.https_base, sim.ca_path


def start_graph_watcher(
    h: Any, https_base: str, ca_path: str, *, push: bool, observer: Any = None, **overrides: Any
) -> tuple[Watcher, GraphClient]:
    """A watcher on ``h``'s rules and database reading through Graph; ``push``: change notifications (the
    poll interval then only paces the folder-tree delta and renewals). Waits until it is ready."""
    auth = GraphAuthenticator(
        DEMO_TENANT, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, authority=https_base, verify=ca_path
    )
    client = GraphClient(auth, base_url=f"{https_base}/v1.0", verify=ca_path)
    source = GraphSource(client, engine=h.engine)
    options = WatchOptions(rules_dir=h.rules_dir, **{**h.options, **overrides})
    watcher = Watcher(options, h.engine, None, SqlActivitySink(h.engine), observer=observer, source=source)  # type: ignore[arg-type]
    if push:
        attach_push(watcher, client, notification_url=None)
    h.watcher = watcher  # the harness stops it
    watcher.start()
    if not watcher.ready.wait(120):
        raise TimeoutError("the Graph watcher did not become ready")
    return watcher, client


def per_mailbox_per_10_min(requests: int, mailboxes: int, seconds: float) -> float:
    return requests / max(1, mailboxes) / max(seconds, 1e-9) * 600
