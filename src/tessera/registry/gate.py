"""Quality gates: may a candidate model version become the champion?

Two kinds of check, all of which must pass:

- absolute thresholds: ``min: {roc_auc: 0.75}``, ``max: {log_loss: 0.45}``;
- beating the champion: on the same test rows, the candidate's ``compare`` metric must be better
  than the current champion's by at least ``margin`` (higher for scores, lower for losses and
  errors). With no champion yet, this check passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tessera.training.evaluation import higher_is_better


class GateConfig(BaseModel):
    """What a candidate must achieve on the test table to be promoted."""

    model_config = ConfigDict(extra="forbid")

    min: dict[str, float] = Field(
        default_factory=dict, description="Lowest acceptable value per metric."
    )
    max: dict[str, float] = Field(
        default_factory=dict, description="Highest acceptable value per metric."
    )
    compare: str | None = Field(
        None,
        description="The metric compared with the current champion on the same rows (default: "
        "the model's first metric).",
    )
    margin: float = Field(
        0.0,
        description="How much better than the champion the candidate must be on `compare` "
        "(0: at least as good; negative: tolerate a small loss).",
    )

    def metrics(self) -> list[str]:
        """Every metric the gate needs."""
        names = [*self.min, *self.max]
        if self.compare:
            names.append(self.compare)
        return list(dict.fromkeys(names))


@dataclass
class Check:
    """One check of a gate, with the numbers."""

    check: str
    metric: str
    value: float
    threshold: float
    passed: bool


@dataclass
class GateResult:
    """All checks; ``passed`` when each passed."""

    checks: list[Check] = field(default_factory=list)
    champion: str | None = None  # the champion version compared against

    @property
    def passed(self) -> bool:
        return all(c.passed for c in self.checks)

    def failures(self) -> list[Check]:
        return [c for c in self.checks if not c.passed]

    def to_dict(self) -> dict[str, Any]:
        return {
            "passed": self.passed,
            "champion": self.champion,
            "checks": [asdict(c) for c in self.checks],
        }

    def summary(self) -> str:
        """One line: what failed (or that everything passed), with the numbers."""
        if self.passed:
            return "quality gate passed: " + "; ".join(_describe(c) for c in self.checks)
        return "quality gate failed: " + "; ".join(_describe(c) for c in self.failures())


def _describe(c: Check) -> str:
    if c.check == "min":
        op = ">=" if c.passed else "<"
        return f"{c.metric} {c.value:.4f} {op} min {c.threshold:.4f}"
    if c.check == "max":
        op = "<=" if c.passed else ">"
        return f"{c.metric} {c.value:.4f} {op} max {c.threshold:.4f}"
    verb = "beats" if c.passed else "does not beat"
    return f"{c.metric} {c.value:.4f} {verb} the champion's {c.threshold:.4f} by the margin"


def evaluate_gate(
    gate: GateConfig,
    candidate: Mapping[str, float],
    champion: Mapping[str, float] | None,
    *,
    compare: str,
    champion_version: str | None = None,
) -> GateResult:
    """The gate's verdict on a candidate's metrics (and the champion's on the same rows).

    Args:
        gate: the configuration.
        candidate: the candidate's metric values on the test rows.
        champion: the champion's metric values on the same rows, or None without a champion.
        compare: the metric compared with the champion.
        champion_version: recorded in the result.
    """
    result = GateResult(champion=champion_version)
    for name, low in gate.min.items():
        value = candidate[name]
        result.checks.append(Check("min", name, value, low, value >= low))
    for name, high in gate.max.items():
        value = candidate[name]
        result.checks.append(Check("max", name, value, high, value <= high))
    if champion is not None:
        value, theirs = candidate[compare], champion[compare]
        if higher_is_better(compare):
            passed = value >= theirs + gate.margin
        else:
            passed = value <= theirs - gate.margin
        result.checks.append(Check("beat_champion", compare, value, theirs, passed))
    return result
