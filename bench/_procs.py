"""Other processes seen from outside, for the fleet benchmark: RSS and CPU time from ``/proc`` (psutil is
not a dependency), and a py-spy sample of where a process spends its CPU (when py-spy is installed)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

_TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of all threads of ``pid`` so far (``/proc/PID/stat`` utime + stime)."""
    with open(f"/proc/{pid}/stat", encoding="utf-8") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / _TICK


def rss_mb(pid: int) -> float:
    """Resident set size of ``pid`` in MB (VmRSS)."""
    with open(f"/proc/{pid}/status", encoding="utf-8") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def threads(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/task"))


def cpu_percent(pids: Sequence[int], seconds: float) -> dict[int, float]:
    """Each process's CPU over ``seconds`` of wall time, in % of one core."""
    before = {pid: cpu_seconds(pid) for pid in pids}
    t0 = time.monotonic()
    time.sleep(seconds)
    wall = time.monotonic() - t0
    return {pid: (cpu_seconds(pid) - before[pid]) / wall * 100 for pid in pids}


def py_spy() -> str | None:
    """The py-spy binary next to this Python, or on PATH."""
    local = Path(sys.executable).with_name("py-spy")
    return str(local) if local.exists() else shutil.which("py-spy")


def profile(pid: int, seconds: float, rate: int = 100) -> str:
    """Sample ``pid`` with py-spy (non-blocking, only the thread holding the GIL: where Python spends CPU,
    not where threads wait) and summarise: the functions holding most samples (inclusive) and the
    innermost frames, with their share."""
    binary = py_spy()
    if binary is None:
        return "py-spy is not installed (.venv/bin/pip install py-spy): no profile"
    with tempfile.TemporaryDirectory(prefix="ft-spy-") as tmp:
        out = Path(tmp) / "stacks.txt"
        result = subprocess.run(
            [
                binary,
                "record",
                "--pid",
                str(pid),
                "--duration",
                str(round(seconds)),
                "--rate",
                str(rate),
                "--nonblocking",
                "--gil",
                "--format",
                "raw",
                "--output",
                str(out),
            ],
            capture_output=True,
            text=True,
            timeout=seconds + 60,
        )
        if result.returncode != 0 or not out.exists():
            return f"py-spy failed: {(result.stderr or result.stdout).strip()[-300:]}"
        lines = out.read_text(encoding="utf-8").splitlines()
    inclusive: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count = line.rpartition(" ")
        if not count.isdigit():
            continue
        n = int(count)
        total += n
        frames = [_short(f) for f in stack.split(";")[1:]]  # the first entry names the thread
        for frame in set(frames):
            inclusive[frame] += n
        if frames:
            leaves[frames[-1]] += n
    if not total:
        return f"py-spy: no busy samples in {seconds:.0f} s (the process was idle)"
    own = [(f, n) for f, n in inclusive.most_common() if "foldertrack/" in f][:14]
    out_lines = [
        f"py-spy {seconds:.0f} s at {rate} Hz: {total} samples of the thread holding the GIL"
    ]
    out_lines.append("  foldertrack functions by inclusive share of busy samples:")
    out_lines += [f"    {n / total * 100:5.1f} %  {f}" for f, n in own]
    out_lines.append("  innermost frames:")
    out_lines += [f"    {n / total * 100:5.1f} %  {f}" for f, n in leaves.most_common(10)]
    return "\n".join(out_lines)


def _short(frame: str) -> str:
    """``func (/long/path/foldertrack/watch/timer.py:123)`` → ``func (foldertrack/watch/timer.py)``."""
    name, _, where = frame.partition(" (")
    path = where.rstrip(")").rsplit(":", 1)[0]
    for marker in ("/foldertrack/", "/site-packages/", "/lib/python"):
        if marker in path:
            path = marker.lstrip("/") + path.split(marker, 1)[1]
            break
    return f"{name} ({path})"
