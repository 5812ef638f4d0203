"""The service main loop of ``foldertrack run``: starts the watcher and keeps systemd informed.

The main loop is the only place that talks to the service manager: ``READY=1`` once the watcher is up,
``STATUS=`` lines, ``WATCHDOG=1`` pings only while every thread is alive and the sync work is moving (so a
wedged loop, a dead thread or stuck workers all stop the pings), ``RELOADING=1`` … ``READY=1`` around a
SIGHUP reload and ``STOPPING=1`` on the way out. A start that keeps moving (thousands of mailboxes
subscribing one after another) may outlast ``TimeoutStartSec``: while its work keeps finishing, the loop asks
for more time (``EXTEND_TIMEOUT_USEC``); a start that stops moving gets none, and systemd restarts it.

It also watches each mailbox on its own: work that shows no progress for ``stuck_timeout`` (a server that
trickles an answer, say, while other mailboxes move on) marks the mailbox stuck in ``status``, and the
request it waits for is cut so the work is retried; still stuck as long again, the pings stop, because
only a restart can free that worker.

A turn is O(1) while nothing changes, whatever the number of mailboxes: the backlog is the dispatcher's
running count, stuck work is looked up by mailbox, and the status line's per-mailbox part is recomputed only
when the watcher reports a change (``watcher.changes.version``), at most every ``STATUS_REFRESH`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import Counter

from foldertrack.errors import ConfigError, RuleError
from foldertrack.exchange.transport import abort_requests
from foldertrack.ops.notify import Notifier
from foldertrack.watch.daemon import Watcher

log = logging.getLogger("foldertrack.run")

EXIT_WEDGED = 70  # a worker died: let systemd restart us
TICK = 0.5  # seconds between two turns of the main loop (less when the watchdog wants pings sooner)
STATUS_REFRESH = 1.0  # the status line's mailbox and folder counts are at most this old while they change
START_EXTENSION = 90.0  # seconds of start-up time asked for while the start is moving, a third of it apart


class Supervisor:
    """Starts a watcher, keeps the service manager informed, stops it; ``run()`` returns the exit code.

    Thread-safe requests: ``request_stop()`` and ``request_reload()`` (the signal handlers call them).
    """

    def __init__(
        self,
        watcher: Watcher,
        notifier: Notifier,
        *,
        stall_timeout: float = 900.0,
        stuck_timeout: float | None = None,
        start_extension: float = START_EXTENSION,
    ) -> None:
        self.watcher = watcher
        self.start_extension = start_extension
        self._start_runs = -1  # the dispatcher's finished work when last looked at while starting
        self._start_moved = 0.0  # monotonic time it last changed
        self._next_extension = 0.0
        self.notifier = notifier
        self.stall_timeout = stall_timeout
        options = getattr(watcher, "options", None)
        #: one mailbox's work without progress this long is stuck (``watch.stuck_timeout``; 0: off)
        self.stuck_timeout = (
            stuck_timeout if stuck_timeout is not None else getattr(options, "stuck_timeout", 600.0)
        )
        self._stuck: dict[tuple[int, float], float] = {}  # (worker thread, work started) → first seen stuck
        self._marked: dict[str, float] = {}  # mailbox → when it was marked stuck
        self.ready = False
        #: why the service is not healthy right now (None: healthy), for logs, STATUS and health checks
        self.problem: str | None = None
        self._stop = threading.Event()
        self._reload = threading.Event()
        self._waiting_since: float | None = None
        self._next_ping = 0.0
        self._status = ""
        self._reload_note = ""
        self._counts: tuple[str, str] | None = None  # (mailboxes and folders, modes) of the status line
        self._counts_version: object = None
        self._counts_at = 0.0
        interval = notifier.watchdog_interval
        self.tick = min(TICK, interval / 2) if interval else TICK

    def request_stop(self) -> None:
        self._stop.set()

    def request_reload(self) -> None:
        self._reload.set()

    def run(self) -> int:
        self.notifier.status("starting: loading rules, resolving folders, subscribing")
        try:
            self.watcher.start()
        except BaseException as exc:
            self.watcher.stop()
            if isinstance(exc, RuleError):  # rules that do not load at start: restarting cannot help
                raise ConfigError(str(exc)) from None
            raise
        exit_code = 0
        try:
            while not self._stop.is_set():
                dead = self.watcher.check()
                if dead:
                    log.critical("unhealthy: %s; exiting so the service manager restarts us", dead)
                    self.problem, exit_code = dead, EXIT_WEDGED
                    break
                self._turn(time.monotonic())
                self._stop.wait(self.tick)
        finally:
            self.notifier.stopping(f"stopping: {self.problem}" if exit_code else "stopping")
            self.watcher.stop()
            self.notifier.close()
        return exit_code

    # -- one turn of the main loop -------------------------------------------------------------------------

    def _turn(self, now: float) -> None:
        if self._reload.is_set():
            self._reload.clear()
            self._reload_rules()
        if not self.ready and not self.watcher.ready.is_set():
            self._extend_start_while_moving(now)
        if not self.ready and self.watcher.ready.is_set():
            self.ready = True
            self._counts = None  # READY's status is fresh
            self._status = self.status_line()
            self.notifier.ready(self._status)
            log.info("ready: %s", self._status)
        self._check_progress(now)
        status = self.status_line()
        if status != self._status:
            self._status = status
            self.notifier.status(status)
        if self.problem is None and self.notifier.watchdog_interval and now >= self._next_ping:
            self.notifier.watchdog()
            self._next_ping = now + self.notifier.watchdog_interval

    def _extend_start_while_moving(self, now: float) -> None:
        """Ask systemd for ``start_extension`` more seconds of start-up, a third of it apart, as long as the
        sync workers finished some work in the last third (resolves, subscriptions, catch-ups: a 10,000-mailbox
        start takes minutes). Mailboxes that fail do not keep a start alive for ever: after
        ``watch.start_timeout`` they count as started, in ``error``, and READY follows."""
        stats = getattr(getattr(self.watcher, "dispatcher", None), "stats", None)
        runs = getattr(stats, "runs", 0)
        if runs != self._start_runs:
            self._start_runs, self._start_moved = runs, now
        third = self.start_extension / 3
        if now - self._start_moved <= third and now >= self._next_extension:
            self.notifier.extend_timeout(self.start_extension)
            self._next_extension = now + third

    def _reload_rules(self) -> None:
        log.info("SIGHUP received: reloading rules")
        if not self.ready:  # still starting: READY=1 has not been sent, so no RELOADING=1 either
            self._reload_safely()
            return
        self.notifier.reloading("reloading rules")
        ok = self._reload_safely()
        self._reload_note = "" if ok else "last reload failed, previous rules kept (see log)"
        self._status = self.status_line()
        self.notifier.ready(self._status)

    def _reload_safely(self) -> bool:
        try:
            return self.watcher.reload_rules()
        except Exception:  # a reload must never take the running watcher down (e.g. unreadable directory)
            log.exception("rules reload failed")
            return False

    def _check_progress(self, now: float) -> None:
        """Stuck sync workers: work queued or running and none finished for ``stall_timeout`` seconds."""
        dispatcher = self.watcher.dispatcher
        backlog = _backlog(dispatcher)
        if not backlog:
            self._waiting_since = None
        elif self._waiting_since is None:
            self._waiting_since = now
        problem = None
        if backlog and self.stall_timeout and self._waiting_since is not None:
            quiet = now - max(dispatcher.last_progress, self._waiting_since)
            if quiet > self.stall_timeout:
                problem = (
                    f"stalled: sync workers finished nothing for {quiet:.0f}s "
                    f"with {backlog} piece(s) of work queued or running"
                )
        stuck_problem = self._check_stuck(now)  # every turn: it also marks and frees stuck mailboxes
        problem = problem or stuck_problem
        if problem and not self.problem:
            log.error("%s; withholding watchdog pings so the service manager restarts us", problem)
        elif self.problem and not problem:
            log.warning("sync workers are making progress again")
        self.problem = problem

    def _check_stuck(self, now: float) -> str | None:
        """Per mailbox: mark stuck work, cut its request; a problem when cutting did not free it."""
        dispatcher = getattr(self.watcher, "dispatcher", None)
        if not self.stuck_timeout or dispatcher is None or not hasattr(dispatcher, "stuck"):
            return None
        stuck = {(w.thread_id, w.started): w for w in dispatcher.stuck(self.stuck_timeout, now)}
        if not stuck and not self._stuck and not self._marked:
            return None  # the usual turn: nothing to look up
        states = self._states({w.key[1] for w in stuck.values()} | set(self._marked))
        problem = None
        for ident, work in stuck.items():
            kind, mailbox = work.key[0], work.key[1]
            quiet = now - work.last_progress
            if ident not in self._stuck:
                self._stuck[ident] = now
                cut = abort_requests(work.thread_id)
                text = f"stuck: {kind} work made no progress for {quiet:.0f}s; " + (
                    "its Exchange request was cut, it is retried" if cut else "it waits for no request"
                )
                log.error("%s: %s", mailbox, text)
                if mailbox in states:
                    states[mailbox].stuck = text
                    self._marked[mailbox] = now
            elif now - self._stuck[ident] > self.stuck_timeout and problem is None:
                problem = (
                    f"{mailbox}: {kind} work stuck for {quiet:.0f}s, cutting its request did not free it"
                )
        for ident in [i for i in self._stuck if i not in stuck]:
            del self._stuck[ident]
        for mailbox in [m for m in self._marked if m not in states]:  # gone meanwhile
            del self._marked[mailbox]
        stuck_mailboxes = {w.key[1] for w in stuck.values()}
        for mailbox, state in states.items():
            if not getattr(state, "stuck", None) or mailbox in stuck_mailboxes:
                continue
            marked = self._marked.get(mailbox, 0.0)
            if dispatcher.succeeded_since(mailbox, marked):  # stuck until its work succeeds again
                state.stuck = None
                self._marked.pop(mailbox, None)
                log.warning("%s: work is moving again", mailbox)
        return problem

    def _states(self, mailboxes: set[str]) -> dict:
        """The states of ``mailboxes`` the watcher has (by name: no walk over every mailbox)."""
        lookup = getattr(self.watcher, "mailbox_state", None)
        if lookup is None:  # a watcher without lookup by name (test doubles)
            return {s.mailbox: s for s in self.watcher.mailbox_states() if s.mailbox in mailboxes}
        found = {m: lookup(m) for m in mailboxes}
        return {m: s for m, s in found.items() if s is not None}

    def _mailbox_counts(self) -> tuple[str, str]:
        """The status line's mailbox, folder and mode counts: a walk over every mailbox, so only when the
        watcher reports a change since the last walk (and not more often than ``STATUS_REFRESH``; the first
        status after READY is always fresh)."""
        changes = getattr(self.watcher, "changes", None)
        version = changes.version if changes is not None else object()
        now = time.monotonic()
        if self._counts is not None and (
            version == self._counts_version or now - self._counts_at < STATUS_REFRESH
        ):
            return self._counts
        states = self.watcher.mailbox_states()
        modes = Counter(s.health()["mode"] for s in states)
        mode_text = f"{modes.pop('streaming', 0)} streaming, {modes.pop('polling', 0)} polling"
        mode_text += "".join(f", {n} {mode}" for mode, n in sorted(modes.items()))
        folders = sum(len(s.targets) for s in states)
        counts = f"watching {_count(len(states), 'mailbox', 'mailboxes')}, {_count(folders, 'folder')}"
        self._counts, self._counts_version, self._counts_at = (counts, mode_text), version, now
        return self._counts

    def status_line(self) -> str:
        """One line for ``systemctl status``: mailboxes, folders, modes, what this run tracked, trouble."""
        counts, mode_text = self._mailbox_counts()
        totals = self.watcher.totals
        parts = [counts, mode_text, f"{totals.tracked:,} tracked since start"]
        if totals.dead_lettered:
            parts.append(f"{totals.dead_lettered:,} dead-lettered")
        backlog = _backlog(self.watcher.dispatcher)
        if backlog:
            parts.append(f"backlog {backlog:,}")
        parts += [note for note in (self._reload_note, self.problem) if note]
        line = "; ".join(parts)
        return line if self.ready else f"starting: {line}"


def _backlog(dispatcher) -> int:
    """Queued or running work in all: the dispatcher's running count (O(1))."""
    total = getattr(dispatcher, "backlog_total", None)
    return total() if total is not None else sum(dispatcher.backlog().values())


def _count(n: int, singular: str, plural: str | None = None) -> str:
    return f"{n:,} {singular if n == 1 else plural or singular + 's'}"
