"""``foldertrack simulator``: run the EWS simulator in the foreground (for the demo and manual testing)."""

from __future__ import annotations

import signal
import threading

import click

from foldertrack.simulator.profiles import PROFILES

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
@click.option(
    "--tls-port",
    default=None,
    type=int,
    help="HTTPS port (token endpoint, Dataverse, EWS). Default: --port + 1, or a free one with --port 0.",
)
@click.option(
    "--tenant", default=None, metavar="ID", help="Tenant of the demo app (default: a fixed demo GUID)."
)
@click.option("--client-id", default=None, metavar="ID", help="Client id of the demo app registration.")
@click.option("--client-secret", default=None, metavar="SECRET", help="Client secret of the demo app.")
@click.option("--seed-crm/--no-seed-crm", default=True, show_default=True, help="Create demo CRM records.")
@click.option(
    "--profile",
    type=click.Choice(sorted(PROFILES)),
    default="exchange",
    show_default=True,
    help="Server profile: behave like Exchange, or like a server that differs in one documented way.",
)
def simulator(
    host: str,
    port: int,
    mailboxes: tuple[str, ...],
    password: str,
    service_account: str | None,
    folders: tuple[str, ...],
    tls_port: int | None,
    tenant: str | None,
    client_id: str | None,
    client_secret: str | None,
    seed_crm: bool,
    profile: str,
) -> None:
    """Run an in-memory Exchange (EWS) server, Entra ID token endpoint and Dataverse until Ctrl+C or SIGTERM."""
    from foldertrack.simulator import Simulator

    stop = threading.Event()
    if tls_port is None:
        tls_port = port + 1 if port else 0
    sim = Simulator(host=host, port=port, tls_port=tls_port)
    sim.use_profile(profile)
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
        _start_crm(sim, tenant, client_id, client_secret, seed_crm)
        click.echo("Press Ctrl+C to stop.", err=True)
        while not stop.wait(0.5):
            pass
    finally:
        sim.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    click.echo("simulator stopped", err=True)


def _start_crm(sim, tenant: str | None, client_id: str | None, secret: str | None, seed: bool) -> None:
    """Register the demo app, seed the CRM and print how to reach Dataverse and the token endpoint."""
    from foldertrack.simulator.dataverse import MetadataMissing
    from foldertrack.simulator.dataverse.demo import seed_demo
    from foldertrack.simulator.identity import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT

    app = sim.identity.add_app(
        tenant or DEMO_TENANT, client_id or DEMO_CLIENT_ID, secret or DEMO_CLIENT_SECRET
    )
    click.echo(f"Dataverse (Web API v9.2) on {sim.https_base}/api/data/v9.2/")
    click.echo(f"  org URL / scope  {sim.https_base}  /  {sim.https_base}/.default")
    click.echo(
        f"  token endpoint   {sim.https_base}/{app.tenant}/oauth2/v2.0/token  (authority {sim.https_base}/{app.tenant})"
    )
    click.echo(f"  CA certificate   {sim.ca_path}  (pass as verify=; regenerated at every start)")
    click.echo(f"  demo app         tenant {app.tenant}  client id {app.client_id}  secret {app.secret}")
    click.echo(
        '  CRM faults       POST the fault control URL with {"target": "crm", "action": "throttle", "requests": 3}'
    )
    if seed:
        try:
            records = seed_demo(sim.crm)
        except MetadataMissing as exc:
            click.echo(f"  CRM not seeded: {exc}", err=True)
            return
        click.echo(f"  CRM records      {', '.join(records)}")
