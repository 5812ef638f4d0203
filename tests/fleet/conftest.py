"""Fixtures for the fleet tests: an upgraded PostgreSQL schema per test, keepers stopped after each test."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from sqlalchemy import Engine

from foldertrack.fleet import LeaseKeeper
from foldertrack.state.database import open_database

TTL = 3.0  # short enough for takeover tests, long enough for a loaded test machine
CLAIM_INTERVAL = 0.1


@pytest.fixture
def pg_engine(postgres_url: str) -> Iterator[Engine]:
    engine = open_database(postgres_url)
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def make_keeper() -> Iterator[Callable[..., LeaseKeeper]]:
    """``make_keeper(engine, name, mailboxes, **kwargs)``: a started keeper, stopped (released) afterwards."""
    keepers: list[LeaseKeeper] = []

    def make(engine: Engine, name: str, mailboxes: list[str], **kwargs: Any) -> LeaseKeeper:
        kwargs.setdefault("ttl", TTL)
        kwargs.setdefault("claim_interval", CLAIM_INTERVAL)
        keeper = LeaseKeeper(engine, name=name, **kwargs)
        keeper.set_mailboxes(mailboxes)
        keeper.start()
        keepers.append(keeper)
        return keeper

    yield make
    for keeper in keepers:
        keeper.stop()


def mailbox_names(n: int) -> list[str]:
    return [f"user{i:03d}@example.com" for i in range(n)]
