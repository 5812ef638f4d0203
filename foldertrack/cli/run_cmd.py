"""``foldertrack run``: the watcher in the foreground, as systemd runs it."""

from __future__ import annotations

import logging
import signal
import threading

import click

from foldertrack.cli.common import config_option
from foldertrack.config import load_config
from foldertrack.ops.logs import setup_logging
from foldertrack.runtime import build_watcher

log = logging.getLogger("foldertrack.run")

EXIT_WEDGED = 70  # a worker died: let systemd restart us


@click.command()
@config_option
@click.option(
    "--log-level",
    default="INFO",
    show_default=True,
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
)
@click.pass_context
def run(ctx: click.Context, config_path: str | None, log_level: str) -> None:
    """Watch the mailboxes named in the rules and track mails moved into their folders.

    SIGTERM or SIGINT stop it cleanly; SIGHUP reloads the rules.
    """
    setup_logging("DEBUG" if ctx.meta.get("foldertrack.debug") else log_level.upper())
    config = load_config(config_path)
    watcher = build_watcher(config)
    stop = threading.Event()
    reload = threading.Event()

    def on_stop(signum, _frame):
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_stop)
    signal.signal(signal.SIGINT, on_stop)
    signal.signal(signal.SIGHUP, lambda *_: reload.set())
    watcher.start()
    log.info(
        "foldertrack running: %s, rules in %s, database %s",
        config.exchange.endpoint,
        config.rules.dir,
        config.database.display_url,
    )
    exit_code = 0
    try:
        while not stop.wait(0.5):
            if reload.is_set():
                reload.clear()
                log.info("SIGHUP received: reloading rules")
                watcher.reload_rules()
            problem = watcher.check()
            if problem:
                log.critical("unhealthy: %s; exiting so the service manager restarts us", problem)
                exit_code = EXIT_WEDGED
                break
    finally:
        watcher.stop()
        log.info("stopped")
    ctx.exit(exit_code)
