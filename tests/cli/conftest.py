"""A small world for the CLI tests: the EWS simulator with alice's folders and mails, a service account
that impersonates her, a config file pointing at it, a SQLite state database with records, and rules."""

from __future__ import annotations

import textwrap
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from foldertrack.cli import main
from foldertrack.config import loader as config_loader
from foldertrack.simulator import MailSpec, Simulator
from foldertrack.state.database import upgrade_database
from foldertrack.state.records import RecordDirectory
from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD, Harness, options_for_tests
from foldertrack.testing.process import write_config

ALICE = "alice@example.com"
RECORDS = """type,id,name,number,emails
account,acc-contoso,Contoso,C-100,info@contoso.com
account,acc-fabrikam,Fabrikam,F-200,
account,acc-northwind,Northwind Traders,N-300,
contact,con-dana,Dana Contoso,,dana@contoso.com
"""
RULES = f"""
mailboxes:
  - address: {ALICE}
    folders:
      Inbox/Customers/Contoso: account:acc-contoso
      Inbox/Accounts/*:
        record: {{type: account, by: name_or_number}}
"""
FOLDERS = (
    "Inbox/Customers/Contoso",
    "Inbox/Customers/Fabrikam",
    "Inbox/Accounts/Northwind Traders",
    "Inbox/Accounts/Unknown Ltd",
    "Projects",
)


def mail(subject: str, **kw: Any) -> MailSpec:
    kw.setdefault("sender", "dana@contoso.com")
    kw.setdefault("to", [ALICE])
    kw.setdefault("message_id", f"<{subject.replace(' ', '-')}@example.com>")
    return MailSpec(subject=subject, body=f"body of {subject}", **kw)


@dataclass
class World:
    sim: Simulator
    config: Path
    database_url: str
    rules_dir: Path
    tmp: Path

    def run(self, *args: str, env: dict[str, str | None] | None = None) -> Result:
        """The CLI with this world's config; asserts no traceback leaked."""
        environment = {
            "FOLDERTRACK_EXCHANGE_PASSWORD": SERVICE_PASSWORD,
            "FOLDERTRACK_DATABASE_URL": None,
            "FOLDERTRACK_CONFIG": str(self.config),
            **(env or {}),
        }
        result = CliRunner().invoke(main, list(args), env=environment)
        assert "Traceback" not in result.output + result.stderr, result.output + result.stderr
        assert result.exception is None or isinstance(result.exception, SystemExit), repr(result.exception)
        return result

    def write_rules(self, text: str, name: str = "rules.yaml") -> Path:
        path = self.rules_dir / name
        path.write_text(textwrap.dedent(text).lstrip("\n"), encoding="utf-8")
        return path

    def deliver(self, subject: str, folder: str, **kw: Any) -> str:
        return self.sim.deliver(ALICE, mail(subject, **kw), folder=folder)


@pytest.fixture
def world(
    simulator_factory: Callable[..., Simulator], tmp_path: Path, clean_config_env, monkeypatch
) -> World:
    monkeypatch.setattr(config_loader, "DEFAULT_CONFIG_PATH", tmp_path / "etc" / "foldertrack.toml")
    sim = simulator_factory(heartbeat=1.0)  # keep-alives well inside the watcher's 5 s stall timeout
    sim.add_service_account(SERVICE_ACCOUNT, password=SERVICE_PASSWORD, impersonation=True)
    mailbox = sim.add_mailbox(ALICE, password="user-pw")
    for path in FOLDERS:
        mailbox.create_folder(path)
    database_url = f"sqlite:///{tmp_path / 'state' / 'foldertrack.db'}"
    upgrade_database(database_url)
    from foldertrack.state.database import open_database

    engine = open_database(database_url)
    try:
        (tmp_path / "records.csv").write_text(RECORDS, encoding="utf-8")
        RecordDirectory(engine).import_csv(tmp_path / "records.csv")
    finally:
        engine.dispose()
    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    config = write_config(
        tmp_path / "foldertrack.toml", endpoint=sim.url, database_url=database_url, rules_dir=rules_dir
    )
    w = World(sim, config, database_url, rules_dir, tmp_path)
    w.write_rules(RULES)
    return w


@pytest.fixture
def tracked(world):
    """The world with a watcher that has tracked "quote" into Contoso and settled; stopped afterwards."""
    world.write_rules(
        RULES
        + """
      Inbox/Customers/Fabrikam:
        record: account:acc-fabrikam
        backfill: false
"""
    )
    old = world.deliver("old fabrikam", "Inbox/Customers/Fabrikam")
    store = world.sim.store
    with store.lock:  # received yesterday: before the rule existed, so `backfill: false` skips it
        store.item_by_id(store.mailbox(ALICE), old).received = datetime.now(UTC) - timedelta(days=1)
    with Harness(world.tmp, simulator=world.sim, database_url=world.database_url, **options_for_tests()) as h:
        h.start_watcher()
        world.deliver("quote", "Inbox/Customers/Contoso")
        h.wait_tracked("quote", regarding_id="acc-contoso")
        world.deliver("unknown account mail", "Inbox/Accounts/Unknown Ltd")
        world.deliver("project mail", "Projects")
        h.settle()
        h.stop_watcher()
        yield world
