"""Finding sinks: plug-ins registered under the ``foldertrack.sinks`` entry-point group.

A plug-in package declares, in its ``pyproject.toml``::

    [project.entry-points."foldertrack.sinks"]
    webhook = "foldertrack_webhook:WebhookActivitySink"

The entry point names an :class:`~foldertrack.sinks.base.ActivitySink` subclass with a classmethod
``create(config, engine)`` (or any callable with that signature) returning the sink. ``config`` is the loaded
foldertrack configuration, ``engine`` the state database's engine (a sink with its own store ignores it).
Nothing is registered globally: each caller gets its own sink instance.
"""

from __future__ import annotations

from importlib.metadata import EntryPoint, entry_points
from typing import Any

from sqlalchemy import Engine

from foldertrack.errors import ConfigError
from foldertrack.sinks.base import ActivitySink

GROUP = "foldertrack.sinks"


def available_sinks() -> dict[str, EntryPoint]:
    """Installed sink plug-ins by name."""
    return {ep.name: ep for ep in entry_points(group=GROUP)}


def load_sink(name: str, config: Any, engine: Engine) -> ActivitySink:
    """Build the sink called ``name``; ConfigError when it is not installed or does not load."""
    found = available_sinks()
    entry = found.get(name)
    if entry is None:
        known = ", ".join(sorted(found)) or "none"
        raise ConfigError(f"unknown sink {name!r} (installed sinks: {known})")
    try:
        target = entry.load()
    except Exception as error:  # a broken plug-in must not look like a foldertrack bug
        raise ConfigError(
            f"sink {name!r} ({entry.value}) failed to load: {type(error).__name__}: {error}"
        ) from error
    factory = getattr(target, "create", target)
    if not callable(factory):
        raise ConfigError(f"sink {name!r} ({entry.value}) is not a class or factory")
    sink = factory(config, engine)
    if not isinstance(sink, ActivitySink):
        raise ConfigError(f"sink {name!r} ({entry.value}) did not return an ActivitySink")
    return sink
