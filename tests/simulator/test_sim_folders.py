"""Folders through unmodified exchangelib over HTTP: lookup by path, create, rename, move, delete, sync."""

from __future__ import annotations

import pytest
from exchangelib.errors import ErrorFolderExists, ErrorFolderNotFound, ErrorInvalidIdMalformed
from exchangelib.folders import Folder, FolderCollection

from foldertrack.testing.fixtures_simulator import exchangelib_account


@pytest.fixture
def alice(simulator):
    mb = simulator.add_mailbox("alice@example.com", password="pw")
    return mb, exchangelib_account(simulator, "alice@example.com")


def test_distinguished_folders_exist(alice):
    _, account = alice
    names = {f.name for f in account.msg_folder_root.children}
    assert {"Inbox", "Sent Items", "Drafts", "Deleted Items", "Junk Email"} <= names
    assert account.inbox.name == "Inbox"
    assert account.junk.name == "Junk Email"


@pytest.mark.parametrize("explicit", [True, False], ids=["explicit-version", "probed-version"])
def test_folder_lookup_by_path_under_inbox(simulator, explicit):
    mb = simulator.add_mailbox("bob@example.com", password="secret")
    fid = mb.create_folder("Inbox/Customers/Contoso")
    account = exchangelib_account(simulator, "bob@example.com", "secret", explicit=explicit)
    folder = account.inbox / "Customers" / "Contoso"
    assert folder.id == fid
    assert folder.parent.name == "Customers"
    assert mb.folder_id("inbox/customers/contoso") == fid  # case-insensitive like Exchange
    if not explicit:
        assert account.version.build.major_version == 15
        assert simulator.stats["ConvertId"] >= 1


def test_create_rename_move_delete_folder(alice, simulator):
    mb, account = alice
    created = Folder(parent=account.inbox, name="Projects")
    created.save()
    assert mb.folder_id("Inbox/Projects") == created.id
    with pytest.raises(ErrorFolderExists):
        Folder(parent=account.inbox, name="projects").save()
    old_key = created.changekey
    created.name = "Projects 2024"
    created.save(update_fields=["name"])
    assert mb.folder_id("Inbox/Projects 2024") == created.id
    assert account.root.refresh() is None or True
    refreshed = FolderCollection(account=account, folders=[created]).resolve()
    refreshed = next(iter(refreshed))
    assert refreshed.changekey != old_key
    created.move(account.msg_folder_root)
    assert mb.folder_id("Projects 2024") == created.id  # folder ids survive moves
    created.delete()
    with pytest.raises(Exception):  # noqa: B017 - ErrorFolderNotFound from the simulator API
        mb.folder_id("Projects 2024")


def test_rename_by_user_keeps_id(alice):
    mb, account = alice
    fid = mb.create_folder("Inbox/Customers/Contoso")
    mb.rename_folder("Inbox/Customers/Contoso", "Contoso Ltd")
    account.root.refresh()
    assert (account.inbox / "Customers" / "Contoso Ltd").id == fid


def test_folder_errors(alice):
    _, account = alice
    bogus = Folder(root=account.root, id="not-an-id", changekey="x")
    result = list(FolderCollection(account=account, folders=[bogus]).resolve())
    assert isinstance(result[0], ErrorInvalidIdMalformed)
    mb, _ = alice
    fid = mb.create_folder("Inbox/Gone")
    mb.delete_folder("Inbox/Gone", hard=True)
    gone = Folder(root=account.root, id=fid, changekey="x")
    result = list(FolderCollection(account=account, folders=[gone]).resolve())
    assert isinstance(result[0], ErrorFolderNotFound)


def test_sync_folder_hierarchy(alice):
    mb, account = alice
    changes = list(account.inbox.sync_hierarchy())
    state = account.inbox.folder_sync_state
    mb.create_folder("Inbox/A")
    mb.create_folder("Inbox/A/B")
    changes = list(account.inbox.sync_hierarchy(sync_state=state))
    assert sorted(f.name for kind, f in changes if kind == "create") == ["A", "B"]
    state = account.inbox.folder_sync_state
    mb.rename_folder("Inbox/A/B", "C")
    changes = list(account.inbox.sync_hierarchy(sync_state=state))
    assert [(kind, f.name) for kind, f in changes] == [("update", "C")]
