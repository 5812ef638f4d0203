"""The shipped migrations build exactly the tables in foldertrack.state.schema, on SQLite and PostgreSQL."""

from __future__ import annotations

from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import inspect

from foldertrack.state.database import (
    alembic_config,
    current_revision,
    head_revision,
    open_database,
    upgrade_database,
)
from foldertrack.state.schema import metadata


def test_upgrade_from_empty_creates_every_table(empty_database_url):
    before, after = upgrade_database(empty_database_url)

    assert (before, after) == (None, head_revision())
    engine = open_database(empty_database_url)
    try:
        tables = set(inspect(engine).get_table_names())
        assert set(metadata.tables) | {"alembic_version"} == tables
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_upgrade_twice_is_a_no_op(database_url):
    assert upgrade_database(database_url) == (head_revision(), head_revision())


def test_migrations_match_the_metadata(database_engine):
    with database_engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        diff = compare_metadata(context, metadata)

    assert diff == []


def test_downgrade_to_base_and_back(database_url):
    engine = open_database(database_url)
    try:
        with engine.begin() as conn:
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            command.downgrade(cfg, "base")
        assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
        assert current_revision(engine) is None
    finally:
        engine.dispose()

    assert upgrade_database(database_url) == (None, head_revision())
