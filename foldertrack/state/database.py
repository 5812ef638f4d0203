"""Opening the state database and keeping its schema current (Alembic, configured in code).

Every error leaving this module is a :class:`~foldertrack.errors.FoldertrackError` whose message shows the
database URL with its password masked, never the password itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, Engine, create_engine, event, exc, make_url, text
from sqlalchemy.engine import URL

from foldertrack.errors import ConfigError, DatabaseError, SchemaOutOfDateError

log = logging.getLogger(__name__)

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
#: Execution option: ``conn.execution_options(foldertrack_sqlite_begin="immediate")`` makes SQLite take the
#: write lock at BEGIN, so a read-then-write transaction waits for other writers instead of failing.
SQLITE_BEGIN_OPTION = "foldertrack_sqlite_begin"
_UPGRADE_LOCK_ID = 0x666F6C64  # "fold": serialises concurrent `db upgrade` runs on PostgreSQL


def mask_url(url: str | URL) -> str:
    """The URL as text with its password replaced by ``***``; safe for logs and messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except exc.ArgumentError:
        return "<unparseable database URL>"


def alembic_config() -> AlembicConfig:
    """Alembic configured in code from the migrations shipped in the package (no alembic.ini on disk)."""
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR).replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The schema revision this foldertrack needs."""
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "no migrations shipped"
    return head


def known_revisions() -> set[str]:
    return {rev.revision for rev in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def open_database(url: str, *, check_schema: bool = True) -> Engine:
    """Create the engine for ``url``; with ``check_schema`` also connect and require the head revision.

    SQLite gets WAL, a busy timeout, foreign keys and real transactions (BEGIN is emitted by SQLAlchemy so
    SAVEPOINTs work and reads see one snapshot); its directory is created. PostgreSQL gets pool_pre_ping.
    """
    parsed = _parse_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = _sqlite_engine(parsed)
    else:
        kwargs: dict[str, Any] = {"pool_pre_ping": True}
        if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "psycopg":
            kwargs["connect_args"] = {"connect_timeout": 10}
        engine = _create_engine(parsed, **kwargs)
    if check_schema:
        try:
            ensure_current(engine)
        except BaseException:
            engine.dispose()
            raise
    return engine


def current_revision(engine_or_conn: Engine | Connection) -> str | None:
    """The database's schema revision, or None for an empty database."""
    if isinstance(engine_or_conn, Connection):
        return MigrationContext.configure(engine_or_conn).get_current_revision()
    with _connect(engine_or_conn) as conn:
        return MigrationContext.configure(conn).get_current_revision()


def ensure_current(engine: Engine) -> str:
    """Raise SchemaOutOfDateError unless the database is at the head revision; returns it."""
    have, need = current_revision(engine), head_revision()
    if have != need:
        if have is not None and have not in known_revisions():
            raise SchemaOutOfDateError(
                f"database schema is at {have}, newer than this foldertrack (which needs {need}): "
                "upgrade foldertrack"
            )
        raise SchemaOutOfDateError(
            f"database schema is at {have or 'nothing (empty database)'}, this foldertrack needs {need}: "
            "run `foldertrack db upgrade`"
        )
    return have


def upgrade_database(url: str) -> tuple[str | None, str]:
    """Create or upgrade the schema to head in one transaction; returns ``(from_revision, to_revision)``."""
    engine = open_database(url, check_schema=False)
    try:
        with _connect(engine) as conn, conn.begin():
            if conn.dialect.name == "postgresql":
                conn.execute(text("SELECT pg_advisory_xact_lock(:id)"), {"id": _UPGRADE_LOCK_ID})
            before = current_revision(conn)
            if before is not None and before not in known_revisions():
                ensure_current(engine)  # raises "newer than this foldertrack"
            cfg = alembic_config()
            cfg.attributes["connection"] = conn
            try:
                command.upgrade(cfg, "head")
            except exc.DBAPIError as error:
                raise DatabaseError(
                    f"upgrading {mask_url(engine.url)} failed: {_reason(error, engine.url)}"
                ) from error
            after = current_revision(conn)
        assert after is not None
        log.info("database %s upgraded from %s to %s", mask_url(engine.url), before, after)
        return before, after
    finally:
        engine.dispose()


def _parse_url(url: str) -> URL:
    try:
        return make_url(url)
    except exc.ArgumentError:
        raise ConfigError(
            "database URL is not valid (expected e.g. sqlite:////var/lib/foldertrack/state.db "
            "or postgresql+psycopg://user@host/dbname)"
        ) from None


def _create_engine(url: URL, **kwargs: Any) -> Engine:
    try:
        return create_engine(url, **kwargs)
    except (exc.NoSuchModuleError, ModuleNotFoundError) as error:
        hint = " (install foldertrack[postgres])" if url.get_backend_name() == "postgresql" else ""
        raise ConfigError(f"no database driver for {mask_url(url)}: {error}{hint}") from None
    except exc.ArgumentError as error:
        raise ConfigError(f"database URL {mask_url(url)}: {error}") from None


def _sqlite_engine(url: URL) -> Engine:
    database = url.database or ""
    if database and database != ":memory:" and not database.startswith("file:"):
        try:
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise DatabaseError(f"cannot create the directory for {mask_url(url)}: {error}") from None
    engine = _create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None  # let SQLAlchemy emit BEGIN (pysqlite's own is broken)
        cursor = dbapi_conn.cursor()
        try:
            cursor.execute(f"PRAGMA busy_timeout = {SQLITE_BUSY_TIMEOUT_MS}")
            cursor.execute("PRAGMA foreign_keys = ON")
            if database and database != ":memory:":
                cursor.execute("PRAGMA journal_mode = WAL")
        finally:
            cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        immediate = str(conn.get_execution_options().get(SQLITE_BEGIN_OPTION, "")).lower() == "immediate"
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _connect(engine: Engine) -> Connection:
    try:
        return engine.connect()
    except exc.DBAPIError as error:
        raise DatabaseError(
            f"cannot connect to {mask_url(engine.url)}: {_reason(error, engine.url)}"
        ) from None


def _reason(error: exc.DBAPIError, url: URL | None = None) -> str:
    """The driver's first message line, with the URL's password scrubbed in case the driver echoed it."""
    reason = str(error.orig or error).strip().splitlines()
    first = reason[0] if reason else type(error).__name__
    password = (url or make_url("sqlite://")).password
    if password:
        first = first.replace(str(password), "***")
    return first
