"""``foldertrack run`` as a real child process against the simulator, for tests that kill it.

The in-process ``Harness`` cannot be ``kill -9``-ed; this can. The child gets a config file pointing at
the simulator and the test's database, and the service account's password through the environment (as
``$CREDENTIALS_DIRECTORY`` would give it under systemd), never in the file or on the command line.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from foldertrack.testing.harness import SERVICE_ACCOUNT, SERVICE_PASSWORD

DEFAULT_WATCH = {
    "poll_interval": "1s",
    "debounce": "20ms",
    "workers": 3,
    "max_attempts": 3,
    "stall_timeout": "5s",
    "stream_timeout": "1m",
}


def write_config(
    path: Path, *, endpoint: str, database_url: str, rules_dir: Path, watch: dict | None = None
) -> Path:
    """A TOML config for ``foldertrack run`` against the simulator at ``endpoint``."""

    def value(v: object) -> str:
        return str(v) if isinstance(v, int) and not isinstance(v, bool) else f'"{v}"'

    lines = [
        "[exchange]",
        f'endpoint = "{endpoint}"',
        'auth = "basic"',
        f'username = "{SERVICE_ACCOUNT}"',
        'access = "impersonation"',
        'version = "Exchange2016"',
        "",
        "[database]",
        f'url = "{database_url}"',
        "",
        "[rules]",
        f'dir = "{rules_dir}"',
        "",
        "[watch]",
        *(f"{k} = {value(v)}" for k, v in {**DEFAULT_WATCH, **(watch or {})}.items()),
        "",
    ]
    path.write_text("\n".join(lines), encoding="utf-8")
    return path


class WatcherProcess:
    """One ``foldertrack run --config …`` child; stderr goes to ``log_path`` (appended across restarts)."""

    def __init__(self, config_path: Path, log_path: Path, *, extra_env: dict[str, str] | None = None):
        self.config_path = config_path
        self.log_path = log_path
        self.extra_env = extra_env or {}
        self.proc: subprocess.Popen | None = None

    def start(self, *args: str) -> WatcherProcess:
        env = {**os.environ, "FOLDERTRACK_EXCHANGE_PASSWORD": SERVICE_PASSWORD, **self.extra_env}
        env.pop("NOTIFY_SOCKET", None)
        with self.log_path.open("ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "foldertrack", "run", "--config", str(self.config_path), *args],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=log,
                env=env,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def kill9(self) -> int:
        """SIGKILL: no cleanup of any kind runs, exactly like a crash or the OOM killer."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        return self.proc.wait(10)

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM and wait: the exit code of a clean stop."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def close(self) -> None:
        if self.running():
            assert self.proc is not None
            self.proc.kill()
            self.proc.wait(10)
