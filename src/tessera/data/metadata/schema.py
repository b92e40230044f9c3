"""Tables of the metadata store (SQLAlchemy Core). Changes need an Alembic migration."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
    text,
)

metadata = MetaData()

runs = Table(
    "runs",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("pipeline", String(255), nullable=False),
    Column("started", Float, nullable=False),
    Column("ended", Float),
    Column("status", String(16), nullable=False),
    Column("command", Text),
    Column("executor", String(16)),
    Column("env", String(255)),
    Column("git_commit", String(64)),
    Column("git_dirty", Boolean),
    Column("host", String(255)),
    Column("user", String(255)),
)

stage_runs = Table(
    "stage_runs",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("run_id", String(40), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("stage", String(255), nullable=False),
    Column("status", String(16), nullable=False),
    Column("key", String(32)),
    Column("uses", String(255)),
    Column("code_hash", String(32)),
    Column("config_hash", String(32)),
    Column("config", JSON),
    Column("versions", JSON),
    Column("started", Float),
    Column("duration", Float),
    Column("host", String(255)),
    Column("error", Text),
    Column("log", Text),
    Column("report", String(32)),
    UniqueConstraint("run_id", "stage", name="uq_stage_runs_run_stage"),
    Index("ix_stage_runs_stage_started", "stage", "started"),
)

stage_outputs = Table(
    "stage_outputs",
    metadata,
    Column(
        "stage_run_id", Integer, ForeignKey("stage_runs.id", ondelete="CASCADE"), nullable=False
    ),
    Column("output", String(255), nullable=False),
    Column("fingerprint", String(32), nullable=False),
    Column("rows", BigInteger),
    Column("columns", Integer),
    Index("ix_stage_outputs_fingerprint", "fingerprint"),
    Index("ix_stage_outputs_stage_run", "stage_run_id"),
)

stage_inputs = Table(
    "stage_inputs",
    metadata,
    Column(
        "stage_run_id", Integer, ForeignKey("stage_runs.id", ondelete="CASCADE"), nullable=False
    ),
    Column("position", Integer, nullable=False),
    Column("ref", String(512), nullable=False),
    Column("fingerprint", String(32), nullable=False),
    Index("ix_stage_inputs_stage_run", "stage_run_id"),
)

stage_files = Table(
    "stage_files",
    metadata,
    Column(
        "stage_run_id", Integer, ForeignKey("stage_runs.id", ondelete="CASCADE"), nullable=False
    ),
    Column("role", String(8), nullable=False),  # "in": read by the stage, "out": written by it
    Column("path", String(1024), nullable=False),
    Column("hash", String(32), nullable=False),
    Index("ix_stage_files_stage_run", "stage_run_id"),
    Index("ix_stage_files_path", "path"),
    Index("ix_stage_files_hash", "hash"),
)

model_events = Table(
    "model_events",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("model", String(255), nullable=False),
    Column("action", String(32), nullable=False),  # register, promote, rollback, gate
    Column("alias", String(64)),
    Column("version", String(32)),
    Column("previous", String(32)),  # the version the alias pointed to before
    Column("actor", String(255)),
    Column("at", Float, nullable=False),
    Column("reason", Text),
    Column("details", JSON),  # the numbers behind the decision
    Column("run_id", String(40)),  # the pipeline run, when a stage did it
    Index("ix_model_events_model_at", "model", "at"),
)

rollouts = Table(
    "rollouts",
    metadata,
    Column("id", String(32), primary_key=True),  # uuid4 hex
    Column("model", String(255), nullable=False),
    Column("strategy", String(16), nullable=False),  # ab, canary, shadow
    Column("state", String(16), nullable=False),  # running, promoted, rolled_back, aborted
    Column("champion_version", String(32)),
    Column("candidate_version", String(32), nullable=False),
    Column("candidate_alias", String(64)),
    Column("step", Integer, nullable=False),  # canary step, from 0
    Column("traffic", Float, nullable=False),  # percent to the candidate (shadow: mirrored)
    Column("step_started", Float, nullable=False),
    Column("started", Float, nullable=False),
    Column("ended", Float),
    Column("config", JSON),  # the RolloutConfig it runs with
    Column("reason", Text),  # why it ended
    Column("leader", String(255)),  # the worker judging it
    Column("lease_until", Float),
    Index("ix_rollouts_model_state", "model", "state"),
    # At most one running rollout per model, even when two start at once.
    Index(
        "uq_rollouts_running",
        "model",
        unique=True,
        sqlite_where=text("state = 'running'"),
        postgresql_where=text("state = 'running'"),
    ),
)

rollout_stats = Table(
    "rollout_stats",
    metadata,
    Column(
        "rollout_id",
        String(32),
        ForeignKey("rollouts.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("worker", String(255), primary_key=True),  # host:pid of the server worker
    Column("step", Integer, primary_key=True),
    Column("variant", String(16), primary_key=True),  # champion, candidate, shadow
    # Cumulative counters of one worker in one step: each worker upserts its own row.
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("latency_counts", JSON, nullable=False),  # per LATENCY_BUCKETS_MS bucket
    Column("latency_sum", Float, nullable=False),  # seconds
    Column("compared", BigInteger, nullable=False),  # shadow: predictions compared...
    Column("agreed", BigInteger, nullable=False),  # ...and equal to the champion's
    Column("updated", Float, nullable=False),
)
