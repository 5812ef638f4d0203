from __future__ import annotations

import pytest

from foldertrack.testing.harness import Harness, options_for_tests

ALICE = "alice@example.com"
BOB = "bob@example.com"

RECORDS = """type,id,name,number,emails
account,acc-contoso,Contoso,C-100,info@contoso.com
account,acc-fabrikam,Fabrikam,F-200,
contact,con-dana,Dana Contoso,,dana@contoso.com
"""

#: a test decorated with this runs once per mail source: the same body proves EWS streaming and Graph delta
both_sources = pytest.mark.parametrize("source", ["ews", "graph"])


@pytest.fixture
def source() -> str:
    """The source the ``harness`` watcher reads through: ``ews`` unless the test is :data:`both_sources`."""
    return "ews"


@pytest.fixture
def harness(tmp_path, source, monkeypatch):
    if source == "graph":
        from foldertrack.testing.graph_watch import GraphHarness, graph_options

        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)  # requests would let it override verify=
        monkeypatch.delenv("CURL_CA_BUNDLE", raising=False)
        h = GraphHarness(tmp_path, **graph_options(options_for_tests()))
    else:
        h = Harness(tmp_path, **options_for_tests())
    with h:
        h.import_records(RECORDS)
        yield h
