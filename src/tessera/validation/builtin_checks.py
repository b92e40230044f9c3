"""The checks Tessera ships, usable in any schema by name.

Column checks receive the column without its missing values; table checks receive the whole
table. Each returns True where a value (or row) passes.
"""

from __future__ import annotations

import datetime as dt
import operator
from typing import Literal

import pandas as pd
from pandas.api.types import is_datetime64_any_dtype, is_numeric_dtype
from pydantic import BaseModel, ConfigDict, Field, field_validator

from tessera.validation.checks import check


class CheckConfig(BaseModel):
    """Base of the built-in checks' params: unknown keys are errors."""

    model_config = ConfigDict(extra="forbid")


class Monotonic(CheckConfig):
    """Params of ``monotonic_increasing`` and ``monotonic_decreasing``."""

    strict: bool = Field(False, description="Forbid repeated values (each must be a new high).")


def _as_dates(series: pd.Series) -> pd.Series:
    if is_datetime64_any_dtype(series.dtype) or is_numeric_dtype(series.dtype):
        return series
    return pd.to_datetime(series, format="ISO8601")


@check
def monotonic_increasing(series: pd.Series, cfg: Monotonic) -> pd.Series:
    """Values never go down (in row order); flags each value below an earlier one.

    Example:
        ```yaml
        event_time:
          dtype: datetime
          checks:
            - name: monotonic_increasing
              params: {strict: false}
        ```
    """
    values = _as_dates(series)
    previous = values.cummax().shift(1)
    bad = values <= previous if cfg.strict else values < previous
    return ~bad.fillna(False).astype(bool)


@check
def monotonic_decreasing(series: pd.Series, cfg: Monotonic) -> pd.Series:
    """Values never go up (in row order); flags each value above an earlier one.

    Example:
        ```yaml
        remaining:
          dtype: int64
          checks: [monotonic_decreasing]
        ```
    """
    values = _as_dates(series)
    previous = values.cummin().shift(1)
    bad = values >= previous if cfg.strict else values > previous
    return ~bad.fillna(False).astype(bool)


class NoFutureDates(CheckConfig):
    """Params of ``no_future_dates``."""

    now: str | None = Field(
        None,
        description="The moment that counts as now, ISO 8601 (default: the current time). "
        "Setting it makes the result reproducible.",
    )

    @field_validator("now")
    @classmethod
    def _iso(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                dt.datetime.fromisoformat(value)
            except ValueError:
                raise ValueError(
                    f"'now' must be an ISO 8601 date or datetime, got {value!r}"
                ) from None
        return value


@check
def no_future_dates(series: pd.Series, cfg: NoFutureDates) -> pd.Series:
    """Dates (datetimes, or ISO 8601 text) are not later than now.

    Example:
        ```yaml
        signup_date:
          dtype: datetime
          checks: [no_future_dates]
        ```
    """
    values = _as_dates(series)
    now = pd.Timestamp(cfg.now) if cfg.now else pd.Timestamp.now()
    tz = getattr(values.dtype, "tz", None)
    if tz is not None:
        now = now.tz_localize(tz) if now.tzinfo is None else now.tz_convert(tz)
    elif now.tzinfo is not None:
        now = now.tz_convert(None)
    return values <= now


class StrLength(CheckConfig):
    """Params of ``str_length``."""

    min: int | None = Field(None, ge=0, description="Fewest characters allowed.")
    max: int | None = Field(None, ge=0, description="Most characters allowed.")


@check
def str_length(series: pd.Series, cfg: StrLength) -> pd.Series:
    """Text values have between `min` and `max` characters.

    Example:
        ```yaml
        country:
          dtype: string
          checks:
            - name: str_length
              params: {min: 2, max: 2}
        ```
    """
    lengths = series.astype("string").str.len()
    ok = pd.Series(True, index=series.index)
    if cfg.min is not None:
        ok &= lengths >= cfg.min
    if cfg.max is not None:
        ok &= lengths <= cfg.max
    return ok


@check
def no_blank_strings(series: pd.Series) -> pd.Series:
    """Text values are not empty and not only whitespace.

    Example:
        ```yaml
        name:
          dtype: string
          checks: [no_blank_strings]
        ```
    """
    return series.astype("string").str.strip().str.len() > 0


@check
def trimmed(series: pd.Series) -> pd.Series:
    """Text values have no leading or trailing whitespace.

    Example:
        ```yaml
        plan:
          dtype: string
          checks: [trimmed]
        ```
    """
    text = series.astype("string")
    return text == text.str.strip()


_OPERATORS = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
    "==": operator.eq,
    "!=": operator.ne,
}


class CompareColumns(CheckConfig):
    """Params of ``compare_columns``."""

    left: str = Field(min_length=1, description="The column on the left of the comparison.")
    op: Literal["<", "<=", ">", ">=", "==", "!="] = Field(description="The comparison.")
    right: str = Field(min_length=1, description="The column on the right of the comparison.")


@check(level="table")
def compare_columns(df: pd.DataFrame, cfg: CompareColumns) -> pd.Series:
    """Each row satisfies `left op right`, e.g. `start <= end`; rows missing either pass.

    Example:
        ```yaml
        checks:
          - name: compare_columns
            params: {left: start_date, op: "<=", right: end_date}
        ```
    """
    left, right = df[cfg.left], df[cfg.right]
    result = _OPERATORS[cfg.op](left, right)
    return result | left.isna() | right.isna()


class BetweenColumns(CheckConfig):
    """Params of ``between_columns``."""

    column: str = Field(min_length=1, description="The column whose values are bounded.")
    low: str = Field(min_length=1, description="The column holding each row's lower bound.")
    high: str = Field(min_length=1, description="The column holding each row's upper bound.")
    inclusive: bool = Field(True, description="Whether a value may equal its bounds.")


@check(level="table")
def between_columns(df: pd.DataFrame, cfg: BetweenColumns) -> pd.Series:
    """Each row's `column` lies between its `low` and `high` columns; rows missing any pass.

    Example:
        ```yaml
        checks:
          - name: between_columns
            params: {column: price, low: min_price, high: max_price}
        ```
    """
    value, low, high = df[cfg.column], df[cfg.low], df[cfg.high]
    within = (low <= value) & (value <= high) if cfg.inclusive else (low < value) & (value < high)
    return within | value.isna() | low.isna() | high.isna()


class CompleteRows(CheckConfig):
    """Params of ``complete_rows``."""

    columns: list[str] = Field(
        min_length=1, description="Columns that must all be present together in each row."
    )


@check(level="table")
def complete_rows(df: pd.DataFrame, cfg: CompleteRows) -> pd.Series:
    """In each row, the given columns are either all present or all missing.

    Example:
        ```yaml
        checks:
          - name: complete_rows
            params: {columns: [latitude, longitude]}
        ```
    """
    present = df[cfg.columns].notna()
    return present.all(axis=1) | (~present).all(axis=1)
