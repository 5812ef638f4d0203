"""``foldertrack simulator``: run the EWS simulator in the foreground (for the demo and manual testing)."""

from __future__ import annotations

import signal
import threading

import click

DEFAULT_MAILBOXES = ("alice@example.com", "bob@example.com")


@click.command("simulator")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to bind (loopback by default).")
@click.option("--port", default=8765, show_default=True, type=int, help="TCP port; 0 picks a free one.")
@click.option(
    "--mailbox",
    "mailboxes",
    multiple=True,
    metavar="ADDRESS",
    help=f"A mailbox to create (repeatable). Default: {', '.join(DEFAULT_MAILBOXES)}.",
)
@click.option(
    "--password", default="pw", show_default=True, help="Password of every mailbox and the service account."
)
@click.option(
    "--service-account", default=None, metavar="ADDRESS", help="A service account allowed to impersonate."
)
@click.option(
    "--folder", "folders", multiple=True, metavar="PATH", help="Create this folder in every mailbox."
)
def simulator(
    host: str,
    port: int,
    mailboxes: tuple[str, ...],
    password: str,
    service_account: str | None,
    folders: tuple[str, ...],
) -> None:
    """Run an in-memory Exchange (EWS) server until Ctrl+C or SIGTERM."""
    from foldertrack.simulator import Simulator

    stop = threading.Event()
    sim = Simulator(host=host, port=port)
    for address in mailboxes or DEFAULT_MAILBOXES:
        mb = sim.add_mailbox(address, password=password)
        for path in folders:
            mb.create_folder(path)
    if service_account:
        sim.add_service_account(service_account, password=password, impersonation=True)
    previous = {sig: signal.signal(sig, lambda *_: stop.set()) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            sim.start()
        except OSError as exc:
            raise click.ClickException(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        click.echo(f"EWS simulator listening on {sim.url}")
        for address in mailboxes or DEFAULT_MAILBOXES:
            click.echo(f"  mailbox          {address}  password {password}")
        if service_account:
            click.echo(f"  service account  {service_account}  password {password}  (may impersonate)")
        click.echo(f'  fault control    POST {sim.control_url}  e.g. {{"action": "drop_streams"}}')
        click.echo("Press Ctrl+C to stop.", err=True)
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("simulator stopped", err=True)
