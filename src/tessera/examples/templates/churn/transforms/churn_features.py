"""Churn-specific transformations of this project.

Helpers live in ``_helpers.py`` (not scanned for transformations because of the leading ``_``);
``from transforms._helpers import weighted_score`` works as well as the relative import below.
"""

from __future__ import annotations

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tessera import transformation

from ._helpers import weighted_score


class EngagementScore(BaseModel):
    """How engaged a customer is this month, from usage columns and fixed reference levels."""

    model_config = ConfigDict(extra="forbid")

    weights: dict[str, float] = Field(
        description="Column -> weight; negative for columns that signal disengagement."
    )
    reference: dict[str, float] = Field(
        description="Column -> typical level (a constant, not learned from the data)."
    )
    cap: float = Field(3.0, gt=0, description="Upper bound of each column's ratio to reference.")
    output: str = Field("engagement_score", description="Name of the new column.")

    @model_validator(mode="after")
    def _check(self) -> EngagementScore:
        if not self.weights:
            raise ValueError("weights must name at least one column")
        missing = sorted(set(self.weights) - set(self.reference))
        if missing:
            raise ValueError(f"reference has no level for {missing}")
        if any(level <= 0 for level in self.reference.values()):
            raise ValueError("reference levels must be positive")
        return self


@transformation
def engagement_score(df: pd.DataFrame, cfg: EngagementScore) -> pd.DataFrame:
    """Add an engagement score: weighted, capped ratios of activity columns to reference levels."""
    absent = [c for c in cfg.weights if c not in df.columns]
    if absent:
        raise KeyError(f"engagement_score: no column {absent} in the input")
    score = weighted_score(df, cfg.weights, cfg.reference, cfg.cap)
    return df.assign(**{cfg.output: score.round(4)})
