"""The timer's periodic work is O(due + changed), not O(all mailboxes) (DESIGN "Scale"): a tick after one
mailbox changed writes one health row, a tick after nothing changed writes none and looks at no mailbox,
polls and safety nets come from a due-time heap. The watcher is real but not started: the test drives its
timer with ``_tick(now)`` and reads the dispatcher's queue."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from sqlalchemy import event, select, text

from foldertrack.sinks.sql import SqlActivitySink
from foldertrack.state.database import open_database
from foldertrack.state.schema import subscription_health
from foldertrack.watch.daemon import Watcher, WatchOptions

MAILBOXES = 200


@pytest.fixture
def watcher(database_url, tmp_path) -> Iterator[Watcher]:
    engine = open_database(database_url)
    options = WatchOptions(rules_dir=tmp_path, poll_interval=60.0, safety_sync_interval=900.0)
    w = Watcher(options, engine, None, SqlActivitySink(engine))  # type: ignore[arg-type]  # no Exchange
    try:
        yield w
    finally:
        engine.dispose()


@pytest.fixture
def t0() -> float:
    """The tests' "now": the watcher's own clock (the start deadline counts from ``time.monotonic()``), not a
    constant, which a machine up for less than that would be behind."""
    return time.monotonic()


def _streaming(w: Watcher, count: int, *, safety_drawn: bool = False) -> None:
    """``count`` streaming mailboxes; their safety nets far away (a first one can come any time in the first
    round: tests about other periodic work must not meet one) unless ``safety_drawn``."""
    with w._lock:
        for n in range(count):
            state = w._state_for(f"user{n}@example.com")
            state.resolved, state.mode, state.subscription_id = True, "streaming", f"sub{n}"
            if not safety_drawn:
                state.next_safety = float("inf")


def _health_writes(w: Watcher) -> list[int]:
    """Rows per statement on ``subscription_health`` from now on."""
    writes: list[int] = []

    def count(conn, cursor, statement, parameters, context, executemany):
        if "subscription_health" in statement:
            writes.append(len(parameters) if executemany else 1)

    event.listen(w.engine, "before_cursor_execute", count)
    return writes


def _queued(w: Watcher) -> list[tuple[str, ...]]:
    return sorted(w.dispatcher._due)


def test_a_tick_writes_only_the_health_rows_that_changed(watcher, t0):
    _streaming(watcher, MAILBOXES)
    watcher._tick(t0)
    with watcher.engine.connect() as conn:
        rows = conn.execute(select(subscription_health.c.mailbox, subscription_health.c.mode)).all()
    assert len(rows) == MAILBOXES and {mode for _, mode in rows} == {"streaming"}

    writes = _health_writes(watcher)
    watcher._tick(t0 + 0.2)
    assert writes == []  # nothing changed: no statement at all

    watcher.mailbox_state("user7@example.com").last_error = "subscription lost: ErrorExpiredSubscription"
    watcher._tick(t0 + 0.4)
    assert sum(writes) == 1 and len(writes) == 1  # one row, one statement
    with watcher.engine.connect() as conn:
        error = conn.execute(
            select(subscription_health.c.last_error).where(
                subscription_health.c.mailbox == "user7@example.com"
            )
        ).scalar_one()
    assert error == "subscription lost: ErrorExpiredSubscription"


def test_assigning_an_unchanged_value_is_no_change(watcher, t0):
    _streaming(watcher, 3)
    watcher._tick(t0)
    version = watcher.changes.version
    state = watcher.mailbox_state("user1@example.com")
    state.failing, state.resolved, state.mode = False, True, "streaming"  # what every sync and resolve does
    assert watcher.changes.version == version and watcher.changes.drain() == set()


def test_many_changed_mailboxes_are_written_in_one_statement(watcher, t0):
    _streaming(watcher, MAILBOXES)
    writes = _health_writes(watcher)
    watcher._tick(t0)
    assert len(writes) == 1 and writes[0] == MAILBOXES


def test_a_backlog_change_is_written_for_that_mailbox_only(watcher, t0):
    from foldertrack.watch.events import FolderChanged

    _streaming(watcher, MAILBOXES)
    watcher._tick(t0)
    writes = _health_writes(watcher)
    watcher.dispatcher.put(FolderChanged("user3@example.com", "f1", "event"))
    watcher._tick(t0 + 0.2)
    assert writes == [1]
    with watcher.engine.connect() as conn:
        backlog = conn.execute(
            select(subscription_health.c.backlog).where(subscription_health.c.mailbox == "user3@example.com")
        ).scalar_one()
    assert backlog == 1


def test_a_tick_with_nothing_due_looks_at_no_mailbox(watcher, monkeypatch, t0):
    _streaming(watcher, MAILBOXES)
    watcher._tick(t0)  # new states: each looked at once (and put in the heap of due times)
    looked: list[str] = []
    original = type(watcher)._look

    def look(self, state, now):
        looked.append(state.mailbox)
        original(self, state, now)

    monkeypatch.setattr(type(watcher), "_look", look)
    for n in range(1, 20):
        watcher._tick(t0 + n * 0.2)
    assert looked == []
    assert len(watcher._look_at) == MAILBOXES  # each waits in the heap for its safety net


def test_the_safety_net_runs_for_due_mailboxes_only(watcher, t0):
    _streaming(watcher, 50, safety_drawn=True)
    with watcher._lock:
        for n in range(50):
            state = watcher.mailbox_state(f"user{n}@example.com")
            state.targets = {"f1": object()}  # type: ignore[dict-item]
    watcher._tick(t0)
    soonest = min(s.next_safety for s in watcher.mailbox_states())
    due = [s.mailbox for s in watcher.mailbox_states() if s.next_safety == soonest]
    watcher._tick(soonest)
    assert _queued(watcher) == sorted([("hierarchy", m) for m in due] + [("sync", m, "f1") for m in due])
    assert all(r == ["safety-net"] for r in watcher.dispatcher._reasons.values())


def test_a_mailbox_that_starts_polling_is_polled_at_its_poll_time(watcher, t0):
    _streaming(watcher, MAILBOXES)
    watcher._tick(t0)
    state = watcher.mailbox_state("user5@example.com")
    with watcher._lock:
        state.targets = {"f1": object(), "f2": object()}  # type: ignore[dict-item]
        state.mode, state.subscription_id, state.next_poll = "polling", None, t0 + 10
    watcher._tick(t0 + 0.2)
    assert _queued(watcher) == []  # not due yet
    watcher._tick(t0 + 10)
    assert _queued(watcher) == [
        ("subscribe", "user5@example.com"),
        ("sync", "user5@example.com", "f1"),
        ("sync", "user5@example.com", "f2"),
    ]
    assert state.next_poll == t0 + 10 + watcher.options.poll_interval
    assert watcher._look_at["user5@example.com"][0] == state.next_poll  # next poll from the heap, no scan


def test_the_heap_of_due_times_does_not_grow_with_changes(watcher, t0):
    _streaming(watcher, MAILBOXES)
    watcher._tick(t0)
    state = watcher.mailbox_state("user9@example.com")
    for n in range(1, 2000):  # a busy mailbox: an error, then fine again, tick after tick
        state.last_error = None if n % 2 else f"error {n}"
        watcher._tick(t0 + n * 0.2)
    assert len(watcher._looks) <= 4 * MAILBOXES  # stale entries are dropped, not kept per change
    assert len(watcher._look_at) == MAILBOXES


def test_the_start_deadline_looks_only_at_mailboxes_still_starting(watcher, t0):
    _streaming(watcher, MAILBOXES)
    with watcher._lock:
        late = watcher._state_for("late@example.com")  # resolved, never subscribed
    late.resolved, late.watch_ids = True, frozenset({"f1"})
    watcher._start_attempted("late@example.com")  # its resolve ran (and it was never subscribed)
    watcher._tick(t0)
    assert set(watcher._starting) == {"late@example.com"}  # the started ones are forgotten
    since = watcher._starting["late@example.com"][1]
    watcher._next_start_check = 0.0
    watcher._tick(since + watcher.options.start_timeout + 1)
    assert late.failing and late.start_failed and "not started within" in (late.last_error or "")
    assert watcher._starting == {}


def test_a_mailbox_still_queued_is_starting_not_failing(watcher, t0):
    """At 10,000 mailboxes a start takes minutes: a mailbox whose start work has not run yet, waiting for a
    worker, is not "not started within 1m: no answer from Exchange". Its deadline counts from its first
    resolve; then, unanswered, it goes to ``error`` like any other."""
    with watcher._lock:
        queued = watcher._state_for("queued@example.com")
    watcher._tick(t0)
    watcher._next_start_check = 0.0
    watcher._tick(t0 + 10 * watcher.options.start_timeout)
    assert not queued.failing and queued.last_error is None
    assert set(watcher._starting) == {"queued@example.com"}  # still starting: readiness waits for it

    watcher._start_attempted("queued@example.com")  # a worker takes its resolve, which gets no answer
    attempted = watcher._starting["queued@example.com"][1]
    watcher._next_start_check = 0.0
    watcher._tick(attempted + watcher.options.start_timeout / 2)
    assert not queued.failing
    watcher._next_start_check = 0.0
    watcher._tick(attempted + watcher.options.start_timeout + 1)
    assert queued.failing and queued.start_failed
    assert (
        queued.last_error == f"not started within {watcher.options.start_timeout:g}s: no answer from Exchange"
    )


def test_rules_by_mailbox_come_from_an_index_equal_to_for_mailbox(watcher, tmp_path):
    """Each lease acquired asks for its mailbox's rules on the keeper thread: an index, not a walk over every
    rule (at 10,000 mailboxes x 5 folders the walks took longer than the lease TTL)."""
    from foldertrack.rules.loader import load_rules

    rules_dir = tmp_path / "rules"
    rules_dir.mkdir()
    lines = ["mailboxes:", "  - addresses:", "      - A@Example.com", "      - b@example.com", "    folders:"]
    lines += ["      Inbox/Customers/One: account:acc-1", "      Inbox/Customers/Two: account:acc-2"]
    lines += ["  - addresses: [a@example.com]", "    folders:", "      Inbox/Other: account:acc-3"]
    (rules_dir / "rules.yaml").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rules = load_rules(rules_dir)
    for mailbox in ("a@example.com", " A@EXAMPLE.com ", "b@example.com", "nobody@example.com"):
        assert watcher._rules_for(rules, mailbox) == tuple(rules.for_mailbox(mailbox))
    assert len(watcher._rules_for(rules, "a@example.com")) == 3
    again = load_rules(rules_dir)  # a reload: a new index
    assert watcher._rules_for(again, "b@example.com") == tuple(again.for_mailbox("b@example.com"))


def test_a_safety_net_round_grows_with_the_folders_instead_of_its_cpu(database_url, tmp_path):
    """``safety_sync_rate`` bounds the safety net's syncs per second: 200 mailboxes with 5 folders (1,200 syncs
    a round, with one tree read each) at 1 a second take 1,200 s a round, not the 900 s interval."""
    engine = open_database(database_url)
    options = WatchOptions(rules_dir=tmp_path, safety_sync_interval=900.0, safety_sync_rate=1.0)
    w = Watcher(options, engine, None, SqlActivitySink(engine))  # type: ignore[arg-type]  # no Exchange
    try:
        _streaming(w, 2)
        assert w.safety_round() == 900.0  # few folders: the interval itself
        w._safety_units = None  # counted again now, not in 10 s
        _streaming(w, MAILBOXES)
        with w._lock:
            for state in w._mailboxes.values():
                state.targets = {f"f{n}": object() for n in range(5)}  # type: ignore[misc]  # only counted
        w._safety_units = None
        assert w.safety_round() == MAILBOXES * 6 / 1.0
        delays = [w._safety_delay() for _ in range(200)]
        assert min(delays) >= 0.5 * 1200 and max(delays) <= 1.5 * 1200
        # a mailbox's first safety net comes within the first round, spread over it: the safety net runs at
        # its steady rate from the start (no idle half round, then a burst)
        firsts = [w._safety_delay(first=True) for _ in range(2000)]
        assert 0 <= min(firsts) < 0.1 * 1200 and 0.9 * 1200 < max(firsts) <= 1200
    finally:
        engine.dispose()


def test_a_failed_health_write_is_counted_warned_once_and_retried(database_url, tmp_path, t0, caplog):
    """Health rows are what ``status`` shows: a write that fails (here the table is gone) is counted in the
    errors metric (operation ``health``) and warned about once per streak, and the rows are written once the
    database takes them again."""
    from foldertrack.watch.observer import WatchObserver

    errors: list[tuple[str, str]] = []

    class Recording(WatchObserver):
        def error(self, mailbox: str, operation: str, code: str) -> None:
            errors.append((operation, code))

    engine = open_database(database_url)
    options = WatchOptions(rules_dir=tmp_path, poll_interval=60.0, safety_sync_interval=900.0)
    w = Watcher(options, engine, None, SqlActivitySink(engine), observer=Recording())  # type: ignore[arg-type]
    try:
        _streaming(w, 3)
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE subscription_health RENAME TO subscription_health_away"))
        with caplog.at_level("INFO", logger="foldertrack.watch"):
            w._tick(t0)
            w.mailbox_state("user1@example.com").last_error = "changed meanwhile"
            w._tick(t0 + 0.2)
        assert [op for op, _ in errors] == ["health", "health"] and all(code for _, code in errors)
        assert sum("health rows not written" in r.getMessage() for r in caplog.records) == 1
        with engine.begin() as conn:
            conn.execute(text("ALTER TABLE subscription_health_away RENAME TO subscription_health"))
        with caplog.at_level("INFO", logger="foldertrack.watch"):
            w._tick(t0 + 0.4)
        with engine.connect() as conn:
            rows = dict(
                conn.execute(select(subscription_health.c.mailbox, subscription_health.c.last_error)).all()
            )
        assert len(rows) == 3 and rows["user1@example.com"] == "changed meanwhile"
        assert "health rows written again" in caplog.text
    finally:
        engine.dispose()
