"""Date features: calendar parts of a datetime column and the time between two datetimes.

Text columns are parsed as datetimes (ISO 8601, e.g. ``2024-01-31`` or ``2024-01-31 12:00``);
a column that cannot be parsed is an error naming it.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pydantic import Field

from tessera.pipeline.registry import transformation
from tessera.transforms._common import (
    TransformConfig,
    as_datetime,
    require_absent,
    require_columns,
)

Part = Literal[
    "year",
    "quarter",
    "month",
    "day",
    "dayofweek",
    "dayofyear",
    "hour",
    "weekofyear",
    "is_weekend",
]


class DateParts(TransformConfig):
    """Config of ``date_parts``."""

    column: str = Field(min_length=1, description="The datetime (or date text) column.")
    parts: list[Part] = Field(
        min_length=1,
        description="Parts to extract: year, quarter, month, day, dayofweek (Monday=0), "
        "dayofyear, hour, weekofyear (ISO week) and is_weekend.",
    )
    prefix: str | None = Field(
        None,
        description="Prefix of the new columns (default: column + `_`, e.g. `signup_month`).",
    )


_ACCESSORS = {"dayofweek": "day_of_week", "dayofyear": "day_of_year"}


def _part(dates: pd.Series, part: Part) -> pd.Series:
    dt = dates.dt
    values: pd.Series
    if part == "weekofyear":
        values = dt.isocalendar().week
    elif part == "is_weekend":
        weekend = dt.day_of_week >= 5
        return weekend.astype("boolean").mask(dates.isna()) if dates.isna().any() else weekend
    else:
        values = getattr(dt, _ACCESSORS.get(part, part))
    # Whole numbers: int64 when no date is missing, float64 (NaN) otherwise, as pandas does.
    return values.astype("float64") if dates.isna().any() else values.astype("int64")


@transformation(name="date_parts")
def date_parts(df: pd.DataFrame, cfg: DateParts) -> pd.DataFrame:
    """Add calendar parts (year, month, day of week...) of a datetime column as new columns.

    Integer parts are int64, or float64 when some dates are missing (missing parts are NaN);
    ``is_weekend`` is boolean.

    Example:
        ```yaml
        calendar:
          uses: date_parts
          inputs: [clean]
          with:
            column: event_time
            parts: [month, dayofweek, hour, is_weekend]
        ```

    Args:
        df: the table.
        cfg: the column, the parts and the new columns' prefix.

    Returns:
        The table plus one column per part, named prefix + part (``event_time_month``...).
    """
    require_columns(df, [cfg.column])
    prefix = f"{cfg.column}_" if cfg.prefix is None else cfg.prefix
    names = [f"{prefix}{p}" for p in cfg.parts]
    require_absent(df, names, "set another `prefix`")
    dates = as_datetime(df[cfg.column], cfg.column)
    parts = {name: _part(dates, p) for name, p in zip(names, cfg.parts, strict=True)}
    return df.assign(**parts).reset_index(drop=True)


#: Seconds per unit.
_UNITS = {"weeks": 604800.0, "days": 86400.0, "hours": 3600.0, "minutes": 60.0, "seconds": 1.0}


class DateDiff(TransformConfig):
    """Config of ``date_diff``."""

    start: str = Field(min_length=1, description="The earlier datetime column.")
    end: str = Field(min_length=1, description="The later datetime column.")
    output: str = Field(min_length=1, description="Name of the new column.")
    unit: Literal["weeks", "days", "hours", "minutes", "seconds"] = Field(
        "days", description="Unit of the result."
    )


@transformation(name="date_diff")
def date_diff(df: pd.DataFrame, cfg: DateDiff) -> pd.DataFrame:
    """Add the time from one datetime column to another (end - start), in a chosen unit.

    Example:
        ```yaml
        tenure:
          uses: date_diff
          inputs: [clean]
          with:
            start: signup_date
            end: event_time
            output: days_since_signup
            unit: days
        ```

    Args:
        df: the table.
        cfg: the two columns, the output name and the unit.

    Returns:
        The table plus a float64 column (fractional units kept; negative when end < start;
        missing when either date is missing).
    """
    require_columns(df, [cfg.start, cfg.end])
    require_absent(df, [cfg.output], "set `output` to another name")
    start = as_datetime(df[cfg.start], cfg.start)
    end = as_datetime(df[cfg.end], cfg.end)
    try:
        delta = end - start
    except TypeError as exc:
        raise ValueError(
            f"cannot subtract '{cfg.start}' from '{cfg.end}': {exc} (mixing time zones?)"
        ) from exc
    amount = delta.dt.total_seconds() / _UNITS[cfg.unit]
    return df.assign(**{cfg.output: amount}).reset_index(drop=True)
