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


@pytest.fixture
def harness(tmp_path):
    with Harness(tmp_path, **options_for_tests()) as h:
        h.import_records(RECORDS)
        yield h
