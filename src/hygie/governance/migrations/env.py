"""Alembic environment: migrations run on the connection ``hygie.governance.store`` hands over (never from an
alembic.ini), so the same code upgrades SQLite and PostgreSQL, at open or with ``hygie admin migrate``."""

from __future__ import annotations

from alembic import context

from hygie.governance.models import Base

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("hygie's migrations run through hygie.governance.store.migrate, with a connection")
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
