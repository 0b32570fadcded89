"""Alembic revisions of the prediction log, applied at start-up by `service.database.engine.migrate`."""
