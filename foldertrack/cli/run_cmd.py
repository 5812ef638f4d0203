"""``foldertrack run``: the watcher in the foreground, as systemd runs it (``Type=notify``).

The command reads its options, builds the watcher and hands it to
:class:`~foldertrack.ops.supervisor.Supervisor`, whose main loop talks to the service manager.
"""

from __future__ import annotations

import contextlib
import faulthandler
import logging
import signal
import threading
from dataclasses import replace

import click

from foldertrack.cli.common import config_option
from foldertrack.cli.db_options import database_url_option
from foldertrack.config import DatabaseConfig, format_duration, load_config, parse_duration
from foldertrack.errors import ConfigError
from foldertrack.ops.logs import setup_logging
from foldertrack.ops.notify import Notifier
from foldertrack.ops.supervisor import Supervisor
from foldertrack.runtime import build_watcher

log = logging.getLogger("foldertrack.run")

DEFAULT_STALL_TIMEOUT = "15m"


def _duration(_ctx: click.Context, _param: click.Parameter, value: str) -> float:
    try:
        return parse_duration(value).total_seconds()
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None


@click.command()
@config_option
@database_url_option
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.option(
    "--stall-timeout",
    default=DEFAULT_STALL_TIMEOUT,
    show_default=True,
    metavar="DURATION",
    callback=_duration,
    help="Sync work queued or running with none finished for this long counts as stuck: watchdog "
    "pings stop, so systemd restarts the service (0s: never).",
)
@click.option(
    "--log-format",
    default="text",
    show_default=True,
    type=click.Choice(["text", "json"]),
    help="json: one JSON object per line, for log shippers.",
)
@click.option(
    "--metrics-address",
    default=None,
    metavar="HOST:PORT",
    help="Serve Prometheus /metrics and /healthz here (overrides metrics.address; e.g. 127.0.0.1:9464).",
)
@click.option(
    "--dry-run",
    is_flag=True,
    help="Do not watch: show what would be tracked now (`rules preview`) and exit; nothing is written.",
)
@click.pass_context
def run(
    ctx: click.Context,
    config_path: str | None,
    database_url: str | None,
    log_level: str,
    stall_timeout: float,
    log_format: str,
    metrics_address: str | None,
    dry_run: bool,
) -> None:
    """Watch the mailboxes named in the rules and track mails moved into their folders.

    SIGTERM or SIGINT stop it cleanly; SIGHUP reloads the rules. Under systemd (Type=notify) it reports
    readiness, status, reloads and watchdog pings through $NOTIFY_SOCKET.
    """
    if dry_run:
        from foldertrack.cli.rules_cmd import preview

        ctx.invoke(preview, config_path=config_path, database_url=database_url)
        return
    setup_logging("DEBUG" if ctx.meta.get("foldertrack.debug") else log_level.upper(), log_format)
    # a stop asked for while starting (a deploy's restart, systemd stopping us during migrations) is noted
    # and honoured once the supervisor exists: a clean exit, not death by the signal's default action
    stop_early = threading.Event()

    def on_stop_early(signum, _frame):
        log.info("%s received while starting: stopping once started", signal.Signals(signum).name)
        stop_early.set()

    signal.signal(signal.SIGTERM, on_stop_early)
    signal.signal(signal.SIGINT, on_stop_early)
    # systemd's watchdog kills with SIGABRT: leave every thread's stack in the journal to show the wedge
    with contextlib.suppress(OSError, ValueError):  # stderr without a file descriptor (CliRunner)
        faulthandler.enable(all_threads=True)
    config = load_config(config_path)
    if database_url:  # --database-url wins over database.url (and $FOLDERTRACK_DATABASE_URL, the loader's)
        config = replace(config, database=DatabaseConfig(database_url))
    watcher = build_watcher(config)
    from foldertrack.crm.records_sync import start_records_sync

    records_timer = start_records_sync(config, watcher.engine, on_change=watcher.records_changed)
    address = metrics_address or config.metrics.address
    metrics = None
    if address:
        from foldertrack.ops.listener import start_metrics

        try:
            metrics = start_metrics(address, watcher)
        except (OSError, ValueError) as exc:
            raise ConfigError(f"metrics address {address}: {exc}") from exc
    supervisor = Supervisor(watcher, Notifier(), stall_timeout=stall_timeout)

    def on_stop(signum, _frame):
        log.info("%s received: stopping", signal.Signals(signum).name)
        supervisor.request_stop()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, lambda *_: supervisor.request_reload())
    if stop_early.is_set():
        supervisor.request_stop()
    log.info(
        "foldertrack running: %s, rules in %s, database %s%s",
        config.exchange.endpoint,
        config.rules.dir,
        config.database.display_url,
        f", stall timeout {format_duration(stall_timeout)}" if stall_timeout else "",
    )
    try:
        exit_code = supervisor.run()
    finally:
        if records_timer is not None:
            records_timer.stop()
        if metrics is not None:
            metrics.stop()
    log.info("stopped")
    ctx.exit(exit_code)
