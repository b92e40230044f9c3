"""Numeric features: clipping, log and power transforms, binning, ratios and derived columns.

Every parameter is given in the config (bounds, edges, powers): nothing is learned from the
data, so these transformations can run before a train/test split without leaking test rows.
Quantile bins or standardisation learned from data belong to the model's preprocessing.
"""

from __future__ import annotations

import itertools
from typing import Literal

import numpy as np
import pandas as pd
from pandas.api.types import is_integer_dtype
from pydantic import Field, field_validator, model_validator

from tessera.pipeline.registry import transformation
from tessera.transforms._common import (
    TransformConfig,
    evaluate,
    require_absent,
    require_numeric,
)


class Bounds(TransformConfig):
    """The limits of one column for ``clip_values``."""

    lower: float | None = Field(None, description="Values below this become this (none: no floor).")
    upper: float | None = Field(
        None, description="Values above this become this (none: no ceiling)."
    )

    @model_validator(mode="after")
    def _some_bound(self) -> Bounds:
        if self.lower is None and self.upper is None:
            raise ValueError("set `lower`, `upper` or both")
        if self.lower is not None and self.upper is not None and self.lower > self.upper:
            raise ValueError(f"`lower` ({self.lower}) is above `upper` ({self.upper})")
        return self


class ClipValues(TransformConfig):
    """Config of ``clip_values``."""

    bounds: dict[str, Bounds] = Field(
        min_length=1, description="Column -> {lower, upper}: the range its values are clipped to."
    )


@transformation(name="clip_values")
def clip_values(df: pd.DataFrame, cfg: ClipValues) -> pd.DataFrame:
    """Limit numeric columns to fixed ranges (winsorise with known bounds).

    Example:
        ```yaml
        clipped:
          uses: clip_values
          inputs: [clean]
          with:
            bounds:
              age: {lower: 18, upper: 99}
              amount: {upper: 10000}
        ```

    Args:
        df: the table.
        cfg: the bounds of each column.

    Returns:
        The table with values outside the bounds replaced by the nearest bound (integer
        columns stay integer when the bounds are whole numbers).
    """
    require_numeric(df, cfg.bounds)
    out = df.copy()
    for column, b in cfg.bounds.items():
        series = out[column]
        lower: float | int | None = b.lower
        upper: float | int | None = b.upper
        if is_integer_dtype(series.dtype) and all(
            v is None or float(v).is_integer() for v in (lower, upper)
        ):
            # Whole-number bounds keep an integer column integer.
            lower = None if lower is None else int(lower)
            upper = None if upper is None else int(upper)
        out[column] = series.clip(lower=lower, upper=upper)
    return out.reset_index(drop=True)


def _output_names(df: pd.DataFrame, columns: list[str], suffix: str | None) -> list[str]:
    if suffix is None:
        return columns
    names = [f"{c}{suffix}" for c in columns]
    require_absent(df, names, "choose another `suffix`, or none to replace the columns")
    return names


_LOGS = {"e": np.log, "2": np.log2, "10": np.log10}


class LogTransform(TransformConfig):
    """Config of ``log_transform``."""

    columns: list[str] = Field(min_length=1, description="The numeric columns to transform.")
    base: Literal["e", "2", "10"] = Field("e", description="Base of the logarithm.")
    offset: float = Field(
        0.0, description="Added before taking the log, e.g. 1 for counts that can be 0."
    )
    suffix: str | None = Field(
        None,
        min_length=1,
        description="Write to new columns named column + suffix (e.g. `_log`); none replaces "
        "the columns in place.",
    )


@transformation(name="log_transform")
def log_transform(df: pd.DataFrame, cfg: LogTransform) -> pd.DataFrame:
    """Take the logarithm of numeric columns: log(value + offset).

    Missing values stay missing.

    Example:
        ```yaml
        logged:
          uses: log_transform
          inputs: [clean]
          with:
            columns: [income, n_orders]
            offset: 1
            suffix: _log
        ```

    Args:
        df: the table.
        cfg: the columns, base, offset and where to write the result.

    Returns:
        The table with the transformed values (float64).

    Raises:
        ValueError: a value + offset is zero or negative; the message names the column.
    """
    require_numeric(df, cfg.columns)
    names = _output_names(df, cfg.columns, cfg.suffix)
    log = _LOGS[cfg.base]
    out = df.copy()
    for column, name in zip(cfg.columns, names, strict=True):
        shifted = out[column].astype("float64") + cfg.offset
        bad = shifted[shifted <= 0]
        if len(bad):
            raise ValueError(
                f"column '{column}' has {len(bad)} value(s) where value + offset <= 0 "
                f"(e.g. {bad.iloc[0] - cfg.offset:g} with offset {cfg.offset:g}); the log is "
                "undefined there: raise `offset` or filter those rows first"
            )
        out[name] = log(shifted)
    return out.reset_index(drop=True)


class PowerTransform(TransformConfig):
    """Config of ``power_transform``."""

    columns: list[str] = Field(min_length=1, description="The numeric columns to transform.")
    power: float = Field(description="The exponent, e.g. 0.5 for a square root, 2 to square.")
    suffix: str | None = Field(
        None,
        min_length=1,
        description="Write to new columns named column + suffix (e.g. `_sqrt`); none replaces "
        "the columns in place.",
    )

    @field_validator("power")
    @classmethod
    def _not_zero(cls, power: float) -> float:
        if power == 0:
            raise ValueError("a power of 0 turns every value into 1")
        return power


@transformation(name="power_transform")
def power_transform(df: pd.DataFrame, cfg: PowerTransform) -> pd.DataFrame:
    """Raise numeric columns to a fixed power (square root, square, reciprocal...).

    Missing values stay missing.

    Example:
        ```yaml
        sqrt_income:
          uses: power_transform
          inputs: [clean]
          with:
            columns: [income]
            power: 0.5
            suffix: _sqrt
        ```

    Args:
        df: the table.
        cfg: the columns, the power and where to write the result.

    Returns:
        The table with the transformed values (float64).

    Raises:
        ValueError: a negative value with a fractional power, or 0 with a negative power.
    """
    require_numeric(df, cfg.columns)
    names = _output_names(df, cfg.columns, cfg.suffix)
    out = df.copy()
    for column, name in zip(cfg.columns, names, strict=True):
        values = out[column].astype("float64")
        if not float(cfg.power).is_integer() and (values < 0).any():
            raise ValueError(
                f"column '{column}' has negative values, which have no real power "
                f"{cfg.power:g}; use a whole power or clip the column first"
            )
        if cfg.power < 0 and (values == 0).any():
            raise ValueError(
                f"column '{column}' has zeros, which the negative power {cfg.power:g} would "
                "divide by; filter them or add an offset with derive_column first"
            )
        out[name] = np.power(values, cfg.power)
    return out.reset_index(drop=True)


class BinValues(TransformConfig):
    """Config of ``bin_values``."""

    column: str = Field(min_length=1, description="The numeric column to bin.")
    edges: list[float] = Field(
        min_length=2, description="Bin edges, strictly increasing: n edges make n - 1 bins."
    )
    labels: list[str] | None = Field(
        None,
        description="One distinct label per bin (default: the interval, like `(0, 10]`).",
    )
    output: str | None = Field(
        None, min_length=1, description="Name of the new column (default: column + `_bin`)."
    )
    right: bool = Field(True, description="Bins include their right edge, (a, b]; false: [a, b).")
    include_lowest: bool = Field(
        False, description="The first bin also includes its left edge (when `right` is true)."
    )

    @field_validator("edges")
    @classmethod
    def _increasing(cls, edges: list[float]) -> list[float]:
        for a, b in itertools.pairwise(edges):
            if not a < b:
                raise ValueError(f"edges must be strictly increasing, but {b:g} follows {a:g}")
        return edges

    @model_validator(mode="after")
    def _one_label_per_bin(self) -> BinValues:
        if self.labels is not None and len(self.labels) != len(self.edges) - 1:
            raise ValueError(
                f"{len(self.edges)} edges make {len(self.edges) - 1} bins, but "
                f"{len(self.labels)} labels are given"
            )
        return self


def _interval_labels(cfg: BinValues) -> list[str]:
    labels = []
    for i, (a, b) in enumerate(itertools.pairwise(cfg.edges)):
        if cfg.right:
            left = "[" if cfg.include_lowest and i == 0 else "("
            labels.append(f"{left}{a:g}, {b:g}]")
        else:
            labels.append(f"[{a:g}, {b:g})")
    return labels


@transformation(name="bin_values")
def bin_values(df: pd.DataFrame, cfg: BinValues) -> pd.DataFrame:
    """Put a numeric column's values into fixed bins, as an ordered category column.

    Values outside the edges (and missing values) get a missing bin.

    Example:
        ```yaml
        age_groups:
          uses: bin_values
          inputs: [clean]
          with:
            column: age
            edges: [0, 18, 35, 65, 120]
            labels: [child, young, adult, senior]
        ```

    Args:
        df: the table.
        cfg: the column, the edges and the labels.

    Returns:
        The table plus the bin column (or with ``column`` replaced if ``output`` names it).
    """
    require_numeric(df, [cfg.column])
    output = cfg.output or f"{cfg.column}_bin"
    if output != cfg.column:
        require_absent(df, [output], "set `output` to another name")
    labels = cfg.labels or _interval_labels(cfg)
    binned = pd.cut(
        df[cfg.column],
        bins=cfg.edges,
        labels=labels,
        right=cfg.right,
        include_lowest=cfg.include_lowest,
        ordered=True,
    )
    return df.assign(**{output: binned}).reset_index(drop=True)


class RatioColumns(TransformConfig):
    """Config of ``ratio_columns``."""

    numerator: str = Field(min_length=1, description="The numeric column to divide.")
    denominator: str = Field(min_length=1, description="The numeric column to divide by.")
    output: str = Field(min_length=1, description="Name of the new ratio column.")
    on_zero: float | None = Field(
        None, description="The ratio where the denominator is 0 (none: a missing value)."
    )


@transformation(name="ratio_columns")
def ratio_columns(df: pd.DataFrame, cfg: RatioColumns) -> pd.DataFrame:
    """Add the ratio of two numeric columns, with a defined value for division by zero.

    Example:
        ```yaml
        spend_per_order:
          uses: ratio_columns
          inputs: [clean]
          with:
            numerator: total_spend
            denominator: n_orders
            output: spend_per_order
            on_zero: 0
        ```

    Args:
        df: the table.
        cfg: the two columns, the output name and the value for a zero denominator.

    Returns:
        The table plus the ratio column (float64); missing inputs give a missing ratio.
    """
    require_numeric(df, [cfg.numerator, cfg.denominator])
    require_absent(df, [cfg.output], "set `output` to another name")
    numerator = df[cfg.numerator].astype("float64")
    denominator = df[cfg.denominator].astype("float64")
    zero = denominator == 0
    ratio = numerator / denominator.mask(zero)
    if cfg.on_zero is not None:
        ratio = ratio.mask(zero, cfg.on_zero)
    return df.assign(**{cfg.output: ratio}).reset_index(drop=True)


class DeriveColumn(TransformConfig):
    """Config of ``derive_column``."""

    output: str = Field(
        min_length=1,
        description="Name of the column to add (an existing column of that name is replaced).",
    )
    expr: str = Field(
        min_length=1,
        description="An expression over the columns in pandas eval syntax, e.g. "
        "`price * quantity` or `amount > 100`; backtick-quote names with spaces.",
    )


@transformation(name="derive_column")
def derive_column(df: pd.DataFrame, cfg: DeriveColumn) -> pd.DataFrame:
    """Add a column computed from an expression over other columns (pandas eval syntax).

    Example:
        ```yaml
        with_total:
          uses: derive_column
          inputs: [clean]
          with:
            output: total
            expr: price * quantity - discount
        ```

    Args:
        df: the table.
        cfg: the new column's name and its expression.

    Returns:
        The table plus (or with a replaced) ``output`` column.
    """
    value = evaluate(df, cfg.expr, "expression")
    if isinstance(value, pd.DataFrame):
        raise ValueError(
            f"expression {cfg.expr!r} assigns columns; give only the right-hand side and "
            "name the column in `output`"
        )
    out = df.reset_index(drop=True)
    if isinstance(value, pd.Series | np.ndarray):
        if len(value) != len(df):
            raise ValueError(
                f"expression {cfg.expr!r} gives {len(value)} values for {len(df)} rows"
            )
        out[cfg.output] = value.array if isinstance(value, pd.Series) else value
    elif isinstance(value, np.generic):
        out[cfg.output] = value.item()
    elif isinstance(value, int | float | str):
        out[cfg.output] = value
    else:
        raise ValueError(
            f"expression {cfg.expr!r} gives a {type(value).__name__}, not a column of values"
        )
    return out
