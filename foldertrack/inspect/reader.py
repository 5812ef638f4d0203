"""What the inspection commands read from a mailbox, whichever source the configuration names: the
:class:`MailboxReader` interface and :func:`open_reader`, which picks EWS (:class:`.exchange.ExchangeReader`)
or Microsoft Graph (:class:`.graph_reader.GraphReader`) by ``exchange.source``.

Every failure leaves as an :class:`~foldertrack.errors.ExchangeError` naming the mailbox: plain (exit 75)
when asking again later may help (unreachable, throttled, 5xx), :class:`.exchange.ExchangeRefused` (exit 1)
when the server answered no (no such mailbox, no rights, bad credentials).
"""

from __future__ import annotations

from datetime import datetime
from typing import Protocol

from foldertrack.config import Config
from foldertrack.inspect.exchange import ItemInfo, Mailbox


class MailboxReader(Protocol):
    """Read-only access to mailboxes for ``folders``, ``rules check --online``/``preview``/``suggest``
    and ``explain``."""

    def mailbox(self, address: str) -> Mailbox:
        """The mailbox's folder tree below the message folder root, with item and child counts."""
        ...

    def items(
        self, address: str, folder_id: str, *, since: datetime | None = None, sample: int = 3
    ) -> tuple[int, list[ItemInfo]]:
        """How many items the folder holds (received at or after ``since``), and the newest ``sample``."""
        ...

    def find(
        self,
        address: str,
        folder_ids: list[str],
        *,
        message_id: str | None = None,
        subject: str | None = None,
        limit: int = 20,
    ) -> list[ItemInfo]:
        """Items in the folders with this Message-ID (exact) or a subject containing ``subject``, newest
        first per folder, at most ``limit``."""
        ...

    def close(self) -> None: ...


def connection_problems(config: Config) -> list[str]:
    """What the configured source lacks to connect (empty when ready): ``[exchange]`` or ``[graph]``."""
    if config.exchange.source == "graph":
        return config.graph.connection_problems() if config.graph is not None else ["[graph] is not set"]
    return config.exchange.connection_problems()


def open_reader(config: Config) -> MailboxReader:
    """The reader for ``exchange.source``; ConfigError when the configuration lacks what connecting needs."""
    if config.exchange.source == "graph":
        from foldertrack.inspect.graph_reader import GraphReader

        return GraphReader.from_config(config)
    from foldertrack.inspect.exchange import ExchangeReader

    return ExchangeReader.from_config(config)


__all__ = ["MailboxReader", "connection_problems", "open_reader"]
