"""Alembic environment: always online, on the connection :func:`foldertrack.state.database.upgrade_database`
passes in ``config.attributes["connection"]`` (no alembic.ini, no URL in a config file)."""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection

from foldertrack.state.schema import metadata

config = context.config


def run_migrations(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=metadata,
        compare_type=True,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite needs copy-and-move for ALTER
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    raise RuntimeError("foldertrack migrations run online only: use `foldertrack db upgrade`")

_connection = config.attributes.get("connection")
if _connection is None:
    # Developer use (`alembic -x url=... revision --autogenerate`): open the URL given with -x.
    from foldertrack.state.database import open_database

    _url = context.get_x_argument(as_dictionary=True).get("url")
    if not _url:
        raise RuntimeError("pass the database URL with `alembic -x url=...`")
    _engine = open_database(_url, check_schema=False)
    try:
        with _engine.begin() as conn:
            run_migrations(conn)
    finally:
        _engine.dispose()
else:
    run_migrations(_connection)
