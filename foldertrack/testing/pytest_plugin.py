"""The pytest plug-in the whole suite shares (``-p foldertrack.testing.pytest_plugin``).

It fails any test that leaves threads behind, and re-exports the fixture modules each part owns.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest

from foldertrack.testing.fixtures_dataverse import *  # noqa: F403
from foldertrack.testing.fixtures_dataverse_sink import *  # noqa: F403
from foldertrack.testing.fixtures_db import *  # noqa: F403
from foldertrack.testing.fixtures_graph import *  # noqa: F403
from foldertrack.testing.fixtures_rules import *  # noqa: F403
from foldertrack.testing.fixtures_simulator import *  # noqa: F403
from foldertrack.testing.webhook_receiver import webhook_receiver  # noqa: F401


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Under pytest-xdist (``-n 2 --dist loadgroup``), the tests that start ``foldertrack run`` processes
    (marked ``slow``) run one at a time on one worker: two of them at once on two cores would time each
    other out. The rest spread over the workers."""
    for item in items:
        if item.get_closest_marker("slow") is not None:
            item.add_marker(pytest.mark.xdist_group("processes"))


def wait_for(condition, timeout: float = 10.0, interval: float = 0.01, message: str = "condition"):
    """Poll ``condition`` until it returns something truthy; fail the test after ``timeout`` seconds."""
    from foldertrack.testing.harness import wait_until

    try:
        return wait_until(condition, timeout, message, interval)
    except AssertionError as exc:
        pytest.fail(str(exc))


@pytest.fixture(autouse=True)
def no_leaked_threads() -> Iterator[None]:
    """Fail the test if it leaves a thread running that it started (servers must stop by themselves)."""
    before = set(threading.enumerate())
    yield
    deadline = time.monotonic() + 5.0
    while True:
        leaked = [t for t in threading.enumerate() if t not in before and t.is_alive()]
        if not leaked or time.monotonic() > deadline:
            break
        time.sleep(0.02)
    if leaked:
        pytest.fail(f"test leaked threads: {sorted(t.name for t in leaked)}")
