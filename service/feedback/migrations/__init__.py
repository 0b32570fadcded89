"""Alembic revisions of the prediction log, applied at start-up by `service.feedback.database.migrate`."""
