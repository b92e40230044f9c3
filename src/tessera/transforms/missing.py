"""Missing values: dropping incomplete rows, flagging gaps and filling them with constants.

Only constants are offered as fill values, on purpose. A mean, median or mode computed here
would be learned from the whole table, before the train/test split: test rows would leak into
the statistic the training rows are filled with, and the model's test score would be optimistic.
Statistics learned from data belong to the model's preprocessing (e.g. a scikit-learn
``SimpleImputer`` inside the model pipeline, fitted on the training rows only).
"""

from __future__ import annotations

import datetime
from typing import Literal

import numpy as np
import pandas as pd
from pandas.api.types import (
    is_bool_dtype,
    is_datetime64_any_dtype,
    is_numeric_dtype,
    is_string_dtype,
)
from pydantic import Field

from tessera.pipeline.registry import transformation
from tessera.transforms._common import (
    TransformConfig,
    require_absent,
    require_columns,
)

#: A constant a column can be filled with.
FillValue = bool | int | float | str | datetime.datetime | datetime.date


class FillMissing(TransformConfig):
    """Config of ``fill_missing``."""

    values: dict[str, FillValue] = Field(
        min_length=1,
        description="Column -> the constant to put in its missing cells. Constants only: "
        "statistics such as the mean belong to the model's preprocessing, fitted after the split.",
    )


def _fill_value(series: pd.Series, column: str, value: FillValue) -> FillValue | pd.Timestamp:
    """``value`` converted to suit the column, or a ``ValueError`` saying why it cannot."""
    dtype = series.dtype
    if is_datetime64_any_dtype(dtype):
        try:
            stamp = pd.Timestamp(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(
                f"column '{column}' holds dates; fill value {value!r} is not a date ({exc})"
            ) from exc
        if getattr(dtype, "tz", None) is not None and stamp.tzinfo is None:
            stamp = stamp.tz_localize(dtype.tz)  # type: ignore[union-attr]
        return stamp
    if is_bool_dtype(dtype) and not isinstance(value, bool):
        raise ValueError(f"column '{column}' holds booleans; fill value {value!r} is not one")
    is_number = is_numeric_dtype(dtype) and not is_bool_dtype(dtype)
    if is_number and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise ValueError(
            f"column '{column}' holds numbers ({dtype}); fill value {value!r} is not a number"
        )
    if is_string_dtype(dtype) and dtype != np.dtype(object) and not isinstance(value, str):
        raise ValueError(
            f"column '{column}' holds text; fill value {value!r} is not text "
            f"(quote it in YAML: '{value}')"
        )
    return value


@transformation(name="fill_missing")
def fill_missing(df: pd.DataFrame, cfg: FillMissing) -> pd.DataFrame:
    """Fill missing values of columns with constants.

    Only constants: filling with a mean or median learned from this table would leak test rows
    into training features when the table is split later. Learn such statistics in the model's
    preprocessing, on the training split only. To keep the information that a value was
    missing, run ``flag_missing`` first.

    Example:
        ```yaml
        filled:
          uses: fill_missing
          inputs: [clean]
          with:
            values: {country: unknown, discount: 0.0, newsletter: false}
        ```

    Args:
        df: the table.
        cfg: the constant of each column.

    Returns:
        The table with those columns' missing cells filled.

    Raises:
        ValueError: a constant does not suit its column's type (text into a number column...).
    """
    require_columns(df, cfg.values)
    out = df.copy()
    for column, value in cfg.values.items():
        series = out[column]
        fill = _fill_value(series, column, value)
        if isinstance(series.dtype, pd.CategoricalDtype) and fill not in series.cat.categories:
            series = series.cat.add_categories([fill])
        try:
            out[column] = series.fillna(fill)
        except (TypeError, ValueError) as exc:
            raise ValueError(
                f"cannot fill column '{column}' ({series.dtype}) with {value!r}: {exc}"
            ) from exc
    return out.reset_index(drop=True)


class DropMissing(TransformConfig):
    """Config of ``drop_missing``."""

    subset: list[str] | None = Field(
        None,
        min_length=1,
        description="Columns to look at for missing values (default: all columns).",
    )
    how: Literal["any", "all"] = Field(
        "any",
        description="Drop a row when `any` of those columns is missing, or only when `all` are.",
    )


@transformation(name="drop_missing")
def drop_missing(df: pd.DataFrame, cfg: DropMissing) -> pd.DataFrame:
    """Drop rows with missing values.

    Example:
        ```yaml
        complete:
          uses: drop_missing
          inputs: [clean]
          with:
            subset: [amount, customer_id]
            how: any
        ```

    Args:
        df: the table.
        cfg: which columns to look at and how many must be missing.

    Returns:
        The remaining rows, in input order.
    """
    if cfg.subset is not None:
        require_columns(df, cfg.subset)
    return df.dropna(subset=cfg.subset, how=cfg.how).reset_index(drop=True)


class FlagMissing(TransformConfig):
    """Config of ``flag_missing``."""

    columns: list[str] = Field(min_length=1, description="Columns whose missing cells to flag.")
    suffix: str = Field(
        "_missing", min_length=1, description="Each flag column is named column + suffix."
    )


@transformation(name="flag_missing")
def flag_missing(df: pd.DataFrame, cfg: FlagMissing) -> pd.DataFrame:
    """Add a true/false column per column telling whether its value is missing.

    Run it before ``fill_missing`` so a model can still tell filled values from real ones.

    Example:
        ```yaml
        flagged:
          uses: flag_missing
          inputs: [clean]
          with:
            columns: [income, age]
        ```

    Args:
        df: the table.
        cfg: the columns to flag and the suffix of the new columns.

    Returns:
        The table plus one boolean column per flagged column (``income_missing``...).
    """
    require_columns(df, cfg.columns)
    names = [f"{c}{cfg.suffix}" for c in cfg.columns]
    require_absent(df, names, "choose another `suffix`")
    flags = {name: df[c].isna() for c, name in zip(cfg.columns, names, strict=True)}
    return df.assign(**flags).reset_index(drop=True)
