"""Model registry audit trail: every registration, promotion, rollback and gate decision.

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
        "model_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("alias", sa.String(64)),
        sa.Column("version", sa.String(32)),
        sa.Column("previous", sa.String(32)),
        sa.Column("actor", sa.String(255)),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("reason", sa.Text),
        sa.Column("details", sa.JSON),
        sa.Column("run_id", sa.String(40)),
    )
    op.create_index("ix_model_events_model_at", "model_events", ["model", "at"])


def downgrade() -> None:
    op.drop_index("ix_model_events_model_at", table_name="model_events")
    op.drop_table("model_events")
