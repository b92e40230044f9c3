"""Alembic environment: migrations run on the connection Tessera hands over."""

from __future__ import annotations

from alembic import context

from tessera.data.metadata.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:  # pragma: no cover - only Tessera runs these migrations
    raise RuntimeError("Tessera's migrations run through tessera.data.metadata.migrate()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
