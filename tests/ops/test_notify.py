"""The service protocol: ``foldertrack run`` under a real ``$NOTIFY_SOCKET``, as systemd runs it.

A datagram socket bound in the test stands in for systemd; ``foldertrack run`` runs as a subprocess
against the simulator with the environment a ``Type=notify`` unit gives it (``NOTIFY_SOCKET``,
``WATCHDOG_USEC``, ``STATE_DIRECTORY``, ``CREDENTIALS_DIRECTORY``).
"""

from __future__ import annotations

import contextlib
import ctypes.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from foldertrack.exchange.connection import ExchangeConnector, ExchangeSettings
from foldertrack.ops.notify import Notifier
from foldertrack.ops.supervisor import EXIT_WEDGED, Supervisor
from foldertrack.simulator import MailSpec
from foldertrack.sinks.sql import SqlActivitySink
from foldertrack.state.database import open_database, upgrade_database
from foldertrack.testing.harness import options_for_tests, wait_until
from foldertrack.watch.daemon import Watcher, WatchOptions

SERVICE = "svc-foldertrack@example.com"
PASSWORD = "svc-pw-notify"
ALICE = "alice@example.com"
FOLDER = "Inbox/Customers"
RULES = f"mailboxes:\n  - address: {ALICE}\n    folders:\n      {FOLDER}:\n        record: null\n"


# --------------------------------------------------------------------------- a stand-in for systemd


@dataclass
class Message:
    at: float  # time.monotonic() when received
    fields: dict[str, str]


@dataclass
class NotifyListener:
    """Binds a datagram socket and collects every message sent to it, on a thread of its own."""

    address: str  # as written in $NOTIFY_SOCKET ("/path" or "@abstract")
    messages: list[Message] = field(default_factory=list)

    def __post_init__(self) -> None:
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        self._sock.bind("\0" + self.address[1:] if self.address.startswith("@") else self.address)
        self._sock.settimeout(0.05)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._read, name="notify-listener", daemon=True)
        self._thread.start()

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                data = self._sock.recv(4096)
            except TimeoutError:
                continue
            fields = dict(line.split("=", 1) for line in data.decode().splitlines() if "=" in line)
            with self._lock:
                self.messages.append(Message(time.monotonic(), fields))

    def close(self) -> None:
        self._stop.set()
        self._thread.join(2)
        self._sock.close()

    def snapshot(self) -> list[Message]:
        with self._lock:
            return list(self.messages)

    def with_key(self, key: str, value: str | None = None) -> list[Message]:
        return [m for m in self.snapshot() if key in m.fields and value in (None, m.fields[key])]

    def wait_for(self, key: str, value: str | None = None, *, after: float = 0.0, timeout: float = 20.0):
        """The first message with ``key`` (= ``value``) received after monotonic time ``after``."""

        def found():
            return next((m for m in self.with_key(key, value) if m.at > after), None)

        return wait_until(found, timeout, f"{key}={value or '*'} on NOTIFY_SOCKET")

    def wait_status(self, text: str, *, after: float = 0.0, timeout: float = 20.0) -> Message:
        """The first STATUS containing ``text`` received after monotonic time ``after``."""
        return wait_until(
            lambda: next(
                (m for m in self.with_key("STATUS") if m.at > after and text in m.fields["STATUS"]), None
            ),
            timeout,
            f"a STATUS containing {text!r}",
        )

    def pings(self) -> list[float]:
        return [m.at for m in self.with_key("WATCHDOG", "1")]

    def wait_quiet(self, seconds: float, timeout: float = 20.0) -> float:
        """Wait until no watchdog ping has come for ``seconds``; returns when the last one came."""
        start = time.monotonic()

        def quiet():
            last = max(self.pings(), default=start)
            return last if time.monotonic() - last > seconds else None

        return wait_until(quiet, timeout, f"{seconds}s without a WATCHDOG=1 ping")

    def first_keys(self) -> list[str]:
        """Each message's first key, in order (``READY``, ``WATCHDOG``, ``STATUS``…)."""
        return [next(iter(m.fields)) for m in self.snapshot()]


@pytest.fixture
def listener(tmp_path: Path) -> Iterator[NotifyListener]:
    box = NotifyListener(str(tmp_path / "notify.sock"))
    yield box
    box.close()


# --------------------------------------------------------------------------- a service "installation"


@dataclass
class Install:
    """What the unit provides: a config file, rules next to it, a credential, a state directory."""

    config: Path
    env: dict[str, str]


@pytest.fixture
def sim(simulator):
    simulator.add_service_account(SERVICE, password=PASSWORD, impersonation=True)
    simulator.add_mailbox(ALICE, password="user-pw")
    simulator.mailbox(ALICE).create_folder(FOLDER)
    return simulator


def install(tmp_path: Path, sim, listener: NotifyListener | None, extra_config: str = "") -> Install:
    etc, state, creds = tmp_path / "etc", tmp_path / "state", tmp_path / "credentials"
    for directory in (etc / "rules", state, creds):
        directory.mkdir(parents=True)
    (etc / "rules" / "rules.yaml").write_text(RULES, encoding="utf-8")
    (creds / "exchange-password").write_text(PASSWORD + "\n", encoding="utf-8")
    config = etc / "foldertrack.toml"
    config.write_text(
        f'[exchange]\nendpoint = "{sim.url}"\nauth = "basic"\nusername = "{SERVICE}"\n'
        'version = "Exchange2016"\n\n[watch]\npoll_interval = "1s"\ndebounce = "20ms"\n' + extra_config,
        encoding="utf-8",
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FOLDERTRACK_", "NOTIFY_", "WATCHDOG_"))}
    env |= {"STATE_DIRECTORY": str(state), "CREDENTIALS_DIRECTORY": str(creds)}
    if listener is not None:
        env |= {"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "400000"}  # a ping every 0.2s
    return Install(config, env)


class Foldertrack(subprocess.Popen):
    """``foldertrack ARGS --config …`` with its output in a file (a pipe nobody reads could fill up and
    block the daemon's logging, which would look like a wedge)."""

    def __init__(self, inst: Install, *args: str, prefix: tuple[str, ...] = ()) -> None:
        self.log = inst.config.parent.parent / f"{args[0]}-{uuid.uuid4().hex[:8]}.log"
        cmd = [sys.executable, *(prefix or ("-m", "foldertrack")), *args, "--config", str(inst.config)]
        with self.log.open("wb") as out:
            super().__init__(cmd, env=inst.env, stdout=out, stderr=subprocess.STDOUT)

    def output(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")

    def finish(self, timeout: float = 60.0) -> tuple[int, str]:
        """Wait for it to exit by itself: (exit code, output)."""
        return self.wait(timeout), self.output()


@contextlib.contextmanager
def running(inst: Install, *args: str, prefix: tuple[str, ...] = ()) -> Iterator[Foldertrack]:
    """A ``foldertrack`` process that is killed if the test leaves it running."""
    proc = Foldertrack(inst, *args, prefix=prefix)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def db_upgrade(inst: Install) -> None:
    """The unit's ExecStartPre: ``foldertrack db upgrade --config …`` (database from $STATE_DIRECTORY)."""
    code, out = Foldertrack(inst, "db", "upgrade").finish()
    assert code == 0, out
    assert f"sqlite:///{inst.env['STATE_DIRECTORY']}/foldertrack.db" in out


def terminate(proc: Foldertrack, timeout: float = 10.0) -> tuple[int, float, str]:
    """SIGTERM; (exit code, seconds it took, output)."""
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout)
    except subprocess.TimeoutExpired:
        raise AssertionError(
            f"foldertrack run still running {timeout}s after SIGTERM:\n{proc.output()}"
        ) from None
    return code, time.monotonic() - started, proc.output()


def deliver(sim, subject: str) -> None:
    sim.deliver(ALICE, MailSpec(subject=subject, sender="dana@contoso.com", to=[ALICE]), folder=FOLDER)


# --------------------------------------------------------------------------- the protocol, end to end


@pytest.mark.slow
def test_ready_watchdog_reload_stopping_sequence(tmp_path, sim, listener):
    inst = install(tmp_path, sim, listener)
    db_upgrade(inst)
    with running(inst, "run") as proc:
        ready = listener.wait_for("READY", "1", timeout=30)
        assert "watching 1 mailbox, 1 folder" in ready.fields["STATUS"]
        listener.wait_status("1 streaming")
        deliver(sim, "Order #1")
        listener.wait_status("1 tracked since start")
        wait_until(lambda: len([p for p in listener.pings() if p > ready.at]) >= 3, 10, "3 pings after READY")

        proc.send_signal(signal.SIGHUP)
        reloading = listener.wait_for("RELOADING", "1")
        stamp = int(reloading.fields["MONOTONIC_USEC"])
        assert abs(stamp - time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000) < 30_000_000
        reloaded = listener.wait_for("READY", "1", after=reloading.at)
        assert "reload failed" not in reloaded.fields["STATUS"]
        after_reload = listener.wait_for("WATCHDOG", "1", after=reloaded.at)

        (inst.config.parent / "rules" / "broken.yaml").write_text("mailboxes: [", encoding="utf-8")
        proc.send_signal(signal.SIGHUP)  # an invalid rule set: old rules kept, still READY, status says so
        second = listener.wait_for("RELOADING", "1", after=reloaded.at)
        kept = listener.wait_for("READY", "1", after=second.at)
        assert "last reload failed, previous rules kept" in kept.fields["STATUS"]
        listener.wait_for("WATCHDOG", "1", after=kept.at)
        code, took, err = terminate(proc)
    assert code == 0, err
    assert took < 8, f"SIGTERM took {took:.1f}s"
    stopping = listener.wait_for("STOPPING", "1")
    assert stopping.at > after_reload.at
    order = [k for k in listener.first_keys() if k in {"READY", "RELOADING", "STOPPING"}]
    assert order == ["READY", "RELOADING", "READY", "RELOADING", "READY", "STOPPING"]
    assert "rules reloaded: no change" in err
    assert PASSWORD not in err


@pytest.mark.slow
def test_stuck_sync_workers_stop_the_pings_until_work_moves_again(tmp_path, sim, listener):
    """A sync that hangs (Exchange does not answer) holds back the pings; they resume once it finishes."""
    inst = install(tmp_path, sim, listener)
    db_upgrade(inst)
    with running(inst, "run", "--stall-timeout", "500ms") as proc:
        ready = listener.wait_for("READY", "1", timeout=30)
        listener.wait_status("1 streaming")
        wait_until(lambda: len([p for p in listener.pings() if p > ready.at]) >= 2, 10, "pings after READY")

        sim.faults.slow_responses(3500)  # the next catch-up's SyncFolderItems hangs for 3.5 s
        hung = time.monotonic()
        deliver(sim, "Held up")
        listener.wait_status("stalled: sync workers finished nothing", after=hung)
        last_ping = listener.wait_quiet(1.0)  # 5 intervals without a ping
        sim.faults.clear()
        resumed = listener.wait_for("WATCHDOG", "1", after=last_ping, timeout=15)
        listener.wait_status("1 tracked since start")
        code, _, err = terminate(proc)
    assert code == 0, err
    assert resumed.at - last_ping > 1.0
    assert "withholding watchdog pings" in err
    assert "making progress again" in err


def test_a_wedged_main_loop_stops_the_pings(tmp_path, sim, listener):
    """Pings come from the main loop itself, not from a timer thread: when the loop blocks (here on the
    watcher's lock, as it would behind a deadlocked worker) the pings stop although every thread is
    alive, and they resume when it runs again."""
    url = f"sqlite:///{tmp_path / 'foldertrack.db'}"
    upgrade_database(url)
    engine = open_database(url)
    (tmp_path / "rules").mkdir()
    (tmp_path / "rules" / "rules.yaml").write_text(RULES, encoding="utf-8")
    options = WatchOptions(rules_dir=tmp_path / "rules", **options_for_tests())
    settings = ExchangeSettings(endpoint=sim.url, auth="basic", username=SERVICE, password=PASSWORD)
    connector = ExchangeConnector(settings, max_connections=options.workers + 8)
    watcher = Watcher(options, engine, connector, SqlActivitySink(engine))
    notifier = Notifier({"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "200000"})
    supervisor = Supervisor(watcher, notifier)
    result: list[int] = []
    loop = threading.Thread(target=lambda: result.append(supervisor.run()), name="main-loop")
    loop.start()
    try:
        ready = listener.wait_for("READY", "1", timeout=30)
        wait_until(lambda: len([p for p in listener.pings() if p > ready.at]) >= 3, 10, "pings after READY")
        with watcher._lock:  # the wedge: a lock the main loop needs is never released
            last_ping = listener.wait_quiet(1.0)  # 10 intervals
            assert watcher.check() is None  # every thread is alive: only the loop is stuck
        resumed = listener.wait_for("WATCHDOG", "1", after=last_ping)
    finally:
        supervisor.request_stop()
        loop.join(15)
        engine.dispose()
    assert resumed.at - last_ping > 1.0
    assert result == [0]
    assert listener.first_keys()[-1] == "STOPPING"


def test_a_dead_worker_thread_exits_70_after_stopping(listener):
    class DeadWatcher:
        ready = threading.Event()
        stopped = False

        def start(self):
            pass

        def check(self):
            return "a sync worker thread died"

        def stop(self):
            self.stopped = True

    watcher = DeadWatcher()
    notifier = Notifier({"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "1000000"})
    assert Supervisor(watcher, notifier).run() == EXIT_WEDGED  # type: ignore[arg-type]
    assert watcher.stopped
    stopping = listener.wait_for("STOPPING", "1")
    assert stopping.fields["STATUS"] == "stopping: a sync worker thread died"
    assert not listener.with_key("READY") and not listener.with_key("WATCHDOG")


def test_a_start_that_keeps_moving_asks_for_more_time_and_one_that_stalls_does_not(listener):
    """10,000 mailboxes take minutes to start, longer than the unit's ``TimeoutStartSec``: while the sync
    workers keep finishing work the main loop sends ``EXTEND_TIMEOUT_USEC`` (a third of it apart); when
    nothing finishes any more it stops asking, so systemd's timeout restarts a start that hangs; none after
    READY. The loop is turned by hand with its own clock."""

    class StartingWatcher:
        ready = threading.Event()
        totals = type("Totals", (), {"tracked": 0, "dead_lettered": 0})()

        class dispatcher:  # the attributes the loop reads
            stats = type("Stats", (), {"runs": 0})()
            last_progress = 0.0

            @staticmethod
            def backlog_total() -> int:
                return 0

        def mailbox_states(self):
            return []

    watcher = StartingWatcher()
    supervisor = Supervisor(watcher, Notifier({"NOTIFY_SOCKET": listener.address}), start_extension=6.0)  # type: ignore[arg-type]
    runs = watcher.dispatcher.stats
    turns = [(0.0, 1), (1.0, 1), (2.5, 2), (4.0, 3), (5.0, 3), (8.0, 3), (20.0, 3)]  # (time, work done)
    for now, done in turns:
        runs.runs = done
        supervisor._turn(now)
    # asked at 0 (moving), not at 1 (asked 1 s ago), at 2.5 (moved, 2 s since), at 4 (moved at 4, only
    # 1.5 s since: no), at 5 (moved 1 s ago, 2.5 s since: yes); not at 8 or 20: nothing moved since 4
    wait_until(lambda: len(listener.with_key("EXTEND_TIMEOUT_USEC")) == 3, 5, "three extensions")
    watcher.ready.set()
    runs.runs = 4
    supervisor._turn(21.0)
    listener.wait_for("READY", "1")
    supervisor._turn(22.0)
    supervisor.notifier.status("end of test")  # datagrams keep their order: once it is here, all are
    listener.wait_status("end of test")
    extensions = listener.with_key("EXTEND_TIMEOUT_USEC")
    assert [m.fields["EXTEND_TIMEOUT_USEC"] for m in extensions] == ["6000000"] * 3
    ready = listener.wait_for("READY", "1")
    assert all(m.at < ready.at for m in extensions)  # none asked for once started


# --------------------------------------------------------------------------- exit codes systemd acts on


BREAKAGES = {  # what is wrong: (extra config, `db upgrade` exit code, `run` exit code, message)
    "config": ("\n[watchh]\nworkers = 2\n", 78, 78, "unknown section 'watchh'"),
    "rules": ("", 0, 78, "rules.yaml:5:"),
    "schema": ("", None, 78, "run `foldertrack db upgrade`"),  # the upgrade did not run (or failed)
    "database down": (
        '\n[database]\nurl = "postgresql+psycopg://foldertrack@127.0.0.1:1/foldertrack"\n',
        75,
        75,
        "Connection refused",
    ),
}


@pytest.mark.slow
@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_exit_codes_tell_systemd_whether_to_restart(tmp_path, sim, listener, breakage):
    """78 is the unit's RestartPreventExitStatus (restarting cannot fix it); 75 is worth a restart.
    ExecStartPre=-foldertrack db upgrade may fail too: the unit ignores that and lets `run` decide."""
    extra, upgrade_code, run_code, message = BREAKAGES[breakage]
    inst = install(tmp_path, sim, listener, extra_config=extra)
    if upgrade_code is not None:
        code, out = Foldertrack(inst, "db", "upgrade").finish()
        assert code == upgrade_code, out
    if breakage == "rules":
        rules = inst.config.parent / "rules" / "rules.yaml"
        rules.write_text(RULES.replace("record: null", "record: acount:x"), encoding="utf-8")
    code, err = Foldertrack(inst, "run").finish()
    assert code == run_code, err
    assert message in err
    assert not [m for m in listener.snapshot() if set(m.fields) != {"STATUS"}]  # no READY, no pings


# --------------------------------------------------------------------------- inside the unit's sandbox

UNIT = Path(__file__).resolve().parents[2] / "systemd" / "foldertrack.service"
# Applies the unit's seccomp-based settings to this process, then runs the CLI: MemoryDenyWriteExecute=
# (the kernel's PR_SET_MDWE, which refuses at least what systemd's filter does), SystemCallFilter= with
# SystemCallErrorNumber=EPERM, RestrictAddressFamilies= (socket() for the listed families only), and
# NoNewPrivileges= (libseccomp sets it). Exits 99 if the kernel has no PR_SET_MDWE (Linux < 6.3).
SANDBOX_LAUNCHER = r"""
import ctypes, errno, json, sys
spec = json.loads(sys.argv.pop(1))
if ctypes.CDLL(None).prctl(65, 1, 0, 0, 0) != 0:  # PR_SET_MDWE, PR_MDWE_REFUSE_EXEC_GAIN
    sys.exit(99)
lib = ctypes.CDLL("libseccomp.so.2")
lib.seccomp_init.restype = ctypes.c_void_p
lib.seccomp_init.argtypes = [ctypes.c_uint32]
c = ctypes
lib.seccomp_rule_add_array.argtypes = [c.c_void_p, c.c_uint32, c.c_int, c.c_uint, c.c_void_p]
lib.seccomp_load.argtypes = [ctypes.c_void_p]
lib.seccomp_syscall_resolve_name.argtypes = [ctypes.c_char_p]

class Cmp(ctypes.Structure):  # struct scmp_arg_cmp
    _fields_ = [("arg", ctypes.c_uint), ("op", ctypes.c_int), ("a", ctypes.c_uint64), ("b", ctypes.c_uint64)]

ALLOW, EPERM = 0x7FFF0000, 0x00050000 | errno.EPERM
ctx = lib.seccomp_init(EPERM)
for name in spec["syscalls"]:
    nr = lib.seccomp_syscall_resolve_name(name.encode())
    if nr >= 0 and name != "socket":
        assert lib.seccomp_rule_add_array(ctx, ALLOW, nr, 0, None) == 0, name
socket_nr = lib.seccomp_syscall_resolve_name(b"socket")
for family in spec["families"]:
    rule = Cmp(0, 4, family, 0)  # SCMP_CMP_EQ on socket()'s first argument
    assert lib.seccomp_rule_add_array(ctx, ALLOW, socket_nr, 1, ctypes.byref(rule)) == 0
assert lib.seccomp_load(ctx) == 0
from foldertrack.cli import main
main(prog_name="foldertrack")
"""


def unit_sandbox() -> dict[str, list]:
    """The system calls and socket families ``foldertrack.service`` allows (groups expanded by systemd)."""
    tool = shutil.which("systemd-analyze")
    if tool is None:
        pytest.skip(
            "systemd-analyze not found (Debian package systemd): the unit's syscall filter not checked"
        )
    if ctypes.util.find_library("seccomp") is None:
        pytest.skip("libseccomp not found: the unit's syscall filter not checked")
    listing = subprocess.run([tool, "syscall-filter"], capture_output=True, text=True, timeout=30).stdout
    groups: dict[str, list[str]] = {}
    for line in listing.splitlines():
        if line.startswith("@"):
            current = groups.setdefault(line.strip(), [])
        elif line.strip() and not line.strip().startswith("#") and groups:
            current.append(line.strip())

    def expand(names: list[str]) -> set[str]:
        out: set[str] = set()
        for name in names:
            out |= expand(groups[name]) if name.startswith("@") else {name}
        return out

    allowed: set[str] = set()
    families: list[int] = []
    for line in UNIT.read_text(encoding="utf-8").splitlines():
        key, _, value = line.partition("=")
        if key == "SystemCallFilter" and value.startswith("~"):
            allowed -= expand(value[1:].split())
        elif key == "SystemCallFilter":
            allowed |= expand(value.split())
        elif key == "RestrictAddressFamilies":
            families += [int(getattr(socket, name)) for name in value.split()]
    assert "socket" in allowed and families
    return {"syscalls": sorted(allowed), "families": families}


@pytest.mark.slow
def test_runs_inside_the_units_seccomp_sandbox(tmp_path, sim, listener):
    """What the unit's filters allow is enough: start, track a mail, reload, stop, over a real stream."""
    spec = json.dumps(unit_sandbox())
    inst = install(tmp_path, sim, listener)
    db_upgrade(inst)
    with running(inst, "run", prefix=("-c", SANDBOX_LAUNCHER, spec)) as proc:
        wait_until(lambda: proc.poll() is not None or listener.with_key("READY"), 30, "READY or an exit")
        if proc.poll() == 99:
            pytest.skip("kernel without prctl(PR_SET_MDWE) (Linux < 6.3): MemoryDenyWriteExecute not checked")
        listener.wait_for("READY", "1", timeout=1)
        deliver(sim, "Sandboxed")
        listener.wait_status("1 tracked since start")
        proc.send_signal(signal.SIGHUP)
        listener.wait_for("READY", "1", after=listener.wait_for("RELOADING", "1").at)
        code, _, err = terminate(proc)
    assert code == 0, err
    assert "Operation not permitted" not in err and "Traceback" not in err, err


# --------------------------------------------------------------------------- the client on its own


def test_without_notify_socket_every_call_is_a_no_op():
    notifier = Notifier({"WATCHDOG_USEC": "30000000"})
    assert not notifier.enabled and notifier.watchdog_interval is None
    assert notifier.ready("up") is False and notifier.watchdog() is False and notifier.stopping() is False


def test_path_socket_watchdog_interval_and_reloading_stamp(listener):
    notifier = Notifier({"NOTIFY_SOCKET": listener.address, "WATCHDOG_USEC": "30000000"})
    assert notifier.watchdog_interval == 15.0  # half of WatchdogSec=30s
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert notifier.reloading("reloading rules") and notifier.watchdog() and notifier.status("fine")
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    reloading = listener.wait_for("RELOADING", "1")
    assert before <= int(reloading.fields["MONOTONIC_USEC"]) <= after
    assert reloading.fields["STATUS"] == "reloading rules"
    listener.wait_for("STATUS", "fine")
    assert listener.first_keys() == ["RELOADING", "WATCHDOG", "STATUS"]
    notifier.close()


def test_abstract_notify_socket():
    box = NotifyListener(f"@foldertrack-test-{uuid.uuid4().hex}")
    try:
        notifier = Notifier({"NOTIFY_SOCKET": box.address})
        assert notifier.ready("up")
        assert box.wait_for("READY", "1").fields == {"READY": "1", "STATUS": "up"}
    finally:
        box.close()


@pytest.mark.parametrize(
    ("env", "interval"),
    [
        ({"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid())}, 0.5),
        (
            {"WATCHDOG_USEC": "1000000", "WATCHDOG_PID": str(os.getpid() + 1)},
            None,
        ),  # meant for another process
        ({"WATCHDOG_USEC": "0"}, None),
        ({"WATCHDOG_USEC": "soon"}, None),
        ({}, None),
    ],
)
def test_watchdog_interval_honours_watchdog_usec_and_pid(env, interval):
    assert Notifier({"NOTIFY_SOCKET": "/run/systemd/notify", **env}).watchdog_interval == interval


def test_a_vanished_or_odd_socket_never_raises(tmp_path):
    assert Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone.sock")}).ready() is False
    odd = Notifier({"NOTIFY_SOCKET": "vsock:2:1234"})  # not a unix socket: ignored
    assert not odd.enabled and odd.ready() is False


@pytest.mark.slow
def test_sigabrt_from_the_watchdog_leaves_every_threads_stack(tmp_path, sim, listener):
    """systemd's watchdog kills with SIGABRT; the journal then shows where each thread was."""
    inst = install(tmp_path, sim, listener)
    db_upgrade(inst)
    no_core = (
        "-c",
        "import resource; resource.setrlimit(resource.RLIMIT_CORE, (0, 0))\n"
        "from foldertrack.cli import main; main(prog_name='foldertrack')",
    )
    with running(inst, "run", prefix=no_core) as proc:
        listener.wait_for("READY", "1", timeout=30)
        proc.send_signal(signal.SIGABRT)
        code, err = proc.finish(20)
    assert code == -signal.SIGABRT
    assert "Fatal Python error: Aborted" in err
    assert 'run_cmd.py", line' in err and "in run" in err  # the main loop's frame
    assert err.count("Thread 0x") >= 3  # main loop, sync workers, stream reader, timer…
