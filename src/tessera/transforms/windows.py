"""Window features over ordered rows: lags and rolling aggregates, optionally per group.

Rows are put in ``order_by`` order (a stable sort: ties keep their input order) within each
group of ``by`` columns, the feature is computed, and the result comes back in the input's row
order. Lags only look at earlier rows; rolling aggregates include the current row unless
``include_current: false``, which makes a row see strictly earlier rows only (use it when the
current row's value is, or relates to, the target). Rows with a missing ``order_by`` value are
placed after all others; rows with missing group keys form their own group.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pydantic import Field, field_validator, model_validator

from tessera.pipeline.registry import transformation
from tessera.transforms._common import (
    TransformConfig,
    fresh_index,
    require_absent,
    require_columns,
    require_numeric,
)


def _ordered(df: pd.DataFrame, by: list[str], order_by: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The input with a fresh index, and its rows sorted (stably) by ``order_by``."""
    require_columns(df, [*by, order_by])
    data = fresh_index(df)
    try:
        ordered = data.sort_values(order_by, kind="stable")
    except TypeError as exc:
        raise ValueError(f"column '{order_by}' cannot be sorted (mixed types?): {exc}") from exc
    return data, ordered


def _shift(values: pd.Series, keys: list[pd.Series], periods: int) -> pd.Series:
    if not keys:
        return values.shift(periods)
    return values.groupby(keys, sort=False, dropna=False).shift(periods)


class LagColumns(TransformConfig):
    """Config of ``lag_columns``."""

    columns: list[str] = Field(min_length=1, description="The columns to lag.")
    by: list[str] = Field(
        default_factory=list,
        description="Group columns (e.g. customer_id): a row only sees earlier rows of its group.",
    )
    order_by: str = Field(
        min_length=1, description="The column giving the order of rows (e.g. time)."
    )
    periods: int | list[int] = Field(
        1, description="How many rows back to look: one number or a list (1 = previous row)."
    )

    @field_validator("periods")
    @classmethod
    def _positive_distinct(cls, periods: int | list[int]) -> int | list[int]:
        values = [periods] if isinstance(periods, int) else periods
        if not values:
            raise ValueError("give at least one period")
        if any(p < 1 for p in values):
            raise ValueError("periods must be 1 or more (a lag looks back; negative would leak)")
        if len(set(values)) != len(values):
            raise ValueError("periods must be distinct")
        return periods

    @property
    def period_list(self) -> list[int]:
        return [self.periods] if isinstance(self.periods, int) else list(self.periods)


@transformation(name="lag_columns")
def lag_columns(df: pd.DataFrame, cfg: LagColumns) -> pd.DataFrame:
    """Add the values of earlier rows (lags) of columns, within groups, in time order.

    ``amount_lag1`` of a row is the ``amount`` of the previous row of the same group by
    ``order_by``; the first rows of each group get missing values.

    Example:
        ```yaml
        lags:
          uses: lag_columns
          inputs: [clean]
          with:
            columns: [amount]
            by: [customer_id]
            order_by: event_time
            periods: [1, 2]
        ```

    Args:
        df: the table.
        cfg: the columns, groups, order and periods.

    Returns:
        The table, in input order, plus one column per column and period, named
        ``{column}_lag{period}``.
    """
    require_columns(df, cfg.columns)
    names = {(c, p): f"{c}_lag{p}" for c in cfg.columns for p in cfg.period_list}
    require_absent(df, names.values(), "rename the existing columns first")
    data, ordered = _ordered(df, cfg.by, cfg.order_by)
    keys = [ordered[b] for b in cfg.by]
    lags = {name: _shift(ordered[c], keys, p) for (c, p), name in names.items()}
    return data.assign(**lags)


Agg = Literal["mean", "sum", "min", "max", "std", "count"]


def _mean_only() -> list[Agg]:
    return ["mean"]


class RollingAggregate(TransformConfig):
    """Config of ``rolling_aggregate``."""

    columns: list[str] = Field(min_length=1, description="The numeric columns to aggregate.")
    by: list[str] = Field(
        default_factory=list,
        description="Group columns (e.g. customer_id): windows never cross groups.",
    )
    order_by: str = Field(
        min_length=1, description="The column giving the order of rows (e.g. time)."
    )
    window: int = Field(ge=1, description="Window length, in rows.")
    aggs: list[Agg] = Field(
        default_factory=_mean_only,
        min_length=1,
        description="Aggregates over each window: mean, sum, min, max, std, count.",
    )
    min_periods: int = Field(
        1,
        ge=0,
        description="Fewest non-missing values a window needs, else the result is missing.",
    )
    include_current: bool = Field(
        True,
        description="Whether a row's own value is in its window; false: the window is the "
        "`window` rows strictly before it (no leakage of the current row).",
    )

    @model_validator(mode="after")
    def _min_periods_fits(self) -> RollingAggregate:
        if self.min_periods > self.window:
            raise ValueError(
                f"min_periods ({self.min_periods}) cannot exceed window ({self.window})"
            )
        return self


@transformation(name="rolling_aggregate")
def rolling_aggregate(df: pd.DataFrame, cfg: RollingAggregate) -> pd.DataFrame:
    """Add rolling-window aggregates (mean, sum...) of numeric columns, within groups, in order.

    Example:
        ```yaml
        rolling:
          uses: rolling_aggregate
          inputs: [clean]
          with:
            columns: [amount]
            by: [customer_id]
            order_by: event_time
            window: 3
            aggs: [mean, max]
            include_current: false
        ```

    Args:
        df: the table.
        cfg: the columns, groups, order, window and aggregates.

    Returns:
        The table, in input order, plus one column per column and aggregate, named
        ``{column}_roll{window}_{agg}``.
    """
    require_numeric(df, cfg.columns)
    names = {(c, a): f"{c}_roll{cfg.window}_{a}" for c in cfg.columns for a in cfg.aggs}
    require_absent(df, names.values(), "rename the existing columns first")
    data, ordered = _ordered(df, cfg.by, cfg.order_by)
    keys = [ordered[b] for b in cfg.by]
    new: dict[str, pd.Series] = {}
    for column in cfg.columns:
        values = ordered[column].astype("float64")
        if not cfg.include_current:
            values = _shift(values, keys, 1)
        for agg in cfg.aggs:
            if keys:
                rolled = values.groupby(keys, sort=False, dropna=False).rolling(
                    cfg.window, min_periods=cfg.min_periods
                )
                result = getattr(rolled, agg)().droplevel(list(range(len(keys))))
            else:
                result = getattr(values.rolling(cfg.window, min_periods=cfg.min_periods), agg)()
            new[names[(column, agg)]] = result
    return data.assign(**new)
