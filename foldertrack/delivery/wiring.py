"""Building delivery from the configuration: options, and the optional mailbox feedback."""

from __future__ import annotations

import logging
from typing import Any

from foldertrack.delivery.service import DeliveryOptions
from foldertrack.sources.base import MailSource

log = logging.getLogger("foldertrack.delivery")


def delivery_options(config: Any) -> DeliveryOptions:
    """``[delivery]`` as :class:`DeliveryOptions` (defaults for anything the configuration lacks)."""
    section = getattr(config, "delivery", None)
    defaults = DeliveryOptions()
    names = ("workers", "unhealthy_after", "max_backoff", "retention", "scan_interval")
    return DeliveryOptions(**{n: getattr(section, n, getattr(defaults, n)) for n in names})


def load_feedback(config: Any, source: MailSource, engine: Any, sink_name: str) -> Any:
    """The mailbox feedback for an external sink, writing through ``source`` (the watcher's own, EWS or
    Graph), or None: the ``sql`` sink, ``delivery.feedback = false``, or no feedback module installed."""
    if sink_name == "sql" or not getattr(getattr(config, "delivery", None), "feedback", False):
        return None
    try:
        from foldertrack.delivery.feedback import MailboxFeedback
    except ImportError as exc:
        log.info("mailbox feedback unavailable: %s", exc)
        return None
    return MailboxFeedback(source, engine, config)
