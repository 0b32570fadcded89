"""Feedback: the current label of each prediction, every label received, and business outcomes.

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "labels",
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("decision_key", sa.Text),
        sa.Column("confidence", sa.Float, nullable=False),
        sa.Column("truth_key", sa.Text, nullable=False),
        sa.Column("first_batch", sa.String(16), nullable=False),
        sa.Column("first_labelled_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("labelled_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", "row", name="pk_labels"),
    )
    op.create_index("ix_labels_model_predicted_at", "labels", ["model", "predicted_at"])
    op.create_index("ix_labels_first_batch", "labels", ["first_batch"])
    op.create_table(
        "label_history",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("truth_key", sa.Text, nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name="pk_label_history"),
    )
    op.create_index("ix_label_history_key_row", "label_history", ["key", "row"])
    op.create_table(
        "outcomes",
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("row", sa.Integer, nullable=False),
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("predicted_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("value", sa.Float, nullable=False),
        sa.Column("first_batch", sa.String(16), nullable=False),
        sa.Column("received_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("key", "row", "name", name="pk_outcomes"),
    )
    op.create_index("ix_outcomes_model_predicted_at", "outcomes", ["model", "predicted_at"])
    op.create_index("ix_outcomes_first_batch", "outcomes", ["first_batch"])


def downgrade() -> None:
    for table in ("outcomes", "label_history", "labels"):
        op.drop_table(table)
