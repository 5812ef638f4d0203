"""Assemble a watcher from a configuration: database, sink plug-in, Exchange connector, options.

Kept apart from the CLI so ``run``, ``demo``, ``retry``, the benchmarks and tests build it the same way.
"""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import replace

from foldertrack.config import Config
from foldertrack.delivery.wiring import delivery_options, load_feedback
from foldertrack.exchange.connection import ExchangeConnector, ExchangeSettings
from foldertrack.fleet import FleetOptions, guard_sessions
from foldertrack.ops.logs import register_credentials
from foldertrack.sinks.registry import load_sink
from foldertrack.sources.ews import EwsSource
from foldertrack.state.database import open_database
from foldertrack.watch.daemon import Watcher, WatchOptions
from foldertrack.watch.observer import WatchObserver
from foldertrack.watch.streaming import MAX_IDS_PER_STREAM

log = logging.getLogger(__name__)


def exchange_settings(config: Config) -> ExchangeSettings:
    """Connection settings with the secret revealed, for exchangelib only; raises ConfigError if incomplete."""
    exchange = config.exchange
    exchange.require_connectable()
    if exchange.auth != "oauth2":
        secret: str = exchange.require_password().reveal()
    elif exchange.oauth2_certificate_file is not None and exchange.oauth2_client_secret is None:
        secret = ""  # the certificate signs the token requests
    else:
        secret = exchange.require_client_secret().reveal()
    if secret:
        register_credentials(exchange.username, secret)  # never logged, even at DEBUG
    return ExchangeSettings(
        endpoint=exchange.endpoint or "",
        auth=exchange.auth,
        username=exchange.username or exchange.oauth2_client_id or "",
        password=secret,
        access=exchange.access,
        version=exchange.version,
        verify_tls=exchange.verify_tls,
        oauth2_tenant_id=exchange.oauth2_tenant_id,
        oauth2_client_id=exchange.oauth2_client_id,
        oauth2_authority=exchange.oauth2_authority,
        oauth2_scope=exchange.oauth2_scope,
        oauth2_certificate_file=exchange.oauth2_certificate_file,
        ca_file=str(exchange.ca_file) if exchange.ca_file is not None else None,
        request_timeout=exchange.request_timeout,
        max_response_size=exchange.max_response_size,
    )


def watch_options(config: Config, **overrides) -> WatchOptions:
    options = WatchOptions(
        rules_dir=config.rules.dir,
        poll_interval=config.watch.poll_interval,
        safety_sync_interval=config.watch.safety_sync_interval,
        safety_sync_rate=config.watch.safety_sync_rate,
        workers=config.watch.workers,
        debounce=config.watch.debounce,
        max_attempts=config.watch.max_attempts,
        stream_timeout_minutes=min(30, max(1, round(config.watch.stream_timeout / 60))),
        stream_stall_timeout=config.watch.stall_timeout,
        stuck_timeout=config.watch.stuck_timeout,
        start_timeout=config.watch.start_timeout,
        streams_per_connection=1 if config.watch.stream_per_mailbox else MAX_IDS_PER_STREAM,
        max_attachment_bytes=config.sink.max_attachment_bytes,
        instance=os.environ.get("FOLDERTRACK_INSTANCE") or socket.gethostname(),
        delivery=delivery_options(config),
        fleet=FleetOptions(ttl=config.watch.lease_ttl, claim_interval=min(1.0, config.watch.lease_ttl / 3)),
    )
    return replace(options, **overrides) if overrides else options


def pool_size(config: Config, options: WatchOptions, streams: int = 5) -> int:
    """HTTP sessions: every streaming connection holds one for its whole life; each worker needs one more.

    A configured ``exchange.max_connections`` below that would let the streams starve the workers (they
    would wait forever for a session), so it is raised to the minimum, with a warning."""
    needed = streams + options.workers + 2
    configured = config.exchange.max_connections
    if configured and configured < needed:
        log.warning(
            "exchange.max_connections = %d is too few for %d stream(s) and %d worker(s); using %d "
            "(lower watch.workers to use fewer connections)",
            configured,
            streams,
            options.workers,
            needed,
        )
        return needed
    return configured or needed


def stream_count(config: Config, options: WatchOptions) -> int:
    """Streaming connections the rules will need (each carries up to ``streams_per_connection``
    mailboxes), with room for growth on a rules reload; at least 5."""
    from foldertrack.rules.loader import load_rules

    try:
        mailboxes = len(load_rules(config.rules.dir).mailboxes())
    except Exception:  # broken rules: the watcher's start reports them
        return 5
    return max(5, -(-mailboxes // options.streams_per_connection) + 2)


def build_watcher(config: Config, *, observer: WatchObserver | None = None, **overrides) -> Watcher:
    """A ready-to-start watcher for ``config``; raises ConfigError / SchemaOutOfDateError / DatabaseError.

    ``observer`` receives the watcher's hooks (``foldertrack.ops.metrics.PrometheusObserver`` for metrics)."""
    options = watch_options(config, **overrides)
    if config.exchange.source == "graph":  # Exchange Online through Microsoft Graph (sources/graph)
        return _build_graph_watcher(config, options, observer)
    settings = exchange_settings(config)
    engine = open_database(config.database.url)
    if options.fleet is not None:  # a writer frozen mid-transaction must not hold its lease for ever
        guard_sessions(engine, options.fleet.ttl)
    sink = load_sink(config.sink.name, config, engine)
    streams = stream_count(config, options)
    connector = ExchangeConnector(settings, max_connections=pool_size(config, options, streams))
    source = EwsSource(connector)  # one source for sync and the feedback categories
    feedback = load_feedback(config, source, engine, sink.name)
    return Watcher(options, engine, connector, sink, observer=observer, feedback=feedback, source=source)


def _build_graph_watcher(config: Config, options: WatchOptions, observer: WatchObserver | None) -> Watcher:
    """The watcher on the Graph source: delta polls every ``graph.poll_interval``, no EWS connection."""
    from foldertrack.sources.graph.config import graph_source

    options = replace(
        options, poll_interval=config.graph.poll_interval
    )  # watch.poll_interval is EWS's fallback
    engine = open_database(config.database.url)
    if options.fleet is not None:
        guard_sessions(engine, options.fleet.ttl)
    sink = load_sink(config.sink.name, config, engine)
    source = graph_source(config, engine)
    feedback = load_feedback(config, source, engine, sink.name)
    watcher = Watcher(options, engine, None, sink, observer=observer, feedback=feedback, source=source)  # type: ignore[arg-type]
    if config.graph.notification_url:  # change notifications; the poll stays as the fallback
        from foldertrack.ops.listener import parse_address
        from foldertrack.watch.graph_push import attach_push

        host, port = parse_address(config.graph.listen)
        attach_push(
            watcher, source.client, notification_url=config.graph.notification_url, host=host, port=port
        )
    return watcher
