"""The daemon's tunables (``[watch]`` and ``[delivery]`` in the configuration)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from foldertrack.delivery.service import DeliveryOptions
from foldertrack.fleet import FleetOptions
from foldertrack.watch.streaming import MAX_IDS_PER_STREAM


@dataclass(frozen=True)
class WatchOptions:
    """Tunables of the daemon (from ``[watch]`` in the configuration; ``delivery`` from ``[delivery]``)."""

    rules_dir: Path
    poll_interval: float = 60.0
    safety_sync_interval: float = 900.0
    safety_sync_rate: float = 3.0  # safety-net syncs per second at most: a round's length grows with size
    workers: int = 4
    debounce: float = 0.05
    max_attempts: int = 5
    max_attachment_bytes: int = 5 * 1024 * 1024
    stream_timeout_minutes: int = 10
    stream_stall_timeout: float = 120.0
    start_timeout: float = 60.0  # a mailbox not started after this is in error with its reason (ops/health.py)
    stuck_timeout: float = 600.0  # a mailbox's work without progress this long is stuck (ops/supervisor.py)
    streams_per_connection: int = MAX_IDS_PER_STREAM
    watch_rules_dir: bool = True
    instance: str | None = None
    delivery: DeliveryOptions = field(default_factory=DeliveryOptions)
    fleet: FleetOptions | None = None  # mailbox leases (foldertrack.fleet); None: watch every mailbox
