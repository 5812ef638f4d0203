"""Item moves cost no folder-tree read; events that can change the tree still cause one."""

from __future__ import annotations

from exchangelib.properties import CreatedEvent, FolderId, ItemId, ModifiedEvent, MovedEvent, ParentFolderId

from foldertrack.simulator import MailSpec
from foldertrack.testing.harness import Harness, options_for_tests
from foldertrack.watch.stream_callbacks import tree_events

ALICE = "alice@example.com"
WATCHED = frozenset({"dest", "src"})


def _moved_item() -> MovedEvent:
    return MovedEvent(
        item_id=ItemId(id="new"),
        parent_folder_id=ParentFolderId(id="dest"),
        old_item_id=ItemId(id="old"),
        old_parent_folder_id=ParentFolderId(id="inbox"),
    )


def _folder_modified(folder: str, parent: str = "root") -> ModifiedEvent:
    return ModifiedEvent(folder_id=FolderId(id=folder), parent_folder_id=ParentFolderId(id=parent))


def test_item_move_explains_the_folder_modified_event() -> None:
    assert tree_events([_moved_item(), _folder_modified("dest")], WATCHED) == (False, False)


def test_lone_folder_modified_event_may_be_a_rename() -> None:
    assert tree_events([_folder_modified("dest")], WATCHED) == (False, True)
    assert tree_events([_moved_item(), _folder_modified("src")], WATCHED) == (False, True)


def test_folder_created_under_a_watched_folder_is_structural() -> None:
    created = CreatedEvent(folder_id=FolderId(id="child"), parent_folder_id=ParentFolderId(id="dest"))
    assert tree_events([created], WATCHED) == (True, False)


def test_folder_events_elsewhere_are_ignored() -> None:
    assert tree_events([_folder_modified("other", parent="inbox")], WATCHED) == (False, False)


def test_moves_read_no_folder_tree_and_a_rename_still_shows(tmp_path) -> None:
    with Harness(tmp_path, **options_for_tests()) as h:
        mb = h.add_mailbox(ALICE)
        mb.create_folder("Inbox/Customers/Contoso")
        h.write_rules(
            f"mailboxes:\n  - addresses: [{ALICE}]\n    folders:\n      Inbox/Customers/Contoso:\n        record: null\n"
        )
        h.start_watcher()
        h.settle()
        before = h.sim.stats.snapshot()["requests"].get("SyncFolderHierarchy", 0)
        for n in range(5):
            spec = MailSpec(subject=f"moved {n}", sender="dana@contoso.com", to=[ALICE], body="b")
            mb.move_item(h.sim.deliver(ALICE, spec, folder="Inbox"), "Inbox/Customers/Contoso")
            h.wait_tracked(f"moved {n}")
        h.settle()
        assert h.sim.stats.snapshot()["requests"].get("SyncFolderHierarchy", 0) == before
        mb.rename_folder("Inbox/Customers/Contoso", "Contoso Ltd")
        h.wait_for(
            lambda: h.sim.stats.snapshot()["requests"].get("SyncFolderHierarchy", 0) > before,
            what="a folder-tree read after the rename",
        )
