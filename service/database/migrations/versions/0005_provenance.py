"""Provenance: the caller (API key name) of each prediction request, label and outcome, and voided labels.

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

CALLER = 64  # schema.CALLER_LENGTH: a migration keeps the sizes it was written with


def upgrade() -> None:
    for table in ("prediction_requests", "labels", "label_history", "outcomes"):
        op.add_column(table, sa.Column("caller", sa.String(CALLER)))  # NULL: sent before 0005, or without keys
    op.add_column("label_history", sa.Column("voided_at", sa.DateTime(timezone=True)))


def downgrade() -> None:
    """Voided labels stay in the history, no longer marked; the current labels stay those the voids left."""
    with op.batch_alter_table("label_history") as history:  # SQLite drops a column by copying the table
        history.drop_column("voided_at")
    for table in ("outcomes", "label_history", "labels", "prediction_requests"):
        with op.batch_alter_table(table) as altered:
            altered.drop_column("caller")
