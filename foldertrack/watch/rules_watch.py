"""Hot reload of ``rules/``: watchdog tells us a YAML file changed; we reload after a short quiet period
(editors write files in several steps), from watchdog's thread, which only calls ``reload``."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from watchdog.events import FileSystemEvent, FileSystemEventHandler
from watchdog.observers import Observer

log = logging.getLogger(__name__)

QUIET_SECONDS = 0.3
#: Events that mean a file's content may have changed. watchdog (≥ 5 on Linux) also reports ``opened`` and
#: ``closed_no_write``: our own reading of the rules would otherwise schedule the next reload, forever.
CHANGE_EVENTS = frozenset({"created", "modified", "moved", "deleted", "closed"})


class _RulesChanged(FileSystemEventHandler):
    def __init__(self, reload: Callable[[], object]):
        self._reload = reload
        self._timer: threading.Timer | None = None
        self._lock = threading.Lock()

    def on_any_event(self, event: FileSystemEvent) -> None:
        if event.event_type not in CHANGE_EVENTS:
            return
        path = str(getattr(event, "dest_path", "") or event.src_path)
        if event.is_directory or not (
            path.endswith(".yaml") or path.endswith(".yml") or event.event_type == "deleted"
        ):
            return
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
            self._timer = threading.Timer(QUIET_SECONDS, self._fire)
            self._timer.name = "foldertrack-rules-reload"
            self._timer.daemon = True
            self._timer.start()

    def _fire(self) -> None:
        try:
            self._reload()
        except Exception:  # a failing reload must not kill watchdog's thread
            log.exception("rules reload failed")

    def cancel(self) -> None:
        with self._lock:
            if self._timer is not None:
                self._timer.cancel()
                self._timer.join(1.0)


class RulesObserver:
    """Owns watchdog's observer thread and our debounce timer."""

    def __init__(self, directory: Path, reload: Callable[[], object]):
        self._handler = _RulesChanged(reload)
        self._observer = Observer()
        self._observer.name = "foldertrack-rules-observer"
        self._observer.schedule(self._handler, str(directory), recursive=False)

    def start(self) -> None:
        self._observer.start()

    def stop(self) -> None:
        self._handler.cancel()
        self._observer.stop()

    def join(self, timeout: float | None = None) -> None:
        self._observer.join(timeout)


def watch_rules_dir(directory: Path, reload: Callable[[], object]) -> RulesObserver:
    observer = RulesObserver(directory, reload)
    observer.start()
    return observer
