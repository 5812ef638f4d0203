"""Simulator fixtures: a started :class:`~foldertrack.simulator.Simulator` whose every response is checked
against Microsoft's EWS schema (``<repo>/../shared/ews-schema/messages.xsd``, or ``$FOLDERTRACK_EWS_SCHEMA``).

A test that got an invalid response fails at teardown, listing the responses and the schema errors.
Without the schema files the check is off and ``ews_schema`` skips with the reason.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from foldertrack.simulator import Simulator

__all__ = [
    "SchemaValidator",
    "ews_schema",
    "ews_schema_path",
    "exchangelib_account",
    "simulator",
    "simulator_factory",
]


def ews_schema_path() -> Path:
    env = os.environ.get("FOLDERTRACK_EWS_SCHEMA")
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    return repo.parent / "shared" / "ews-schema" / "messages.xsd"


@functools.lru_cache(maxsize=1)
def _load_schema() -> Any | None:
    path = ews_schema_path()
    if not path.is_file():
        return None
    import xmlschema  # slow to import and compile: once per session

    return xmlschema.XMLSchema(str(path))


class SchemaValidator:
    """A response observer: validates each ``m:*Response`` element and collects the failures."""

    def __init__(self, schema: Any) -> None:
        self.schema = schema
        self.failures: list[str] = []
        self.checked = 0
        self._lock = threading.Lock()

    def __call__(self, response) -> None:
        from lxml import etree

        errors = [str(e.reason or e) for e in self.schema.iter_errors(response)][:3]
        with self._lock:
            self.checked += 1
            if errors:
                text = etree.tostring(response, encoding="unicode")[:1500]
                self.failures.append(f"{etree.QName(response).localname}: {'; '.join(errors)}\n    {text}")


@pytest.fixture(scope="session")
def ews_schema() -> Any:
    """The compiled EWS schema (xmlschema); skips when ``../shared/ews-schema`` is not there."""
    schema = _load_schema()
    if schema is None:
        pytest.skip(
            f"EWS schema not found at {ews_schema_path()} (set FOLDERTRACK_EWS_SCHEMA): schema check skipped"
        )
    return schema


@pytest.fixture
def simulator_factory() -> Iterator[Callable[..., Simulator]]:
    """``make(**kwargs)`` starts a Simulator (kwargs as for it); all are stopped and checked at teardown."""
    started: list[tuple[Simulator, SchemaValidator | None]] = []
    schema = _load_schema()

    def make(**kwargs: Any) -> Simulator:
        kwargs.setdefault("host", "127.0.0.1")
        sim = Simulator(**kwargs)
        validator = SchemaValidator(schema) if schema is not None else None
        if validator is not None:
            sim.add_observer(validator)
        sim.start()
        started.append((sim, validator))
        return sim

    yield make
    failures: list[str] = []
    for sim, validator in started:
        sim.stop()
        if validator is not None:
            failures.extend(validator.failures)
    if failures:
        pytest.fail(
            f"{len(failures)} simulator response(s) failed EWS schema validation:\n"
            + "\n".join(failures[:10])
        )


@pytest.fixture
def simulator(simulator_factory: Callable[..., Simulator]) -> Simulator:
    """A started Simulator on a free loopback port, every response schema-checked; stopped after the test."""
    return simulator_factory()


def exchangelib_account(
    sim: Simulator,
    address: str,
    password: str = "pw",
    *,
    user: str | None = None,
    impersonate: bool = False,
    explicit: bool = True,
    fail_fast: bool = True,
    max_connections: int = 4,
) -> Any:
    """An unmodified exchangelib Account against ``sim``: ``user`` logs in (a service account when
    ``impersonate``); ``explicit`` gives auth_type + version so no probing requests are made."""
    from exchangelib import (
        BASIC,
        DELEGATE,
        IMPERSONATION,
        Account,
        Build,
        Configuration,
        Credentials,
        Version,
    )
    from exchangelib.protocol import FailFast, FaultTolerance

    kwargs: dict[str, Any] = {}
    if explicit:
        kwargs = {
            "auth_type": BASIC,
            "version": Version(build=Build(15, 2, 1544, 4), api_version="Exchange2016"),
        }
    config = Configuration(
        service_endpoint=sim.url,
        credentials=Credentials(user or address, password),
        retry_policy=FailFast() if fail_fast else FaultTolerance(max_wait=30),
        max_connections=max_connections,
        **kwargs,
    )
    return Account(
        address, config=config, autodiscover=False, access_type=IMPERSONATION if impersonate else DELEGATE
    )
