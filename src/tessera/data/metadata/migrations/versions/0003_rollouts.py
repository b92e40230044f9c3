"""Rollouts of a candidate model version (A/B, canary, shadow) and their per-worker statistics.

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
        "rollouts",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("model", sa.String(255), nullable=False),
        sa.Column("strategy", sa.String(16), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("champion_version", sa.String(32)),
        sa.Column("candidate_version", sa.String(32), nullable=False),
        sa.Column("candidate_alias", sa.String(64)),
        sa.Column("step", sa.Integer, nullable=False),
        sa.Column("traffic", sa.Float, nullable=False),
        sa.Column("step_started", sa.Float, nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("ended", sa.Float),
        sa.Column("config", sa.JSON),
        sa.Column("reason", sa.Text),
        sa.Column("leader", sa.String(255)),
        sa.Column("lease_until", sa.Float),
    )
    op.create_index("ix_rollouts_model_state", "rollouts", ["model", "state"])
    op.create_index(
        "uq_rollouts_running",
        "rollouts",
        ["model"],
        unique=True,
        sqlite_where=sa.text("state = 'running'"),
        postgresql_where=sa.text("state = 'running'"),
    )
    op.create_table(
        "rollout_stats",
        sa.Column(
            "rollout_id",
            sa.String(32),
            sa.ForeignKey("rollouts.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("worker", sa.String(255), primary_key=True),
        sa.Column("step", sa.Integer, primary_key=True),
        sa.Column("variant", sa.String(16), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("latency_counts", sa.JSON, nullable=False),
        sa.Column("latency_sum", sa.Float, nullable=False),
        sa.Column("compared", sa.BigInteger, nullable=False),
        sa.Column("agreed", sa.BigInteger, nullable=False),
        sa.Column("updated", sa.Float, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("rollout_stats")
    op.drop_index("uq_rollouts_running", table_name="rollouts")
    op.drop_index("ix_rollouts_model_state", table_name="rollouts")
    op.drop_table("rollouts")
