"""The state store: SQLAlchemy tables, Alembic migrations, and the record directory.

One database holds the watcher's state (tracked folders, ledger, dead letters, subscription health, leases)
and, for the default SQL sink, the activities themselves, so both commit in one transaction.
"""
