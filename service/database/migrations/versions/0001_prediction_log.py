"""The prediction log: one row per /predict request, their count per minute, and the model versions that served them.

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "prediction_requests",
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("request_id", sa.String(256)),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("decision_keys", sa.LargeBinary, nullable=False),
        sa.Column("confidence", sa.LargeBinary, nullable=False),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("decisions", sa.Text, nullable=False),
        sa.Column("inputs", sa.LargeBinary),
        sa.PrimaryKeyConstraint("key", name="pk_prediction_requests"),
    )
    op.create_table(
        "prediction_counts",
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("minute", sa.DateTime(timezone=True), nullable=False),
        sa.Column("rows", sa.BigInteger, nullable=False),
        sa.PrimaryKeyConstraint("model", "version", "minute", name="pk_prediction_counts"),
    )
    op.create_table(
        "model_versions",
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("task", sa.String(256), nullable=False),
        sa.Column("metadata", sa.Text, nullable=False),
        sa.Column("first_served_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("model", "version", name="pk_model_versions"),
    )


def downgrade() -> None:
    op.drop_table("model_versions")
    op.drop_table("prediction_counts")
    op.drop_table("prediction_requests")
