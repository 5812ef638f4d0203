"""Keeper child processes (:mod:`tests.fleet.keeper_child`) driven from a test; killed at teardown."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.fleet.ownership import Interval, read_report

REPO = Path(__file__).resolve().parents[2]


class KeeperProcess:
    def __init__(
        self,
        workdir: Path,
        url: str,
        name: str,
        mailboxes: list[str],
        *,
        ttl: float,
        claim_interval: float,
        write_every: float = 0.0,
    ) -> None:
        self.name = name
        self.report = workdir / f"{name}.jsonl"
        self.log = workdir / f"{name}.log"
        self.argv = [
            sys.executable,
            "-m",
            "tests.fleet.keeper_child",
            f"--url={url}",
            f"--name={name}",
            f"--mailboxes={','.join(mailboxes)}",
            f"--report={self.report}",
            f"--ttl={ttl}",
            f"--claim-interval={claim_interval}",
            f"--write-every={write_every}",
        ]
        self.proc: subprocess.Popen[str] | None = None
        self.id = ""

    def start(self) -> KeeperProcess:
        with open(self.log, "a", encoding="utf-8") as log:
            self.proc = subprocess.Popen(
                self.argv,
                cwd=REPO,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                env={**os.environ, "PYTHONPATH": str(REPO)},
            )
        self.id = self.read(30)["ready"]
        return self

    def read(self, timeout: float = 10.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        line = self.proc.stdout.readline() if ready else ""
        if not line:
            raise AssertionError(
                f"{self.name} answered nothing in {timeout}s; log: {self.log.read_text()[-2000:]}"
            )
        return json.loads(line)

    def command(self, command: str, timeout: float = 10.0) -> dict[str, Any]:
        assert self.proc is not None and self.proc.stdin is not None
        self.proc.stdin.write(command + "\n")
        self.proc.stdin.flush()
        return self.read(timeout)

    def signal(self, signo: int) -> float:
        assert self.proc is not None
        self.proc.send_signal(signo)
        return time.monotonic()

    def kill(self) -> float:
        at = self.signal(signal.SIGKILL)
        assert self.proc is not None
        self.proc.wait(10)
        return at

    def terminate(self) -> None:
        """SIGTERM: a clean stop that releases the leases; waits for the process to end."""
        self.signal(signal.SIGTERM)
        assert self.proc is not None
        assert self.proc.wait(15) == 0, self.log.read_text()[-2000:]

    def intervals(self) -> list[Interval]:
        return read_report(self.report, self.name)

    def close(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.kill()
            self.proc.wait(10)
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream is not None:
                stream.close()
