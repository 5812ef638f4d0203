"""SyncFolderItems through exchangelib: initial sync, paging, incremental changes, moves, bad states."""

from __future__ import annotations

import pytest
from exchangelib.errors import ErrorInvalidSyncStateData

from foldertrack.simulator import MailSpec
from foldertrack.testing.fixtures_simulator import exchangelib_account


@pytest.fixture
def alice(simulator):
    mb = simulator.add_mailbox("alice@example.com", password="pw")
    mb.create_folder("Inbox/Customers/Contoso")
    return mb, exchangelib_account(simulator, "alice@example.com")


def _sync(folder, state, page=100):
    changes = list(folder.sync_items(sync_state=state, only_fields=["subject"], max_changes_returned=page))
    return changes, folder.item_sync_state


def test_initial_sync_pages_until_last_item(alice, simulator):
    _, account = alice
    for n in range(5):
        simulator.deliver("alice@example.com", MailSpec(subject=f"m{n}"))
    before = simulator.stats["SyncFolderItems"]
    changes, state = _sync(account.inbox, None, page=2)
    assert sorted(item.subject for kind, item in changes) == [f"m{n}" for n in range(5)]
    assert {kind for kind, _ in changes} == {"create"}
    assert simulator.stats["SyncFolderItems"] - before == 3  # 2 + 2 + 1, IncludesLastItemInRange on the third
    changes, _state2 = _sync(account.inbox, state)
    assert changes == []


def test_move_is_delete_in_source_and_create_in_destination(alice, simulator):
    mb, account = alice
    item_id = simulator.deliver("alice@example.com", MailSpec(subject="moved"))
    contoso = account.inbox / "Customers" / "Contoso"
    _, inbox_state = _sync(account.inbox, None)
    _, contoso_state = _sync(contoso, None)
    new_id = mb.move_item(item_id, "Inbox/Customers/Contoso")
    changes, _ = _sync(account.inbox, inbox_state)
    assert [(kind, ref.id) for kind, ref in changes] == [("delete", item_id)]
    changes, _ = _sync(contoso, contoso_state)
    assert [(kind, ref.id) for kind, ref in changes] == [("create", new_id)]


def test_update_and_read_flag_changes(alice, simulator):
    mb, account = alice
    a = simulator.deliver("alice@example.com", MailSpec(subject="a"))
    b = simulator.deliver("alice@example.com", MailSpec(subject="b"))
    _, state = _sync(account.inbox, None)
    mb.mark_read(a)
    mb.set_categories(b, ["CRM"])
    changes = dict(
        (kind, ref)
        for kind, ref in account.inbox.sync_items(sync_state=state, only_fields=["subject", "categories"])
    )
    assert changes["read_flag_change"][0].id == a and changes["read_flag_change"][1] is True
    assert changes["update"].id == b and changes["update"].categories == ["CRM"]


def test_create_then_delete_within_window_is_not_reported(alice, simulator):
    mb, account = alice
    _, state = _sync(account.inbox, None)
    item_id = simulator.deliver("alice@example.com", MailSpec(subject="short-lived"))
    mb.delete_item(item_id, hard=True)
    changes, _ = _sync(account.inbox, state)
    assert changes == []


def test_state_is_per_folder_and_garbage_is_rejected(alice):
    _, account = alice
    _, inbox_state = _sync(account.inbox, None)
    contoso = account.inbox / "Customers" / "Contoso"
    with pytest.raises(ErrorInvalidSyncStateData):
        _sync(contoso, inbox_state)
    with pytest.raises(ErrorInvalidSyncStateData):
        _sync(account.inbox, "bm90IGEgc3luYyBzdGF0ZQ==")


def test_paging_with_concurrent_changes_loses_nothing(alice, simulator):
    mb, account = alice
    ids = [simulator.deliver("alice@example.com", MailSpec(subject=f"p{n}")) for n in range(6)]
    seen: dict[str, str] = {}
    state = None
    page_iter = account.inbox.sync_items(sync_state=state, only_fields=["subject"], max_changes_returned=2)
    for n, (kind, ref) in enumerate(page_iter):
        if kind == "delete":
            seen.pop(ref.id, None)
        else:
            seen[ref.id] = kind
        if n == 0:
            mb.delete_item(ids[5], hard=True)  # happens between pages
            ids.append(simulator.deliver("alice@example.com", MailSpec(subject="late")))
    state = account.inbox.item_sync_state
    changes, _ = _sync(account.inbox, state)
    for kind, ref in changes:
        if kind == "delete":
            seen.pop(ref.id, None)
        else:
            seen[ref.id] = kind
    assert set(seen) == {s.id for s in mb.items("Inbox")}
