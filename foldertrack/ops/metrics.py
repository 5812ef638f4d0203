"""Prometheus metrics for a running watcher (served by :mod:`foldertrack.ops.listener`).

Counters and histograms are fed by :class:`PrometheusObserver` (the watcher's observer hooks); gauges are
read from the live watcher at scrape time by :class:`WatcherCollector`. Everything lives in the
observer's own ``CollectorRegistry``, never prometheus-client's global one, so several watchers (tests)
never share numbers. No metric is labelled by mailbox: a process may watch a thousand of them. Labels are
``operation``, ``code``, ``mode``, ``outcome`` and ``sink`` (the one configured sink) only, each with a
small set of values; ``code`` is the true cause (:mod:`foldertrack.ops.causes`): only a server's own
``ErrorServerBusy`` says throttling, an outage says ``connection_refused``, ``http_503``, ``timeout``...

The move → activity latency histogram sees live moves only; a folder's first sync (backfill of the mails
already in it) is counted by ``foldertrack_backfill_items_total`` instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import func, select

from foldertrack.ops.health import health_problem, readiness_problem
from foldertrack.state.schema import tracked_folders
from foldertrack.state.types import utcnow
from foldertrack.sync import SyncResult
from foldertrack.watch.observer import WatchObserver

if TYPE_CHECKING:
    from foldertrack.watch.daemon import Watcher

log = logging.getLogger(__name__)

#: Modes a mailbox can be in (``MailboxState.mode``); each always has a ``foldertrack_mailboxes`` series.
MODES = ("starting", "streaming", "polling", "error", "stopped")
#: ``foldertrack_items_total`` outcomes, from :class:`~foldertrack.sync.SyncResult`; one per item change.
ITEM_OUTCOMES = {
    "tracked": "tracked",
    "relinked": "relinked",
    "untracked": "untracked",
    "conflict": "conflicts",
    "collision": "collisions",  # a different mail reusing a tracked Message-ID (H5)
    "dead_lettered": "dead_lettered",
}
#: Move → activity latency: the quality bar is p99 ≤ 1 s streaming, ≤ poll interval + 1 s polling.
LATENCY_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 900.0)
SYNC_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0)


class PrometheusObserver(WatchObserver):
    """The watcher's hooks as Prometheus counters and histograms, in ``self.registry``.

    Pass it to the watcher (``build_watcher(config, observer=PrometheusObserver())``), then serve it with
    :func:`start_metrics`. Each hook is a few in-memory increments: no I/O, never raises.
    """

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry()
        self.live: WatcherCollector | None = None  # the watcher's gauges, once metrics_registry() ran
        r = self.registry
        self.events = Counter(
            "foldertrack_events_received",
            "Notification events delivered by the streaming connections (each one only triggers a sync).",
            registry=r,
        )
        self.syncs = Counter(
            "foldertrack_syncs",
            "Folder catch-up syncs: outcome=committed (ran to the end) or failed (retried later).",
            ["outcome"],
            registry=r,
        )
        self.items = Counter(
            "foldertrack_items",
            "Mail changes committed, by outcome: tracked (new activity), relinked (regarding moved to another"
            " record), untracked (left a folder with on_leave: untrack), conflict (same Message-ID filed"
            " elsewhere, other record kept), dead_lettered (gave up after max_attempts).",
            ["outcome"],
            registry=r,
        )
        self.errors = Counter(
            "foldertrack_errors",
            "Failed work by operation (sync, hierarchy, subscribe, stream) and true cause: connection_refused,"
            " dns, tls, timeout, connection_closed, http_<status>, unauthorized, an EWS response code"
            " (ErrorServerBusy only when the server itself throttles) or the exception class name.",
            ["operation", "code"],
            registry=r,
        )
        self.mode_changes = Counter(
            "foldertrack_mode_changes",
            "Mailboxes entering a mode (streaming, polling, error, stopped); polling means the stream failed.",
            ["mode"],
            registry=r,
        )
        self.resubscribes = Counter(
            "foldertrack_resubscribes",
            "Subscriptions the server lost or refused to stream, by EWS code; each is subscribed again,"
            " rate-limited with back-off (a fast-growing count means a server that keeps refusing).",
            ["code"],
            registry=r,
        )
        self.sync_seconds = Histogram(
            "foldertrack_sync_duration_seconds",
            "Wall time of one committed folder catch-up (SyncFolderItems pages, GetItem, sink, commit).",
            buckets=SYNC_BUCKETS,
            registry=r,
        )
        self.latency = Histogram(
            "foldertrack_activity_latency_seconds",
            "Trigger -> activity latency: from the first trigger a sync served (notification, poll tick or"
            " retry) to its committed activity, once per tracked or relinked mail. While streaming the"
            " notification follows the move within milliseconds, so this is move -> activity; in polling"
            " mode the wait for the poll tick is not included.",
            buckets=LATENCY_BUCKETS,
            registry=r,
        )
        self.deliveries = Counter(
            "foldertrack_deliveries",
            "Outbox entries handled by the delivery workers, by sink and outcome: delivered, retry (transient"
            " failure, retried with back-off), dead (rejected by the sink: a dead letter), skipped (superseded).",
            ["sink", "outcome"],
            registry=r,
        )
        self.delivery_seconds = Histogram(
            "foldertrack_delivery_duration_seconds",
            "Wall time of one call to the sink (upsert, untrack or delete), whatever its outcome.",
            ["sink"],
            buckets=SYNC_BUCKETS,
            registry=r,
        )
        self.backfill_items = Counter(
            "foldertrack_backfill_items",
            "Mails already in a folder when its rule appeared, tracked by its first sync (backfill); kept out"
            " of foldertrack_activity_latency_seconds, which measures live moves only.",
            registry=r,
        )
        self.backfill_syncs = Counter(
            "foldertrack_backfill_syncs",
            "Committed catch-ups that were (part of) a folder's first sync.",
            registry=r,
        )
        self.rules_reloads = Counter(
            "foldertrack_rules_reloads",
            "Rules reloads by outcome: ok, or failed (refused: the previous rules run on, /healthz degraded).",
            ["outcome"],
            registry=r,
        )
        for outcome in ("committed", "failed"):
            self.syncs.labels(outcome)
        for outcome in ("ok", "failed"):
            self.rules_reloads.labels(outcome)
        for outcome in ITEM_OUTCOMES:
            self.items.labels(outcome)

    # -- WatchObserver ---------------------------------------------------------------------------------------

    def events_received(self, mailbox: str, count: int) -> None:
        self.events.inc(count)

    def sync_finished(
        self, mailbox: str, folder_path: str, seconds: float, result: SyncResult, trigger_age: float
    ) -> None:
        self.syncs.labels("committed").inc()
        self.sync_seconds.observe(seconds)
        for outcome, attr in ITEM_OUTCOMES.items():
            count = getattr(result, attr)
            if count:
                self.items.labels(outcome).inc(count)
        for _ in range(result.tracked + result.relinked):
            self.latency.observe(trigger_age)

    def backfilled(self, mailbox: str, folder_path: str, seconds: float, result: SyncResult) -> None:
        self.syncs.labels("committed").inc()
        self.sync_seconds.observe(seconds)
        self.backfill_syncs.inc()
        for outcome, attr in ITEM_OUTCOMES.items():
            count = getattr(result, attr)
            if count:
                self.items.labels(outcome).inc(count)
        self.backfill_items.inc(result.tracked + result.relinked)

    def rules_reloaded(self, ok: bool) -> None:
        self.rules_reloads.labels("ok" if ok else "failed").inc()

    def error(self, mailbox: str, operation: str, code: str) -> None:
        self.errors.labels(operation, code).inc()
        if operation == "sync":
            self.syncs.labels("failed").inc()

    def mode_changed(self, mailbox: str, old: str, new: str) -> None:
        self.mode_changes.labels(new).inc()

    def delivered(self, sink: str, op: str, outcome: str, seconds: float) -> None:
        self.deliveries.labels(sink, outcome).inc()
        if outcome != "skipped":
            self.delivery_seconds.labels(sink).observe(seconds)

    def resubscribed(self, mailbox: str, code: str) -> None:
        self.resubscribes.labels(code).inc()


class WatcherCollector(Collector):
    """Gauges read from the live watcher at each scrape (in-memory, under the watcher's locks)."""

    def __init__(self, watcher: Watcher) -> None:
        self.watcher = watcher

    def collect(self) -> Iterator[Metric]:
        watcher = self.watcher
        states = watcher.mailbox_states()
        modes = GaugeMetricFamily(
            "foldertrack_mailboxes",
            "Watched mailboxes by mode (polling: its stream is failing).",
            labels=["mode"],
        )
        counts = dict.fromkeys(MODES, 0)
        for state in states:
            mode = state.health()["mode"]  # "error" when its last failure was one that needs a fix
            counts[mode] = counts.get(mode, 0) + 1
        for mode, count in counts.items():
            modes.add_metric([mode], count)
        yield modes
        yield GaugeMetricFamily(
            "foldertrack_tracked_folders",
            "Folders being tracked (resolved from the rules).",
            value=sum(len(state.targets) for state in states),
        )
        yield GaugeMetricFamily(
            "foldertrack_backlog",
            "Pieces of work (folder syncs, folder tree reads, subscriptions) queued or running.",
            value=sum(watcher.dispatcher.backlog().values()),
        )
        groups = watcher.stream_groups()
        yield GaugeMetricFamily(
            "foldertrack_streams",
            "Streaming connections (GetStreamingEvents) carrying subscriptions.",
            value=sum(1 for group in groups if group.size()),
        )
        yield GaugeMetricFamily(
            "foldertrack_streams_connected",
            "Streaming connections currently open and reading.",
            value=sum(1 for group in groups if group.size() and group.connected),
        )
        yield from _delivery_gauges(watcher)
        yield GaugeMetricFamily(
            "foldertrack_ready",
            "1 once started (/readyz): every mailbox subscribed, polling or in error after"
            " watch.start_timeout (what READY=1 tells systemd), else 0.",
            value=1 if readiness_problem(watcher) is None else 0,
        )
        yield GaugeMetricFamily(
            "foldertrack_healthy",
            "1 while working (/healthz answers 200): no mailbox in error, delivery moving, last rules"
            " reload valid; else 0.",
            value=1 if _healthy(watcher) else 0,
        )
        rules = getattr(watcher, "rules_state", None)
        if rules is not None:
            problem = rules.problem
            yield GaugeMetricFamily(
                "foldertrack_rules_reload_failed",
                "1 while the last rules reload was refused or found no rule files (the previous rules run"
                " on), else 0.",
                value=1 if problem is not None else 0,
            )
            yield GaugeMetricFamily(
                "foldertrack_rule_files",
                "Rule files of the rules set running now.",
                value=rules.files,
            )
        yield from _backfill_gauge(watcher)


def _healthy(watcher: Watcher) -> bool:
    try:
        return health_problem(watcher) is None
    except Exception:  # a failing check is not health
        return False


def _backfill_gauge(watcher: Watcher) -> Iterator[Metric]:
    """Folders whose first sync has not finished, read from the database at scrape time."""
    try:
        with watcher.engine.connect() as conn:
            count = conn.execute(
                select(func.count())
                .select_from(tracked_folders)
                .where(tracked_folders.c.backfill_done.is_(False), tracked_folders.c.status != "retired")
            ).scalar_one()
    except Exception as exc:  # the database may be down: the other gauges still answer
        log.debug("backfill figures unavailable: %s", exc)
        return
    yield GaugeMetricFamily(
        "foldertrack_backfill_folders",
        "Tracked folders whose first sync (backfill) has not finished yet (`status` shows each one).",
        value=count,
    )


def _delivery_gauges(watcher: Watcher) -> Iterator[Metric]:
    """The outbox of an external sink, read from the database at scrape time (absent for ``sql``)."""
    delivery = getattr(watcher, "delivery", None)
    if delivery is None:
        return
    try:
        figures = delivery.figures()
    except Exception as exc:  # the database may be down: the other gauges still answer
        log.debug("outbox figures unavailable: %s", exc)
        return
    now = utcnow()
    oldest = (now - figures.oldest_pending_at).total_seconds() if figures.oldest_pending_at else 0.0
    failing = (now - delivery.failing_since).total_seconds() if delivery.failing_since else 0.0
    for name, help_text, value in (
        ("foldertrack_outbox_backlog", "Outbox entries waiting for delivery to the sink.", figures.backlog),
        (
            "foldertrack_outbox_oldest_seconds",
            "Age of the oldest undelivered outbox entry (0: none).",
            oldest,
        ),
        (
            "foldertrack_outbox_dead_letters",
            "Outbox entries the sink rejected, waiting for `foldertrack retry`.",
            figures.dead,
        ),
        (
            "foldertrack_delivery_failing_seconds",
            "How long delivery to the sink has been failing (0: it works); /healthz fails past"
            " delivery.unhealthy_after.",
            failing,
        ),
    ):
        family = GaugeMetricFamily(name, help_text, labels=["sink"])
        family.add_metric([delivery.name], value)
        yield family


def metrics_registry(watcher: Watcher) -> CollectorRegistry:
    """The registry to serve for ``watcher``: its PrometheusObserver's, plus the live gauges.

    A watcher built without a PrometheusObserver gets one now; it counts from this moment on, so call this
    (or :func:`start_metrics`) before ``watcher.start()``.
    """
    observer = watcher.observer
    if not isinstance(observer, PrometheusObserver):
        observer = PrometheusObserver()
        watcher.observer = observer
    if observer.live is None:  # once: a second server for the same watcher must not double the gauges
        observer.live = WatcherCollector(watcher)
        observer.registry.register(observer.live)
    return observer.registry


__all__ = ["PrometheusObserver", "WatcherCollector", "metrics_registry"]
