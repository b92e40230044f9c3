"""The rollout as one server worker runs it: the router on the request path, its statistics,
and the tick that shares them, follows the shared state and, on the leader, judges the canary.

Routing is consistent hashing of the request's sticky key salted with the rollout id:
``bucket = xxh64("{rollout_id}:{key}") / 2**64``, and the candidate answers iff ``bucket * 100 <
traffic``. Every worker, replica and restart sends a key to the same variant, a key on the
candidate stays there as a canary's traffic grows, and a new rollout reshuffles the keys.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from xxhash import xxh64_intdigest

from tessera.data.metadata import MetadataStore
from tessera.serving.config import RolloutConfig
from tessera.serving.rollout.gates import Decision, Quality, judge_canary
from tessera.serving.rollout.ops import finish, metric_of, online, version_facts
from tessera.serving.rollout.state import (
    CANDIDATE,
    CHAMPION,
    PROMOTE,
    PROMOTED,
    ROLLBACK,
    ROLLED_BACK,
    STEP,
    Rollout,
    acquire_lease,
    read_stats,
    record_decision,
    running_rollout,
    update_running,
    write_stats,
)
from tessera.serving.rollout.stats import StatsRecorder

if TYPE_CHECKING:
    from tessera.registry.models import ModelRegistry

#: The judging lease lasts this many ticks: a leader that stops ticking is replaced after it.
LEASE_TICKS = 5
_SPAN = 2**64


def bucket(rollout_id: str, key: str) -> float:
    """Where ``key`` falls in [0, 1) for a rollout: the candidate's share starts at 0."""
    return xxh64_intdigest(f"{rollout_id}:{key}".encode()) / _SPAN


def _threshold(traffic: float) -> int:
    """``xxh64 < threshold`` iff ``bucket * 100 < traffic``."""
    return int(traffic / 100 * _SPAN)


class RolloutRuntime:
    """One worker's side of the rollouts of one model.

    Args:
        store: the metadata store holding the shared rollout state.
        registry: moves the champion alias when the canary is promoted.
        model: the registered model's name.
        config: ``rollout`` of serving.yaml (its ``tick_seconds`` sets the lease).
        worker: this worker's identity, ``host:pid``.
        log_dir: the prediction log directory (online quality), or None without one.

    Attributes:
        current: the running rollout of the model, as of the last :meth:`tick`.
        leader: whether this worker judged the canary at the last tick.
    """

    def __init__(
        self,
        store: MetadataStore,
        registry: ModelRegistry,
        model: str,
        config: RolloutConfig,
        *,
        worker: str,
        log_dir: Path | None,
    ) -> None:
        self.store = store
        self.registry = registry
        self.model = model
        self.config = config
        self.worker = worker
        self.log_dir = log_dir
        self.current: Rollout | None = None
        self.leader = False
        self._routing: tuple[str, int] | None = None  # (salt, threshold): A/B and canary
        self._mirroring: tuple[str, int] | None = None  # shadow
        self._recorder: StatsRecorder | None = None
        self._unwritten: list[StatsRecorder] = []  # ended steps whose last counts wait
        self._written: dict[int, int] = {}  # id(recorder) -> changes written
        self._facts: dict[str, tuple[str | None, Any]] = {}  # rollout id -> (task, classes)
        self._last_error: str | None = None

    # -- the request path --------------------------------------------------------------------
    def route(self, key: str | None, request_id: str) -> str:
        """``candidate`` or ``champion`` for a request (A/B and canary; lock-free)."""
        routing = self._routing
        if routing is None:
            return CHAMPION
        salt, threshold = routing
        return (
            CANDIDATE
            if xxh64_intdigest((salt + (key or request_id)).encode()) < threshold
            else CHAMPION
        )

    def mirror(self, key: str | None, request_id: str) -> bool:
        """Whether a shadow rollout mirrors this request to the candidate."""
        mirroring = self._mirroring
        if mirroring is None:
            return False
        salt, threshold = mirroring
        return xxh64_intdigest((salt + (key or request_id)).encode()) < threshold

    def record(self, variant: str, seconds: float, error: bool) -> None:
        """Count a request answered (or failed) by ``variant`` in ``seconds``."""
        recorder = self._recorder
        if recorder is not None:
            recorder.record(variant, seconds, error)

    def record_agreement(self, agree: bool) -> None:
        """Count a shadow prediction that agreed (or not) with the champion's."""
        recorder = self._recorder
        if recorder is not None:
            recorder.record_agreement(agree)

    # -- the control loop --------------------------------------------------------------------
    def tick(self, now: float | None = None) -> None:
        """Share this worker's statistics, follow the running rollout and, as the canary's
        leader, judge it and act. Never raises: a failure is reported on stderr (once while it
        lasts) and the next tick tries again."""
        now = time.time() if now is None else now
        try:
            self._tick(now)
        except Exception as exc:
            text = " ".join(str(exc).split())  # one line, whatever the driver said
            message = f"rollout of {self.model}: {type(exc).__name__}: {text}"
            if message != self._last_error:
                print(
                    f"tessera serve ({self.worker}): {message}; retrying every tick",
                    file=sys.stderr,
                    flush=True,
                )
            self._last_error = message
        else:
            self._last_error = None

    def _tick(self, now: float) -> None:
        self._write(now)
        rollout = running_rollout(self.store, self.model)
        self._follow(rollout, now)
        self.leader = False
        if rollout is None or rollout.strategy != "canary":
            return
        lease = LEASE_TICKS * self.config.tick_seconds
        self.leader = acquire_lease(self.store, rollout, self.worker, now, lease)
        if not self.leader:
            return
        decision = self.judge(rollout, now)
        if decision.action != "wait":
            self._act(rollout, decision, now)
            self._follow(running_rollout(self.store, self.model), now)

    def _follow(self, rollout: Rollout | None, now: float) -> None:
        """Route by ``rollout`` from now on; count into a new recorder when its step began."""
        if rollout is None:
            self._routing = self._mirroring = None
        else:
            plan = (f"{rollout.id}:", _threshold(rollout.traffic))
            shadow = rollout.strategy == "shadow"
            self._routing, self._mirroring = (None, plan) if shadow else (plan, None)
        previous = self._recorder
        key = (rollout.id, rollout.step) if rollout is not None else None
        if previous is None or (previous.rollout_id, previous.step) != key:
            self._recorder = StatsRecorder(*key) if key is not None else None
            if previous is not None:
                self._unwritten.append(previous)
                self._write(now)
        self.current = rollout

    def _write(self, now: float) -> None:
        """Upsert the counters that changed since they were last written."""
        recorders = [*self._unwritten, *([self._recorder] if self._recorder else [])]
        for recorder in recorders:
            changes, stats = recorder.snapshot()
            if changes != self._written.get(id(recorder), 0):
                write_stats(self.store, recorder.rollout_id, self.worker, recorder.step, stats, now)
                self._written[id(recorder)] = changes
            if recorder in self._unwritten:
                self._unwritten.remove(recorder)
                self._written.pop(id(recorder), None)

    def judge(self, rollout: Rollout, now: float) -> Decision:
        """The canary decision on the step's statistics of every worker; the online quality is
        read (from the prediction log) only when every other gate passed."""
        stats = read_stats(self.store, rollout.id, rollout.step)
        decision = judge_canary(rollout, stats, None, now)
        if decision.action in ("advance", "promote") and self.log_dir is not None:
            decision = judge_canary(rollout, stats, self._quality(rollout), now)
        return decision

    def _quality(self, rollout: Rollout) -> dict[str, Quality] | None:
        if rollout.id not in self._facts:
            self._facts = {
                rollout.id: version_facts(self.registry, self.model, rollout.candidate_version)
            }
        task, classes = self._facts[rollout.id]
        return online(self.log_dir, rollout, task, classes, metric_of(rollout, task))

    def _act(self, rollout: Rollout, decision: Decision, now: float) -> None:
        actor = f"tessera serve ({self.worker})"
        if decision.action == "advance":
            step = rollout.step + 1
            traffic = rollout.settings.canary.steps[step - 1].traffic
            if update_running(self.store, rollout, step=step, traffic=traffic, step_started=now):
                details = {**decision.details, "next_step": step, "next_traffic": traffic}
                record_decision(
                    self.store,
                    rollout,
                    STEP,
                    actor=actor,
                    reason=decision.reason,
                    details=details,
                    at=now,
                )
            return
        promote = decision.action == "promote"
        finish(
            self.store,
            self.registry,
            rollout,
            PROMOTED if promote else ROLLED_BACK,
            action=PROMOTE if promote else ROLLBACK,
            reason=decision.reason,
            actor=actor,
            details=decision.details,
            now=now,
        )
