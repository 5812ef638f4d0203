"""Alembic migrations for the state store; run them with ``foldertrack db upgrade``."""
