"""The inspection commands with ``exchange.source = "graph"``: ``folders``, ``rules check --online``,
``rules preview`` / ``run --dry-run``, ``rules suggest`` and ``explain`` read the same simulator mailboxes
through Microsoft Graph (real MSAL token, ``requests`` over verified TLS) and say what they say on EWS."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import Result

from foldertrack.simulator.identity import DEMO_CLIENT_ID, DEMO_CLIENT_SECRET, DEMO_TENANT
from tests.cli.conftest import ALICE, World

GHOST = "ghost@example.com"


def graph_config(world: World, name: str = "graph.toml", **graph: str) -> Path:
    """``world``'s configuration with ``source = "graph"`` and a ``[graph]`` section for the demo app."""
    settings = {
        "tenant_id": DEMO_TENANT,
        "client_id": DEMO_CLIENT_ID,
        "authority": world.sim.https_base,
        "base_url": f"{world.sim.https_base}/v1.0",
        "ca_file": world.sim.ca_path,
        **graph,
    }
    path = world.tmp / name
    path.write_text(
        '[exchange]\nsource = "graph"\n\n[graph]\n'
        + "".join(f'{key} = "{value}"\n' for key, value in settings.items())
        + f'\n[database]\nurl = "{world.database_url}"\n\n[rules]\ndir = "{world.rules_dir}"\n',
        encoding="utf-8",
    )
    return path


@dataclass
class Both:
    """One world, two ways in: ``ews(...)`` and ``graph(...)`` run the same command line."""

    world: World
    config: Path

    def ews(self, *args: str) -> Result:
        return self.world.run(*args)

    def graph(self, *args: str, config: Path | None = None) -> Result:
        env = {
            "FOLDERTRACK_CONFIG": str(config or self.config),
            "FOLDERTRACK_GRAPH_CLIENT_SECRET": DEMO_CLIENT_SECRET,
        }
        return self.world.run(*args, env=env)


@pytest.fixture
def both(world: World, monkeypatch: pytest.MonkeyPatch) -> Both:
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # requests would let it override verify=
    monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
    world.sim.identity.add_app(DEMO_TENANT, DEMO_CLIENT_ID, DEMO_CLIENT_SECRET)
    return Both(world, graph_config(world))


def _by_path(result: Result) -> dict[str, dict]:
    assert result.exit_code == 0, result.output + result.stderr
    return {
        f["path"]: {k: v for k, v in f.items() if k != "id"} for f in json.loads(result.stdout)["folders"]
    }


def test_folders_tree_counts_and_rule_marks_as_on_ews(both):
    both.world.deliver("quote", "Inbox/Customers/Contoso")
    both.world.deliver("other quote", "Inbox/Customers/Contoso")
    ews, graph = (
        _by_path(both.ews("--json", "folders", ALICE)),
        _by_path(both.graph("--json", "folders", ALICE)),
    )
    # Graph lists mail folders only: EWS's calendar, contacts and tasks rows ("not a mail folder") are not there
    assert graph == {path: row for path, row in ews.items() if row["mail"]}
    assert graph["Inbox/Customers/Contoso"]["items"] == 2 and graph["Inbox"]["children"] == 2
    text = both.graph("folders", ALICE)
    lines = {line.split("  ")[0]: line for line in text.stdout.splitlines()}
    contoso = lines["Inbox/Customers/Contoso"]
    assert " 2 " in contoso and "account:acc-contoso" in contoso and "rules.yaml:4" in contoso
    assert "no record found for folder name 'Unknown Ltd'" in lines["Inbox/Accounts/Unknown Ltd"]
    assert "13 folder(s), 2 tracked by 2 rule(s)" in text.stdout


def test_folders_rule_typo_did_you_mean_on_graph(both):
    both.world.write_rules(
        f"""
        mailboxes:
          - address: {ALICE}
            folders:
              Inbox/Custmers/Contoso: account:acc-contoso
        """
    )
    result = both.graph("folders", ALICE)
    assert result.exit_code == 0, result.output
    assert (
        "rules.yaml:4: error: folder 'Inbox/Custmers/Contoso' does not exist "
        "(did you mean 'Inbox/Customers/Contoso'" in result.output
    )


def test_check_online_findings_as_on_ews(both):
    from tests.cli.test_rules_online import TYPO_RULES

    both.world.write_rules(TYPO_RULES)
    ews, graph = (
        both.ews("rules", "check", "--online", "--json"),
        both.graph("rules", "check", "--online", "--json"),
    )
    assert ews.exit_code == graph.exit_code == 1, graph.output + graph.stderr
    ews_data, graph_data = json.loads(ews.stdout), json.loads(graph.stdout)

    def rules(data: dict) -> list[dict]:  # the mailbox lines differ: folder counts, each server's error
        return [f for f in data["online"] if f["kind"] != "mailbox"]

    assert rules(graph_data) == rules(ews_data)
    typo = next(f for f in graph_data["online"] if f["kind"] == "folder" and f["severity"] == "error")
    assert typo["path"] == "Inbox/Custmers/Contoso" and typo["suggestions"] == ["Inbox/Customers/Contoso"]
    (ghost,) = [f for f in graph_data["online"] if f["mailbox"] == GHOST]
    assert ghost["severity"] == "error"
    assert ghost["message"] == (
        f"cannot open the mailbox: Graph HTTP 404 ErrorInvalidUser: The requested user '{GHOST}' is invalid."
    )


def test_preview_and_dry_run_as_on_ews(both):
    world = both.world
    for i in range(3):
        world.deliver(f"contoso {i}", "Inbox/Customers/Contoso")
    world.deliver("fabrikam", "Inbox/Customers/Fabrikam")
    world.deliver("recent", "Projects")
    old = world.deliver("old project", "Projects")
    store = world.sim.store
    with store.lock:  # before the 30-day cutoff: only $filter=receivedDateTime ge … leaves it out
        store.item_by_id(store.mailbox(ALICE), old).received = datetime.now(UTC) - timedelta(days=40)
    world.write_rules(
        f"""
        mailboxes:
          - address: {ALICE}
            folders:
              Inbox/Customers/Contoso: account:acc-contoso
              Inbox/Customers/Fabrikam:
                record: account:acc-fabrikam
                backfill: false
              Projects:
                record: account:acc-contoso
                backfill_since: 30d
              Inbox/Accounts/*:
                record: {{type: account, by: name_or_number}}
        """
    )
    args = ("rules", "preview", "--json", "--sample", "2")
    ews, graph = both.ews(*args), both.graph(*args)
    assert ews.exit_code == graph.exit_code == 0, graph.output + graph.stderr
    assert json.loads(graph.stdout) == json.loads(ews.stdout)
    by_path = {f["path"]: f for f in json.loads(graph.stdout)["folders"]}
    assert by_path["Inbox/Customers/Contoso"]["backfill"] == 3
    assert by_path["Inbox/Customers/Contoso"]["newest"] == ["contoso 2", "contoso 1"]
    assert (
        by_path["Inbox/Customers/Fabrikam"]["backfill"] == 0
        and by_path["Inbox/Customers/Fabrikam"]["items"] == 1
    )
    assert by_path["Projects"]["backfill"] == 1 and by_path["Projects"]["items"] == 2
    assert by_path["Projects"]["newest"] == ["recent"]
    dry_ews, dry_graph = both.ews("run", "--dry-run"), both.graph("run", "--dry-run")
    assert dry_graph.exit_code == 0 and dry_graph.stdout == dry_ews.stdout
    assert "first sync takes 1 of 2 item(s): backfill_since: 30d" in dry_graph.stdout


def test_suggest_as_on_ews(both):
    both.world.sim.mailbox(ALICE).create_folder("Inbox/Customers/Fabrikm")
    outputs = {}
    for args in (("rules", "suggest", ALICE), ("--json", "rules", "suggest", ALICE)):
        ews, graph = both.ews(*args), both.graph(*args)
        assert graph.exit_code == 0, graph.output + graph.stderr
        assert graph.stdout == ews.stdout
        outputs[args[0]] = graph.stdout
    assert '      Inbox/Customers/Contoso: account:acc-contoso   # "Contoso"' in outputs["rules"]
    assert (
        '      # Inbox/Customers/Fabrikm: account:acc-fabrikam   # close match: "Fabrikam"'
        in outputs["rules"]
    )
    by_path = {s["path"]: s for s in json.loads(outputs["--json"])["suggestions"]}
    assert by_path["Inbox/Customers/Fabrikm"]["match"] == "close"


def test_explain_finds_the_mail_in_exchange_as_on_ews(both):
    both.world.deliver("quote", "Inbox/Customers/Contoso")
    both.world.deliver("Dana's quote", "Projects", message_id="<danas-quote@example.com>")
    both.world.deliver("invoice", "Inbox")
    outputs = {}
    for args in (
        ("explain", "quote@example.com"),  # no brackets: Graph's internetMessageId has them
        ("explain", "--subject", "QUOTE"),  # in two folders, case-insensitive
        ("explain", "--subject", "dana's"),  # a quote in an OData string literal
        ("--json", "explain", "<danas-quote@example.com>", "--mailbox", ALICE),
    ):
        ews, graph = both.ews(*args), both.graph(*args)
        assert graph.exit_code == 0, graph.output + graph.stderr
        assert graph.stdout == ews.stdout, args
        outputs[args[-1]] = graph.stdout
    assert (
        "in Exchange now:\n  alice@example.com  Inbox/Customers/Contoso  quote  received "
        in outputs["quote@example.com"]
    )
    assert "Inbox/Customers/Contoso  quote  received " in outputs["QUOTE"]
    assert "Projects  Dana's quote  received " in outputs["QUOTE"]
    assert "Projects  Dana's quote  received " in outputs["dana's"] and "  quote  " not in outputs["dana's"]
    (sighting,) = json.loads(outputs[ALICE])["exchange"]
    assert sighting["folder"] == "Projects" and sighting["subject"] == "Dana's quote"
    missing = both.graph("explain", "<nobody@example.com>")
    assert missing.exit_code == 1 and "in the state database or in Exchange" in missing.stderr


def test_explain_a_mail_a_graph_watcher_tracked(both):
    """The ledger holds the Graph watcher's folder ids; the Graph reader names folders by the same ids, so
    the copy found in Exchange is "tracked here"."""
    from foldertrack.testing.graph_watch import GraphHarness, graph_options
    from foldertrack.testing.harness import options_for_tests

    world = both.world
    options = graph_options(options_for_tests())
    with GraphHarness(world.tmp, simulator=world.sim, database_url=world.database_url, **options) as h:
        h.start_watcher()
        world.deliver("quote", "Inbox/Customers/Contoso")
        h.wait_tracked("quote", regarding_id="acc-contoso")
        h.settle()
        h.stop_watcher()
    result = both.graph("explain", "<quote@example.com>")
    assert result.exit_code == 0, result.output + result.stderr
    assert (
        "  verdict: tracked from alice@example.com Inbox/Customers/Contoso, regarding account:acc-contoso"
        in (result.stdout)
    )
    assert "in Exchange now:\n  alice@example.com  Inbox/Customers/Contoso  quote  received " in result.stdout
    assert result.stdout.rstrip().endswith(": tracked here")


def test_graph_failures_keep_the_exit_codes(both):
    """Graph answered no (404, 401/403): exit 1; unreachable (API or token endpoint) or throttled: exit 75,
    try again later; an incomplete ``[graph]``: a config error (78)."""
    unknown = both.graph("folders", GHOST)
    assert unknown.exit_code == 1 and unknown.stdout == ""
    assert unknown.stderr.strip() == (
        f"error: {GHOST}: reading the folder tree failed: Graph HTTP 404 ErrorInvalidUser: "
        f"The requested user '{GHOST}' is invalid."
    )
    wrong_secret = both.world.run(
        "folders",
        ALICE,
        env={"FOLDERTRACK_CONFIG": str(both.config), "FOLDERTRACK_GRAPH_CLIENT_SECRET": "wrong"},
    )
    assert wrong_secret.exit_code == 1 and "wrong" not in wrong_secret.stderr
    down = "https://127.0.0.1:9"
    for name, settings in (("api", {"base_url": f"{down}/v1.0"}), ("token", {"authority": down})):
        result = both.graph("folders", ALICE, config=graph_config(both.world, f"{name}.toml", **settings))
        assert result.exit_code == 75, (name, result.stderr)  # temporary: try again later
        (line,) = result.stderr.strip().splitlines()
        assert line.startswith(f"error: {ALICE}: reading the folder tree failed: "), line
    both.world.sim.graph.faults.throttle(requests=1, retry_after=1.0, mailbox=ALICE)
    throttled = both.graph("folders", ALICE)
    assert throttled.exit_code == 75 and "HTTP 429" in throttled.stderr
    bare = both.world.tmp / "bare.toml"
    bare.write_text('[exchange]\nsource = "graph"\n', encoding="utf-8")
    incomplete = both.graph("folders", ALICE, config=bare)
    assert incomplete.exit_code == 78 and "graph.tenant_id is not set" in incomplete.stderr
