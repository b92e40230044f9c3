"""Rollouts of a candidate model version: A/B, canary and shadow.

The state lives in the metadata store (``rollouts``, ``rollout_stats``; decisions in the model
audit trail), so every worker and replica of ``tessera serve`` and the ``tessera rollout``
command share it:

- :mod:`~tessera.serving.rollout.state`: the stored rollout, conditional updates, the lease;
- :mod:`~tessera.serving.rollout.stats`: per-variant counters and latency buckets;
- :mod:`~tessera.serving.rollout.gates`: the canary gates and the A/B significance test;
- :mod:`~tessera.serving.rollout.ops`: start, promote, abort, status (CLI and admin API);
- :mod:`~tessera.serving.rollout.runtime`: a worker's router, recorder and control tick.
"""

from tessera.serving.rollout.gates import Decision, Quality, compare_ab, judge_canary
from tessera.serving.rollout.ops import (
    abort_rollout,
    promote_rollout,
    rollout_status,
    start_rollout,
)
from tessera.serving.rollout.runtime import RolloutRuntime, bucket
from tessera.serving.rollout.state import (
    ACTIONS,
    CANDIDATE,
    CHAMPION,
    SHADOW,
    STATES,
    Rollout,
    RolloutError,
)
from tessera.serving.rollout.stats import LATENCY_BUCKETS_MS, StatsRecorder, VariantStats

__all__ = [
    "ACTIONS",
    "CANDIDATE",
    "CHAMPION",
    "LATENCY_BUCKETS_MS",
    "SHADOW",
    "STATES",
    "Decision",
    "Quality",
    "Rollout",
    "RolloutError",
    "RolloutRuntime",
    "StatsRecorder",
    "VariantStats",
    "abort_rollout",
    "bucket",
    "compare_ab",
    "judge_canary",
    "promote_rollout",
    "rollout_status",
    "start_rollout",
]
