"""Per-variant request statistics of a rollout: recorded cheaply in each worker, merged across
workers from the metadata store.

Latencies are counted in fixed buckets (:data:`LATENCY_BUCKETS_MS`), so the counts of any number
of workers add up, and percentiles are estimated from the merged counts the way Prometheus'
``histogram_quantile`` does: linear interpolation inside the bucket that holds the rank (a
latency above the last finite bound is reported as that bound, 10 s).
"""

from __future__ import annotations

import math
import threading
from bisect import bisect_left
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

#: Upper bounds of the latency buckets, in milliseconds (the last one catches everything).
LATENCY_BUCKETS_MS: tuple[float, ...] = (
    0.25, 0.5, 1, 2, 3, 5, 7.5, 10, 15, 20, 30, 50, 75, 100,
    150, 200, 300, 500, 750, 1000, 2000, 5000, 10000, math.inf,
)  # fmt: skip
_BOUNDS_S = tuple(b / 1000 for b in LATENCY_BUCKETS_MS)
_EMPTY = (0,) * len(LATENCY_BUCKETS_MS)


@dataclass(frozen=True)
class VariantStats:
    """Counters of one variant (summed over workers, and over steps when asked).

    Attributes:
        requests: requests answered (or failed) by the variant.
        errors: the ones that failed.
        latency_counts: requests per bucket of :data:`LATENCY_BUCKETS_MS`.
        latency_sum: total latency in seconds.
        compared: shadow only: predictions compared with the champion's...
        agreed: ...and how many were equal.
    """

    requests: int = 0
    errors: int = 0
    latency_counts: tuple[int, ...] = _EMPTY
    latency_sum: float = 0.0
    compared: int = 0
    agreed: int = 0

    def __add__(self, other: VariantStats) -> VariantStats:
        return VariantStats(
            self.requests + other.requests,
            self.errors + other.errors,
            tuple(a + b for a, b in zip(self.latency_counts, other.latency_counts, strict=True)),
            self.latency_sum + other.latency_sum,
            self.compared + other.compared,
            self.agreed + other.agreed,
        )

    @classmethod
    def from_counts(
        cls,
        requests: int,
        errors: int,
        latency_counts: Sequence[int],
        latency_sum: float,
        compared: int = 0,
        agreed: int = 0,
    ) -> VariantStats:
        """Counters read back from the store (a bucket list of another length is refused)."""
        counts = tuple(int(c) for c in latency_counts)
        if len(counts) != len(LATENCY_BUCKETS_MS):
            raise ValueError(
                f"{len(counts)} latency buckets, expected {len(LATENCY_BUCKETS_MS)}: statistics "
                "written by another version of Tessera"
            )
        return cls(int(requests), int(errors), counts, float(latency_sum), compared, agreed)

    @property
    def error_rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def agreement(self) -> float | None:
        return self.agreed / self.compared if self.compared else None

    @property
    def mean_ms(self) -> float | None:
        total = sum(self.latency_counts)
        return self.latency_sum * 1000 / total if total else None

    def quantile_ms(self, q: float) -> float | None:
        """The ``q`` quantile of the latency in ms, estimated from the buckets (None: no data).

        Linear interpolation between the bounds of the bucket holding rank ``q * n`` (the first
        bucket starts at 0); beyond the last finite bound, that bound.
        """
        total = sum(self.latency_counts)
        if not total:
            return None
        rank = q * total
        seen = 0
        for i, count in enumerate(self.latency_counts):
            if count and seen + count >= rank:
                upper = LATENCY_BUCKETS_MS[i]
                lower = LATENCY_BUCKETS_MS[i - 1] if i else 0.0
                if math.isinf(upper):
                    return lower
                return lower + (upper - lower) * (rank - seen) / count
            seen += count
        return LATENCY_BUCKETS_MS[-2]  # pragma: no cover - rank <= total always stops above

    def summary(self) -> dict[str, Any]:
        """The numbers shown and recorded: requests, errors, error rate, p50, p99, mean."""
        out: dict[str, Any] = {
            "requests": self.requests,
            "errors": self.errors,
            "error_rate": self.error_rate,
            "p50_ms": _round(self.quantile_ms(0.5)),
            "p99_ms": _round(self.quantile_ms(0.99)),
            "mean_ms": _round(self.mean_ms),
        }
        if self.compared:
            out.update(compared=self.compared, agreed=self.agreed, agreement=self.agreement)
        return out


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def merge(parts: Sequence[Mapping[str, VariantStats]]) -> dict[str, VariantStats]:
    """Variant -> counters, summed over ``parts`` (workers, steps)."""
    out: dict[str, VariantStats] = {}
    for part in parts:
        for variant, stats in part.items():
            out[variant] = out[variant] + stats if variant in out else stats
    return out


@dataclass
class _Counters:
    requests: int = 0
    errors: int = 0
    latency_sum: float = 0.0
    compared: int = 0
    agreed: int = 0
    buckets: list[int] = field(default_factory=lambda: [0] * len(LATENCY_BUCKETS_MS))


class StatsRecorder:
    """One worker's counters for one rollout step, on the request path.

    ``record`` and ``record_agreement`` take a lock for a few additions (well under 3 µs);
    :meth:`snapshot` copies the cumulative counters that the worker upserts into the store.
    """

    def __init__(self, rollout_id: str, step: int) -> None:
        self.rollout_id = rollout_id
        self.step = step
        self._lock = threading.Lock()
        self._variants: dict[str, _Counters] = {}
        self.changes = 0  # bumped by every record: the worker writes only when it moved

    def record(self, variant: str, seconds: float, error: bool) -> None:
        """Count one request of ``variant`` that took ``seconds`` (failed when ``error``)."""
        bucket = bisect_left(_BOUNDS_S, seconds)
        with self._lock:
            counters = self._variants.get(variant)
            if counters is None:
                counters = self._variants[variant] = _Counters()
            counters.requests += 1
            counters.latency_sum += seconds
            counters.buckets[bucket] += 1
            if error:
                counters.errors += 1
            self.changes += 1

    def record_agreement(self, agree: bool, variant: str = "shadow") -> None:
        """Count one prediction of the shadow compared with the champion's."""
        with self._lock:
            counters = self._variants.get(variant)
            if counters is None:
                counters = self._variants[variant] = _Counters()
            counters.compared += 1
            if agree:
                counters.agreed += 1
            self.changes += 1

    def snapshot(self) -> tuple[int, dict[str, VariantStats]]:
        """(changes so far, variant -> cumulative counters)."""
        with self._lock:
            return self.changes, {
                variant: VariantStats(
                    c.requests, c.errors, tuple(c.buckets), c.latency_sum, c.compared, c.agreed
                )
                for variant, c in self._variants.items()
            }
