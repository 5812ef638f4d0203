"""``foldertrack demo``: the whole product on the built-in simulated Exchange, in well under a minute."""

from __future__ import annotations

import logging
import statistics
import tempfile
import time
from pathlib import Path

import click

DEMO_RULES = """
mailboxes:
  - addresses: [alice@example.com, bob@example.com]
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/Customers/Fabrikam: account:acc-fabrikam
      Inbox/Support:
        record: null
        on_leave: untrack
"""
DEMO_RECORDS = """type,id,name,number,emails
account,acc-contoso,Contoso Ltd,C-100,info@contoso.com
account,acc-fabrikam,Fabrikam Inc,F-200,info@fabrikam.com
contact,con-dana,Dana Whitley,,dana@contoso.com
"""
FOLDERS = ("Inbox/Customers/Contoso", "Inbox/Customers/Fabrikam", "Inbox/Support", "Inbox/Done")


@click.command()
@click.option(
    "--keep",
    type=click.Path(file_okay=False),
    default=None,
    help="Work in this directory (and keep it) instead of a temporary one.",
)
def demo(keep: str | None) -> None:
    """Run the simulator, the watcher and a simulated mobile user; print what happens."""
    from foldertrack.simulator import MailSpec
    from foldertrack.testing.harness import Harness, options_for_tests

    logging.basicConfig(level=logging.WARNING)
    with tempfile.TemporaryDirectory(prefix="foldertrack-demo-") as tmp:
        workdir = Path(keep or tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        with Harness(workdir, **options_for_tests(poll_interval=2.0)) as h:
            say = click.echo
            say(f"simulated Exchange at {h.sim.url}")
            for address in ("alice@example.com", "bob@example.com"):
                mailbox = h.add_mailbox(address)
                for path in FOLDERS:
                    mailbox.create_folder(path)
            h.write_rules(DEMO_RULES)
            h.import_records(DEMO_RECORDS)
            say(f"rules and record directory written to {workdir}")
            h.start_watcher()
            say("watcher is streaming; playing a mobile user…\n")
            alice, bob = h.sim.mailbox("alice@example.com"), h.sim.mailbox("bob@example.com")
            latencies: list[float] = []

            def move(mailbox, item, folder, subject, **expected) -> str:
                started = time.monotonic()
                new_id = mailbox.move_item(item, folder)
                h.wait_tracked(subject, **expected)
                latencies.append(time.monotonic() - started)
                say(f"  {latencies[-1] * 1000:6.0f} ms  {subject!r} → {folder}")
                return new_id

            def mail(subject: str, to: str) -> MailSpec:
                return MailSpec(
                    subject=subject,
                    sender="dana@contoso.com",
                    to=[to],
                    body=f"{subject}: the details we discussed.",
                )

            for n in range(1, 4):
                item = h.sim.deliver("alice@example.com", mail(f"Contoso order #{n}", "alice@example.com"))
                move(
                    alice, item, "Inbox/Customers/Contoso", f"Contoso order #{n}", regarding_id="acc-contoso"
                )
            item = h.sim.deliver("alice@example.com", mail("Fabrikam renewal", "alice@example.com"))
            item = move(
                alice, item, "Inbox/Customers/Contoso", "Fabrikam renewal", regarding_id="acc-contoso"
            )
            say("  alice notices the mistake and re-files it:")
            move(alice, item, "Inbox/Customers/Fabrikam", "Fabrikam renewal", regarding_id="acc-fabrikam")
            item = h.sim.deliver("alice@example.com", mail("Printer broken", "alice@example.com"))
            item = move(alice, item, "Inbox/Support", "Printer broken", state="tracked")
            say("  moved out of a folder with on_leave: untrack:")
            alice.move_item(item, "Inbox/Done")
            h.wait_tracked("Printer broken", state="untracked")
            say("  'Printer broken' is now untracked (kept, regarding cleared)")
            shared = MailSpec(
                subject="Joint proposal",
                sender="dana@contoso.com",
                to=["alice@example.com", "bob@example.com"],
                body="Both of you, please review.",
                message_id="<joint-proposal@contoso.com>",
            )
            move(
                alice,
                h.sim.deliver("alice@example.com", shared),
                "Inbox/Customers/Contoso",
                "Joint proposal",
                regarding_id="acc-contoso",
            )
            bob_item = h.sim.deliver("bob@example.com", shared)
            bob.move_item(bob_item, "Inbox/Customers/Fabrikam")
            h.settle()
            say("  bob filed the same mail too: still one activity (first wins, conflict recorded)")
            say("  the stream is cut…")
            h.sim.faults.drop_streams()
            item = h.sim.deliver(
                "alice@example.com", mail("Sent while the stream was down", "alice@example.com")
            )
            move(
                alice,
                item,
                "Inbox/Customers/Contoso",
                "Sent while the stream was down",
                regarding_id="acc-contoso",
            )
            h.settle()
            say("")
            say(f"{'subject':<32} {'regarding':<22} {'state':<10} {'mailbox':<19} parties")
            for a in h.activities():
                regarding = f"{a['regarding_type']}:{a['regarding_id']}" if a["regarding_id"] else "-"
                parties = ", ".join(
                    f"{p['role']}:{p['address']}" + (f"={p['record_id']}" if p["record_id"] else "")
                    for p in h.parties(a["key"])
                )
                say(f"{a['subject']:<32} {regarding:<22} {a['state']:<10} {a['mailbox']:<19} {parties}")
            ordered = sorted(latencies)
            say("")
            say(
                f"move → activity latency over {len(ordered)} moves: p50 {statistics.median(ordered) * 1000:.0f} ms,"
                f" max {ordered[-1] * 1000:.0f} ms"
            )
