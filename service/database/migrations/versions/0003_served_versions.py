"""Promotion and shadows: what each model serves, shared by every worker and replica of the log, the shadow
versions' decisions on logged requests, and a labelled prediction's shadow decision.

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "served_versions",
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64)),
        sa.Column("promoted_at", sa.DateTime(timezone=True)),
        sa.Column("shadow_version", sa.String(64)),
        sa.Column("shadow_set_at", sa.DateTime(timezone=True)),
        sa.PrimaryKeyConstraint("model", name="pk_served_versions"),
    )
    op.create_table(
        "shadow_predictions",
        sa.Column("key", sa.String(32), nullable=False),
        sa.Column("model", sa.String(256), nullable=False),
        sa.Column("version", sa.String(64), nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("decision_keys", sa.LargeBinary, nullable=False),
        sa.Column("confidence", sa.LargeBinary, nullable=False),
        sa.PrimaryKeyConstraint("key", name="pk_shadow_predictions"),
    )
    op.add_column("labels", sa.Column("shadow_version", sa.String(64)))
    op.add_column("labels", sa.Column("shadow_decision_key", sa.Text))
    op.add_column("labels", sa.Column("shadow_confidence", sa.Float))


def downgrade() -> None:
    with op.batch_alter_table("labels") as labels:  # SQLite drops a column by copying the table
        for column in ("shadow_confidence", "shadow_decision_key", "shadow_version"):
            labels.drop_column(column)
    op.drop_table("shadow_predictions")
    op.drop_table("served_versions")
