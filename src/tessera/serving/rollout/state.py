"""Rollout state in the metadata store: the ``rollouts`` row every worker and replica reads, the
per-worker ``rollout_stats`` they write, the leader lease, and the audit trail of decisions.

Every change of a running rollout is a conditional ``UPDATE`` (``WHERE state = 'running' AND
step = ...``), so two workers (or a worker and the command line) can never both act on it: the
second finds no row to change.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from functools import cached_property
from typing import Any

from tessera.data.errors import DataError
from tessera.data.metadata import MetadataStore
from tessera.errors import TesseraError
from tessera.serving.config import RolloutConfig
from tessera.serving.rollout.stats import VariantStats, merge

RUNNING, PROMOTED, ROLLED_BACK, ABORTED = "running", "promoted", "rolled_back", "aborted"
STATES = (RUNNING, PROMOTED, ROLLED_BACK, ABORTED)
#: Variants: who answered a request ("shadow": the candidate scoring a mirrored request).
CHAMPION, CANDIDATE, SHADOW = "champion", "candidate", "shadow"
#: Actions of the rollout decisions in the model audit trail (``model_events``).
START, STEP, PROMOTE, ROLLBACK, ABORT = (
    "rollout_start",
    "rollout_step",
    "rollout_promote",
    "rollout_rollback",
    "rollout_abort",
)
ACTIONS = (START, STEP, PROMOTE, ROLLBACK, ABORT)


class RolloutError(TesseraError):
    """A rollout command that cannot be done: one is already running, none is, no candidate."""

    exit_code = 2


@dataclass(frozen=True)
class Rollout:
    """One rollout of a candidate version of a model, as stored in ``rollouts``.

    Attributes:
        id: uuid4 hex; also salts the router's hash, so a new rollout reshuffles the keys.
        strategy: ``ab``, ``canary`` or ``shadow``.
        state: ``running``, ``promoted``, ``rolled_back`` or ``aborted``.
        step: the canary step, from 1 (always 1 for A/B and shadow).
        traffic: percent of requests answered by the candidate (shadow: mirrored to it); 0 once
            rolled back or aborted.
        config: the :class:`RolloutConfig` it runs with, as JSON (see :attr:`settings`).
        reason: why it ended.
        leader: the worker holding the judging lease, until ``lease_until``.
    """

    id: str
    model: str
    strategy: str
    state: str
    champion_version: str | None
    candidate_version: str
    candidate_alias: str | None
    step: int
    traffic: float
    step_started: float
    started: float
    ended: float | None
    config: dict[str, Any]
    reason: str | None = None
    leader: str | None = None
    lease_until: float | None = None

    @cached_property
    def settings(self) -> RolloutConfig:
        """The rollout configuration it was started with."""
        return RolloutConfig.model_validate(self.config)

    @property
    def running(self) -> bool:
        return self.state == RUNNING

    @property
    def steps(self) -> int:
        """How many steps it has (canary: the configured steps; others: one)."""
        return len(self.settings.canary.steps) if self.strategy == "canary" else 1

    def describe(self) -> str:
        """E.g. ``canary step 2/4 at 25%``, ``A/B at 50%``, ``shadow of 100%``."""
        if self.strategy == "canary":
            return f"canary step {self.step}/{self.steps} at {self.traffic:g}%"
        if self.strategy == "ab":
            return f"A/B at {self.traffic:g}%"
        return f"shadow of {self.traffic:g}%"

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _rollout(row: Mapping[str, Any]) -> Rollout:
    return Rollout(**{k: row[k] for k in Rollout.__dataclass_fields__})


def running_rollout(store: MetadataStore, model: str) -> Rollout | None:
    """The running rollout of ``model``, if any."""
    import sqlalchemy as sa

    from tessera.data.metadata.schema import rollouts

    if not store.exists():
        return None
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(rollouts).where((rollouts.c.model == model) & (rollouts.c.state == RUNNING))
        ).first()
    return _rollout(row._mapping) if row is not None else None


def latest_rollout(store: MetadataStore, model: str) -> Rollout | None:
    """The running rollout of ``model``, else the one that started last."""
    import sqlalchemy as sa

    from tessera.data.metadata.schema import rollouts

    found = running_rollout(store, model)
    if found is not None or not store.exists():
        return found
    with store.engine.connect() as conn:
        row = conn.execute(
            sa.select(rollouts)
            .where(rollouts.c.model == model)
            .order_by(rollouts.c.started.desc())
            .limit(1)
        ).first()
    return _rollout(row._mapping) if row is not None else None


def get_rollout(store: MetadataStore, rollout_id: str) -> Rollout | None:
    import sqlalchemy as sa

    from tessera.data.metadata.schema import rollouts

    with store.engine.connect() as conn:
        row = conn.execute(sa.select(rollouts).where(rollouts.c.id == rollout_id)).first()
    return _rollout(row._mapping) if row is not None else None


def insert_rollout(store: MetadataStore, rollout: Rollout) -> bool:
    """Store a new running rollout; False when one of its model is already running."""
    from sqlalchemy.exc import DBAPIError, IntegrityError

    from tessera.data.metadata.schema import rollouts

    try:
        with store.engine.begin() as conn:
            conn.execute(rollouts.insert().values(**rollout.to_dict()))
    except IntegrityError:  # uq_rollouts_running: another one started first
        return False
    except DBAPIError as exc:
        raise DataError(f"cannot write to the metadata store: {exc.orig}") from None
    return True


def update_running(store: MetadataStore, rollout: Rollout, **values: Any) -> bool:
    """Change a running rollout if it is still running at the step it was read at.

    Returns:
        False when it changed meanwhile (another worker or a command acted first).
    """
    from tessera.data.metadata.schema import rollouts

    with store.transaction() as conn:
        result = conn.execute(
            rollouts.update()
            .where(
                (rollouts.c.id == rollout.id)
                & (rollouts.c.state == RUNNING)
                & (rollouts.c.step == rollout.step)
            )
            .values(**values)
        )
    return bool(result.rowcount == 1)


def acquire_lease(
    store: MetadataStore, rollout: Rollout, worker: str, now: float, seconds: float
) -> bool:
    """Take (or renew) the judging lease of a running rollout: True for the one worker holding
    it. A lease that was not renewed for ``seconds`` goes to the next worker that asks."""
    from tessera.data.metadata.schema import rollouts

    c = rollouts.c
    with store.transaction() as conn:
        result = conn.execute(
            rollouts.update()
            .where(
                (c.id == rollout.id)
                & (c.state == RUNNING)
                & ((c.leader == worker) | c.leader.is_(None) | (c.lease_until < now))
            )
            .values(leader=worker, lease_until=now + seconds)
        )
    return bool(result.rowcount == 1)


def write_stats(
    store: MetadataStore,
    rollout_id: str,
    worker: str,
    step: int,
    stats: Mapping[str, VariantStats],
    now: float | None = None,
) -> None:
    """Upsert one worker's cumulative counters of one step (one row per variant)."""
    from tessera.data.metadata.schema import rollout_stats
    from tessera.data.metadata.store import upsert

    now = time.time() if now is None else now
    with store.transaction() as conn:
        for variant, s in stats.items():
            upsert(
                conn,
                rollout_stats,
                {
                    "rollout_id": rollout_id,
                    "worker": worker,
                    "step": step,
                    "variant": variant,
                    "requests": s.requests,
                    "errors": s.errors,
                    "latency_counts": list(s.latency_counts),
                    "latency_sum": s.latency_sum,
                    "compared": s.compared,
                    "agreed": s.agreed,
                    "updated": now,
                },
                ("rollout_id", "worker", "step", "variant"),
            )


def read_stats(
    store: MetadataStore, rollout_id: str, step: int | None = None
) -> dict[str, VariantStats]:
    """Variant -> counters of a rollout summed over workers (over one step, or all of them)."""
    import sqlalchemy as sa

    from tessera.data.metadata.schema import rollout_stats

    query = sa.select(rollout_stats).where(rollout_stats.c.rollout_id == rollout_id)
    if step is not None:
        query = query.where(rollout_stats.c.step == step)
    with store.engine.connect() as conn:
        rows = conn.execute(query).all()
    return merge(
        [
            {
                r.variant: VariantStats.from_counts(
                    r.requests, r.errors, r.latency_counts, r.latency_sum, r.compared, r.agreed
                )
            }
            for r in rows
        ]
    )


def workers(store: MetadataStore, rollout_id: str) -> list[dict[str, Any]]:
    """The workers that reported statistics of a rollout, with when they last did."""
    import sqlalchemy as sa

    from tessera.data.metadata.schema import rollout_stats

    c = rollout_stats.c
    with store.engine.connect() as conn:
        rows = conn.execute(
            sa.select(c.worker, sa.func.max(c.updated).label("updated"))
            .where(c.rollout_id == rollout_id)
            .group_by(c.worker)
            .order_by(c.worker)
        ).all()
    return [{"worker": r.worker, "updated": r.updated} for r in rows]


def record_decision(
    store: MetadataStore,
    rollout: Rollout,
    action: str,
    *,
    actor: str | None,
    reason: str | None,
    details: Mapping[str, Any],
    at: float | None = None,
) -> None:
    """Append a rollout decision to the model's audit trail (with the numbers behind it)."""
    store.record_model_event(
        rollout.model,
        action,
        version=rollout.candidate_version,
        previous=rollout.champion_version,
        actor=actor,
        reason=reason,
        details={"rollout_id": rollout.id, "strategy": rollout.strategy, **details},
        **({"at": at} if at is not None else {}),
    )


def decisions(store: MetadataStore, rollout: Rollout) -> list[dict[str, Any]]:
    """The recorded decisions of one rollout, oldest first (plain dicts: str keys)."""
    return [
        {str(k): v for k, v in e.items()}  # SQLAlchemy's keys are a str subclass
        for e in store.model_events(rollout.model, actions=ACTIONS)
        if (e.get("details") or {}).get("rollout_id") == rollout.id
    ]
