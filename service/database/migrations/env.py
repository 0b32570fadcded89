"""Alembic's entry point: migrations run on the connection `service.database.engine.migrate` hands over."""

from __future__ import annotations

from alembic import context

from service.database.schema import metadata

connection = context.config.attributes["connection"]
# batch mode: SQLite alters a table by copying it, which Alembic does for us in batch operations
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
