"""Helpers of the project's transformations (not scanned: the file name starts with ``_``)."""

from __future__ import annotations

import pandas as pd


def capped_ratio(values: pd.Series, reference: float, cap: float) -> pd.Series:
    """``values / reference`` clipped to ``[0, cap]``; a missing value counts as the reference.

    The reference is a fixed number from the config, not a statistic of the data, so the result
    of a row never depends on the other rows (nothing leaks between train and test).
    """
    ratio = pd.to_numeric(values, errors="coerce").astype("float64") / reference
    return ratio.fillna(1.0).clip(lower=0.0, upper=cap)


def weighted_score(
    df: pd.DataFrame, weights: dict[str, float], reference: dict[str, float], cap: float
) -> pd.Series:
    """Weighted sum of capped ratios over the total absolute weight (a value in ``[-cap, cap]``)."""
    total = sum(abs(w) for w in weights.values())
    score = pd.Series(0.0, index=df.index)
    for column, weight in weights.items():
        score += weight * capped_ratio(df[column], reference[column], cap)
    return score / total
