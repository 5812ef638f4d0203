"""``foldertrack demo``: the whole product, Exchange to CRM, on the built-in simulators, in well under a minute.

One simulator process serves EWS, the token endpoint and Dataverse. The watcher is built from a real
configuration file by the same code as ``foldertrack run`` (sink plug-in, delivery outbox, mailbox
feedback), the record directory comes from the CRM by ``records sync``, and a simulated mobile user files
mails. ``--sink sql`` keeps everything local, as before there was a CRM.
"""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import click

DEMO_RULES = """
mailboxes:
  - addresses: [alice@example.com, bob@example.com]
    folders:
      Inbox/Customers/*:
        record: {type: account, by: name}
      Inbox/Support:
        record: null
        on_leave: untrack
"""
#: for ``--sink sql``: the same records as the simulated CRM's, from a CSV file
DEMO_RECORDS_CSV = """type,id,name,number,emails
account,acc-contoso,Contoso Ltd,C-1001,info@contoso.com
account,acc-fabrikam,Fabrikam Inc,F-2002,sales@fabrikam.com
contact,con-jane,Jane Doe,,jane@contoso.com
"""
FOLDERS = ("Inbox/Customers/Contoso Ltd", "Inbox/Customers/Fabrikam Inc", "Inbox/Support", "Inbox/Done")
MAILBOXES = ("alice@example.com", "bob@example.com")
TENANT, CLIENT_ID, CLIENT_SECRET = "contoso-demo", "11111111-2222-3333-4444-555555555555", "demo-app-secret"


def _config_text(h: Any, sink: str, source: str = "ews") -> str:
    """The configuration an admin would write, pointing at the simulators (secrets come from the env)."""
    from foldertrack.testing.harness import SERVICE_ACCOUNT

    text = f"""
[exchange]
endpoint = "{h.sim.url}"
username = "{SERVICE_ACCOUNT}"

[database]
url = "{h.database_url}"

[rules]
dir = "{h.rules_dir}"

[watch]
poll_interval = "2s"
debounce = "20ms"
stall_timeout = "5s"

[sink]
name = "{sink}"
"""
    if sink == "dataverse":
        text += f"""
[dataverse]
url = "{h.sim.https_base}"
authority = "{h.sim.https_base}"
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
ca_file = "{h.sim.ca_path}"
"""
    if source == "graph":  # Exchange Online through Microsoft Graph (README "Exchange Online (Microsoft Graph)")
        text = text.replace("[exchange]\n", '[exchange]\nsource = "graph"\n', 1)
        text += f"""
[graph]
tenant_id = "{TENANT}"
client_id = "{CLIENT_ID}"
authority = "{h.sim.https_base}"
base_url = "{h.sim.https_base}/v1.0"
ca_file = "{h.sim.ca_path}"
poll_interval = "1s"
"""
    return text


@click.command()
@click.option(
    "--keep",
    type=click.Path(file_okay=False),
    default=None,
    help="Work in this directory (and keep it) instead of a temporary one.",
)
@click.option(
    "--sink",
    type=click.Choice(["dataverse", "sql"]),
    default="dataverse",
    show_default=True,
    help="Deliver into the simulated Dynamics 365 (Dataverse), or keep activities local only.",
)
@click.option(
    "--source",
    type=click.Choice(["ews", "graph"]),
    default="ews",
    show_default=True,
    help="Read the mailboxes through EWS or Microsoft Graph (delta polling).",
)
def demo(keep: str | None, sink: str, source: str) -> None:
    """Run the simulators, the watcher and a simulated mobile user; print what happens."""
    from foldertrack.config import load_config
    from foldertrack.runtime import build_watcher
    from foldertrack.simulator import Simulator
    from foldertrack.simulator.dataverse.demo import seed_demo
    from foldertrack.testing.harness import SERVICE_PASSWORD, Harness

    logging.basicConfig(level=logging.WARNING)
    say = click.echo
    with tempfile.TemporaryDirectory(prefix="foldertrack-demo-") as tmp:
        workdir = Path(keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        with Harness(workdir, simulator=Simulator(heartbeat=1.0)) as h:
            h.sim.start()
            try:
                say(f"simulated Exchange at {h.sim.url}")
                for address in MAILBOXES:
                    mailbox = h.add_mailbox(address)
                    for path in FOLDERS:
                        mailbox.create_folder(path)
                h.write_rules(DEMO_RULES)
                config_file = workdir / "foldertrack.toml"
                config_file.write_text(_config_text(h, sink, source), encoding="utf-8")
                env = {"FOLDERTRACK_EXCHANGE_PASSWORD": SERVICE_PASSWORD}
                if sink == "dataverse":
                    h.sim.identity.add_app(TENANT, CLIENT_ID, CLIENT_SECRET)
                    seed_demo(h.sim.crm)
                    env["FOLDERTRACK_DATAVERSE_CLIENT_SECRET"] = CLIENT_SECRET
                    say(f"simulated Dynamics 365 (Dataverse) at {h.sim.https_base}/api/data/v9.2/")
                if source == "graph":
                    h.sim.identity.add_app(TENANT, CLIENT_ID, CLIENT_SECRET)
                    env["FOLDERTRACK_GRAPH_CLIENT_SECRET"] = CLIENT_SECRET
                    say(f"simulated Microsoft Graph at {h.sim.https_base}/v1.0 (same mailboxes)")
                config = load_config(config_file, env=env)
                _load_records(h, config, sink, say)
                say(f"configuration, rules and database in {workdir}")
                h.watcher = build_watcher(config)
                h.watcher.start()
                if not h.watcher.ready.wait(30):
                    raise click.ClickException("the watcher did not become ready within 30 s")
                say("watcher is streaming; playing a mobile user…\n")
                _play(h, sink, say)
            finally:
                h.stop_watcher()
                h.sim.stop()


def _load_records(h: Any, config: Any, sink: str, say: Any) -> None:
    if sink != "dataverse":
        h.import_records(DEMO_RECORDS_CSV)
        say("record directory imported from CSV")
        return
    from foldertrack.crm.connect import connect
    from foldertrack.crm.records_sync import RecordsSyncer

    client = connect(config)
    try:
        RecordsSyncer(client, h.engine).sync()
    finally:
        client.close()
    say("record directory synced from the CRM (foldertrack records sync)")


def _play(h: Any, sink: str, say: Any) -> None:
    """The mobile user's story; every move is timed to the local activity and, with a CRM, to the CRM."""
    from foldertrack.simulator import MailSpec

    crm = h.sim.crm if sink == "dataverse" else None
    alice, bob = h.sim.mailbox("alice@example.com"), h.sim.mailbox("bob@example.com")
    local: list[float] = []
    remote: list[float] = []

    def in_crm(key: str, regarding_name: str | None) -> bool:
        from foldertrack.sinks.dataverse import activity_id

        email = crm.email(activity_id(key))
        return email is not None and email.get("regarding_name") == regarding_name

    def move(mailbox, item, folder: str, subject: str, record: str | None = None, **expected) -> str:
        started = time.monotonic()
        new_id = mailbox.move_item(item, folder)
        row = h.wait_tracked(subject, **expected)
        local.append(time.monotonic() - started)
        line = f"  {local[-1] * 1000:6.0f} ms local"
        if crm is not None:
            h.wait_for(lambda: in_crm(row["key"], record), what=f"{subject!r} in the CRM")
            remote.append(time.monotonic() - started)
            line += f", {remote[-1] * 1000:6.0f} ms in the CRM"
        say(f"{line}  {subject!r} → {folder}")
        return new_id

    def mail(subject: str, to: str) -> MailSpec:
        return MailSpec(
            subject=subject, sender="jane@contoso.com", to=[to], body=f"{subject}: the details we discussed."
        )

    contoso, fabrikam = "Inbox/Customers/Contoso Ltd", "Inbox/Customers/Fabrikam Inc"
    for n in range(1, 4):
        item = h.sim.deliver("alice@example.com", mail(f"Contoso order #{n}", "alice@example.com"))
        move(alice, item, contoso, f"Contoso order #{n}", "Contoso Ltd", regarding_name="Contoso Ltd")
    item = h.sim.deliver("alice@example.com", mail("Fabrikam renewal", "alice@example.com"))
    item = move(alice, item, contoso, "Fabrikam renewal", "Contoso Ltd", regarding_name="Contoso Ltd")
    say("  alice notices the mistake and re-files it:")
    move(alice, item, fabrikam, "Fabrikam renewal", "Fabrikam Inc", regarding_name="Fabrikam Inc")
    item = h.sim.deliver("alice@example.com", mail("Printer broken", "alice@example.com"))
    item = move(alice, item, "Inbox/Support", "Printer broken", state="tracked")
    say("  moved out of a folder with on_leave: untrack:")
    alice.move_item(item, "Inbox/Done")
    h.wait_tracked("Printer broken", state="untracked")
    say("  'Printer broken' is now untracked (kept, regarding cleared)")
    shared = MailSpec(
        subject="Joint proposal",
        sender="jane@contoso.com",
        to=["alice@example.com", "bob@example.com"],
        body="Both of you, please review.",
        message_id="<joint-proposal@contoso.com>",
    )
    item = h.sim.deliver("alice@example.com", shared)
    move(alice, item, contoso, "Joint proposal", "Contoso Ltd", regarding_name="Contoso Ltd")
    bob.move_item(h.sim.deliver("bob@example.com", shared), fabrikam)
    h.settle()
    say("  bob filed the same mail too: still one activity (first wins, conflict recorded)")
    say("  the stream is cut…")
    h.sim.faults.drop_streams()
    item = h.sim.deliver("alice@example.com", mail("Sent while the stream was down", "alice@example.com"))
    move(alice, item, contoso, "Sent while the stream was down", "Contoso Ltd", regarding_name="Contoso Ltd")
    h.settle()
    if crm is not None:
        h.wait_for(lambda: h.watcher.delivery.figures().backlog == 0, what="an empty outbox")
        _print_crm(h, crm, say)
    else:
        _print_local(h, say)
    _print_latency(local, remote, say)


def _print_crm(h: Any, crm: Any, say: Any) -> None:
    alice = h.sim.mailbox(MAILBOXES[0])
    # the category is set in the mailbox after the CRM confirms: wait for it so the table is complete
    h.wait_for(
        lambda: all("Tracked to CRM" in i.categories for i in alice.items("Inbox/Customers/Contoso Ltd")),
        what="the 'Tracked to CRM' category",
    )
    say("")
    say("the CRM (Dataverse) now holds:")
    say(f"{'subject':<32} {'regarding':<14} {'parties':<46} category in alice's mailbox")
    categories = {i.message_id: i.categories for folder in FOLDERS for i in alice.items(folder)}
    for email in crm.emails():
        parties = ", ".join(
            f"{_ROLE.get(mask, mask)}:{crm.display_name(*who) if isinstance(who, tuple) else who}"
            for mask, who in email["parties"]
        )
        category = ", ".join(categories.get(email["messageid"], ())) or "-"
        say(f"{email['subject']:<32} {email.get('regarding_name') or '-':<14} {parties:<46} {category}")


_ROLE = {1: "from", 2: "to", 3: "cc", 4: "bcc"}


def _print_local(h: Any, say: Any) -> None:
    say("")
    say(f"{'subject':<32} {'regarding':<22} {'state':<10} {'mailbox':<19} parties")
    for a in h.activities():
        regarding = f"{a['regarding_type']}:{a['regarding_id']}" if a["regarding_id"] else "-"
        parties = ", ".join(
            f"{p['role']}:{p['address']}" + (f"={p['record_id']}" if p["record_id"] else "")
            for p in h.parties(a["key"])
        )
        say(f"{a['subject']:<32} {regarding:<22} {a['state']:<10} {a['mailbox']:<19} {parties}")


def _print_latency(local: list[float], remote: list[float], say: Any) -> None:
    say("")
    for name, values in (("move → local activity", local), ("move → email in the CRM", remote)):
        if values:
            ordered = sorted(values)
            say(
                f"{name} over {len(ordered)} moves: p50 {statistics.median(ordered) * 1000:.0f} ms,"
                f" max {ordered[-1] * 1000:.0f} ms"
            )
