"""The first metadata schema: runs, stage runs, their outputs, inputs and files.

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
        "runs",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("pipeline", sa.String(255), nullable=False),
        sa.Column("started", sa.Float, nullable=False),
        sa.Column("ended", sa.Float),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("command", sa.Text),
        sa.Column("executor", sa.String(16)),
        sa.Column("env", sa.String(255)),
        sa.Column("git_commit", sa.String(64)),
        sa.Column("git_dirty", sa.Boolean),
        sa.Column("host", sa.String(255)),
        sa.Column("user", sa.String(255)),
    )
    op.create_table(
        "stage_runs",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.String(40), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("stage", sa.String(255), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("key", sa.String(32)),
        sa.Column("uses", sa.String(255)),
        sa.Column("code_hash", sa.String(32)),
        sa.Column("config_hash", sa.String(32)),
        sa.Column("config", sa.JSON),
        sa.Column("versions", sa.JSON),
        sa.Column("started", sa.Float),
        sa.Column("duration", sa.Float),
        sa.Column("host", sa.String(255)),
        sa.Column("error", sa.Text),
        sa.Column("log", sa.Text),
        sa.Column("report", sa.String(32)),
        sa.UniqueConstraint("run_id", "stage", name="uq_stage_runs_run_stage"),
    )
    op.create_index("ix_stage_runs_stage_started", "stage_runs", ["stage", "started"])
    for name, columns in (
        (
            "stage_outputs",
            [
                sa.Column("output", sa.String(255), nullable=False),
                sa.Column("fingerprint", sa.String(32), nullable=False),
                sa.Column("rows", sa.BigInteger),
                sa.Column("columns", sa.Integer),
            ],
        ),
        (
            "stage_inputs",
            [
                sa.Column("position", sa.Integer, nullable=False),
                sa.Column("ref", sa.String(512), nullable=False),
                sa.Column("fingerprint", sa.String(32), nullable=False),
            ],
        ),
        (
            "stage_files",
            [
                sa.Column("role", sa.String(8), nullable=False),
                sa.Column("path", sa.String(1024), nullable=False),
                sa.Column("hash", sa.String(32), nullable=False),
            ],
        ),
    ):
        op.create_table(
            name,
            sa.Column(
                "stage_run_id",
                sa.Integer,
                sa.ForeignKey("stage_runs.id", ondelete="CASCADE"),
                nullable=False,
            ),
            *columns,
        )
        op.create_index(f"ix_{name}_stage_run", name, ["stage_run_id"])
    op.create_index("ix_stage_outputs_fingerprint", "stage_outputs", ["fingerprint"])
    op.create_index("ix_stage_files_path", "stage_files", ["path"])
    op.create_index("ix_stage_files_hash", "stage_files", ["hash"])


def downgrade() -> None:
    for name in ("stage_files", "stage_inputs", "stage_outputs", "stage_runs", "runs"):
        op.drop_table(name)
