"""Rules → folders for one mailbox: read the folder tree, resolve the rules to tracked folders, record the
plan and the drift, and ask for a (re)subscription or backfill syncs when that changed."""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from foldertrack.rules.paths import same_path
from foldertrack.state import watch_store as store
from foldertrack.state.records import RecordDirectory
from foldertrack.targets import anchors, resolve_targets
from foldertrack.watch.events import FolderChanged, SubscribeMailbox
from foldertrack.watch.mailbox import MailboxState

if TYPE_CHECKING:
    from sqlalchemy import Engine

    from foldertrack.exchange.connection import ExchangeConnector
    from foldertrack.sync import SyncContext
    from foldertrack.watch.dispatcher import Dispatcher
    from foldertrack.watch.options import WatchOptions

log = logging.getLogger("foldertrack.watch")

#: hierarchy reasons that re-resolve even when the folder tree did not change (records may have changed)
FULL_RESOLVE_REASONS = frozenset(
    {"start", "rules-reloaded", "safety-net", "folder-gone", "mailbox-removed", "records-synced"}
)


class ResolvingMixin:
    """The watcher's folder resolution (part of :class:`~foldertrack.watch.daemon.Watcher`)."""

    options: WatchOptions
    engine: Engine
    connector: ExchangeConnector
    directory: RecordDirectory
    dispatcher: Dispatcher
    _lock: threading.RLock
    _mailboxes: dict[str, MailboxState]
    sync_context: SyncContext

    def _resolve(self, mailbox: str, reasons: list[str]) -> None:
        """Re-read the folder tree, resolve the mailbox's rules to folders, (re)subscribe if that changed."""
        with self._lock:
            state = self._mailboxes.get(mailbox)
        if state is None:
            return
        self._start_attempted(mailbox)  # type: ignore[attr-defined]  # TimerMixin: its start deadline runs
        if not state.rules:
            with store.writing(self.engine) as conn:
                store.replace_rule_issues(conn, mailbox, [])
            self._retire_mailbox(state)
            return
        state.tree = self.sync_context.mail_source().load_tree(mailbox, state.tree)  # EWS or Graph
        state.tree_read_at = time.monotonic()  # folder ModifiedEvents coalesce their reads around this
        resolved_for = (state.tree.revision, state.rules)
        if (
            state.resolved
            and state.resolved_for is not None
            and state.resolved_for[0] == resolved_for[0]
            and state.resolved_for[1] is state.rules
            and not FULL_RESOLVE_REASONS.intersection(reasons)
        ):
            return  # same folders, same rules (a folder's item count changed): nothing to re-resolve
        with self.engine.connect() as conn:
            pins = store.pins(conn, mailbox)
        finder = self._find_record
        targets, issues = resolve_targets(mailbox, state.rules, state.tree, finder, pins)
        deleted = {pins[i.path] for i in issues if i.kind == "folder_deleted" and i.path in pins}
        plans = [
            store.FolderPlan(
                mailbox,
                t.folder_id,
                t.configured_path,
                t.path,
                t.rule_source,
                None if t.via == "rule" else t.configured_path,
                "stale_path" if not same_path(t.path, t.configured_path) and t.via == "rule" else "active",
            )
            for t in targets
        ]
        with store.writing(self.engine) as conn:
            self._fence(conn, mailbox)  # fleet: only the lease holder plans the folders
            new = store.apply_plan(conn, mailbox, plans, deleted=deleted)
            store.replace_rule_issues(conn, mailbox, issues)  # what `status` shows as drift
        watch_ids = {t.folder_id for t in targets}
        for rule in state.rules:
            if rule.is_pattern:
                parent = state.tree.find(rule.segments)
                if parent:
                    watch_ids.add(parent)
        watch_ids |= anchors(state.rules, state.tree, issues)  # a missing or deleted folder reappearing
        known = set(state.issues)  # log a rule problem when it appears and when it goes, not on every resolve
        for issue in issues:
            if issue not in known:
                log.warning("%s: %s: %s", mailbox, issue.rule_source, issue.message)
        for issue in known - set(issues):
            log.info("%s: %s: resolved: %s", mailbox, issue.rule_source, issue.message)
        with self._lock:
            previous = set(state.targets)
            state.targets = {t.folder_id: t for t in targets}
            state.issues = issues
            state.watch_ids = frozenset(watch_ids)
            resubscribe = state.watch_ids != state.subscribed_ids or state.subscription_id is None
            first = not state.resolved
            state.resolved = True
            state.resolved_for = resolved_for
        for folder_id in state.targets:
            if folder_id in new or folder_id not in previous:
                self.dispatcher.put(
                    FolderChanged(mailbox, folder_id, "backfill" if folder_id in new else "resolved")
                )
        if resubscribe and state.watch_ids:
            self.dispatcher.put(SubscribeMailbox(mailbox, "folders-changed" if not first else "start"))
        elif first:
            self._mark_ready_if_done()
        if first:
            log.info(
                "%s: tracking %d folder(s)%s",
                mailbox,
                len(targets),
                f", {len(issues)} rule problem(s)" if issues else "",
            )

    def _find_record(self, record_type, text, by):
        return self.directory.find(record_type, text, by)

    def _retire_mailbox(self, state: MailboxState) -> None:
        self._drop_subscription(state)
        if getattr(self, "push", None) is not None:  # Graph change notifications (watch/graph_push.py)
            self.push.drop(state.mailbox)
        with store.writing(self.engine) as conn:
            store.apply_plan(conn, state.mailbox, [])
        with self._lock:
            self._mailboxes.pop(state.mailbox, None)
            # the timer may still hold this state from before the pop: whatever it writes says "stopped"
            state.mode, state.failing = "stopped", False
        store.set_health(self.engine, state.mailbox, mode="stopped", instance=self.options.instance)
        log.info("%s: no longer watched", state.mailbox)
        self._mailbox_retired(state.mailbox)  # fleet: its lease may go now
