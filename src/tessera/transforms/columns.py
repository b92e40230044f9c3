"""Column-level edits: choosing, renaming and converting columns, recoding and cleaning values."""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pandas.api.types import is_float_dtype, is_string_dtype
from pydantic import Field, field_validator, model_validator

from tessera.pipeline.registry import transformation
from tessera.transforms._common import (
    TransformConfig,
    as_datetime,
    quoted,
    require_columns,
)


class SelectColumns(TransformConfig):
    """Config of ``select_columns``."""

    columns: list[str] = Field(
        min_length=1, description="The columns to keep, in the order to keep them."
    )


@transformation(name="select_columns")
def select_columns(df: pd.DataFrame, cfg: SelectColumns) -> pd.DataFrame:
    """Keep only the given columns, in the given order.

    Example:
        ```yaml
        features:
          uses: select_columns
          inputs: [clean]
          with:
            columns: [customer_id, amount, event_time]
        ```

    Args:
        df: the table.
        cfg: the columns to keep.

    Returns:
        The table with exactly ``columns``.
    """
    require_columns(df, cfg.columns)
    return df[cfg.columns].reset_index(drop=True)


class DropColumns(TransformConfig):
    """Config of ``drop_columns``."""

    columns: list[str] = Field(min_length=1, description="The columns to remove.")
    missing_ok: bool = Field(
        False, description="Ignore columns that are not in the table instead of failing."
    )


@transformation(name="drop_columns")
def drop_columns(df: pd.DataFrame, cfg: DropColumns) -> pd.DataFrame:
    """Remove the given columns.

    Example:
        ```yaml
        no_ids:
          uses: drop_columns
          inputs: [clean]
          with:
            columns: [row_id, raw_payload]
            missing_ok: true
        ```

    Args:
        df: the table.
        cfg: the columns to remove.

    Returns:
        The table without ``columns``; other columns keep their order.
    """
    if not cfg.missing_ok:
        require_columns(df, cfg.columns)
    drop = [c for c in cfg.columns if c in set(df.columns)]
    return df.drop(columns=drop).reset_index(drop=True)


class RenameColumns(TransformConfig):
    """Config of ``rename_columns``."""

    mapping: dict[str, str] = Field(
        min_length=1, description="Old name -> new name, for each column to rename."
    )

    @field_validator("mapping")
    @classmethod
    def _distinct_targets(cls, mapping: dict[str, str]) -> dict[str, str]:
        if "" in mapping.values():
            raise ValueError("new column names must not be empty")
        targets = list(mapping.values())
        dupes = sorted({t for t in targets if targets.count(t) > 1})
        if dupes:
            raise ValueError(f"several columns would be renamed to {quoted(dupes)}")
        return mapping


@transformation(name="rename_columns")
def rename_columns(df: pd.DataFrame, cfg: RenameColumns) -> pd.DataFrame:
    """Rename columns.

    Example:
        ```yaml
        renamed:
          uses: rename_columns
          inputs: [raw]
          with:
            mapping: {cust: customer_id, amt: amount}
        ```

    Args:
        df: the table.
        cfg: old name -> new name.

    Returns:
        The table with the columns renamed, in the same order.
    """
    require_columns(df, cfg.mapping)
    kept = set(df.columns) - set(cfg.mapping)
    clash = [new for new in cfg.mapping.values() if new in kept]
    if clash:
        raise ValueError(
            f"renaming would create duplicate columns {quoted(clash)} (already in the input); "
            "drop or rename those first"
        )
    return df.rename(columns=cfg.mapping).reset_index(drop=True)


DType = Literal[
    "int64", "Int64", "float64", "float32", "string", "category", "bool", "boolean", "datetime"
]

_TRUE = frozenset({"true", "t", "yes", "y", "1"})
_FALSE = frozenset({"false", "f", "no", "n", "0"})


def _text_to_boolean(series: pd.Series, column: str) -> pd.Series:
    words = series.astype("string").str.strip().str.lower()
    known = words.isin(_TRUE) | words.isin(_FALSE)
    bad = series[series.notna() & ~known]
    if len(bad):
        raise ValueError(
            f"column '{column}' has values that are not booleans, e.g. "
            f"{quoted(bad.unique()[:5])}; expected true/false, yes/no, t/f, y/n or 1/0"
        )
    return words.isin(_TRUE).astype("boolean").mask(series.isna())


def _cast(series: pd.Series, column: str, dtype: DType) -> pd.Series:
    if dtype == "datetime":
        return as_datetime(series, column)
    if dtype in ("bool", "boolean") and is_string_dtype(series.dtype):
        series = _text_to_boolean(series, column)
    if dtype in ("int64", "bool"):
        n_missing = int(series.isna().sum())
        if n_missing:
            nullable = "Int64" if dtype == "int64" else "boolean"
            raise ValueError(
                f"column '{column}' has {n_missing} missing value(s), which {dtype} cannot "
                f"hold; cast to {nullable} (nullable) instead, or fill them first"
            )
    if dtype in ("int64", "Int64") and is_float_dtype(series.dtype):
        fractional = series[series.notna() & (series % 1 != 0)]
        if len(fractional):
            raise ValueError(
                f"column '{column}' has non-integer values (e.g. {fractional.iloc[0]}), which "
                f"{dtype} cannot hold; round them first"
            )
    try:
        return series.astype(dtype)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"cannot cast column '{column}' to {dtype}: {exc}") from exc


class CastColumns(TransformConfig):
    """Config of ``cast_columns``."""

    dtypes: dict[str, DType] = Field(
        min_length=1,
        description="Column -> type. `Int64` and `boolean` allow missing values, `int64` and "
        "`bool` do not; `datetime` parses text as dates; text casts to `bool`/`boolean` accept "
        "true/false, yes/no, t/f, y/n and 1/0.",
    )


@transformation(name="cast_columns")
def cast_columns(df: pd.DataFrame, cfg: CastColumns) -> pd.DataFrame:
    """Convert columns to other types.

    Example:
        ```yaml
        typed:
          uses: cast_columns
          inputs: [raw]
          with:
            dtypes: {customer_id: string, amount: float64, signup: datetime, churned: boolean}
        ```

    Args:
        df: the table.
        cfg: the target type of each column.

    Returns:
        The table with the columns converted.

    Raises:
        ValueError: a value cannot be converted; the message names the column.
    """
    require_columns(df, cfg.dtypes)
    out = df.copy()
    for column, dtype in cfg.dtypes.items():
        out[column] = _cast(out[column], column, dtype)
    return out.reset_index(drop=True)


Scalar = bool | int | float | str


class ReplaceValues(TransformConfig):
    """Config of ``replace_values``."""

    mapping: dict[str, dict[Scalar, Scalar | None]] = Field(
        min_length=1,
        description="Column -> {old value: new value}. Keys must have the column's type "
        "(1 and '1' differ); a null new value makes the cell missing.",
    )
    unmapped: Literal["keep", "missing", "error"] = Field(
        "keep",
        description="What happens to non-missing values not in the mapping: kept as they are, "
        "made missing, or an error.",
    )

    @field_validator("mapping")
    @classmethod
    def _not_empty(
        cls, mapping: dict[str, dict[Scalar, Scalar | None]]
    ) -> dict[str, dict[Scalar, Scalar | None]]:
        empty = [column for column, values in mapping.items() if not values]
        if empty:
            raise ValueError(f"no values to replace for {quoted(empty)}")
        return mapping


@transformation(name="replace_values")
def replace_values(df: pd.DataFrame, cfg: ReplaceValues) -> pd.DataFrame:
    """Recode values of columns with explicit old -> new mappings.

    Replacements are simultaneous: ``{a: b, b: c}`` turns ``a`` into ``b`` and ``b`` into ``c``.

    Example:
        ```yaml
        recoded:
          uses: replace_values
          inputs: [clean]
          with:
            mapping:
              country: {UK: GB, England: GB}
              plan: {free: 0, basic: 1, pro: 2}
            unmapped: keep
        ```

    Args:
        df: the table.
        cfg: the mapping of each column, and what to do with values it does not list.

    Returns:
        The table with the values replaced.
    """
    require_columns(df, cfg.mapping)
    out = df.copy()
    for column, values in cfg.mapping.items():
        series = out[column]
        listed = series.isin(list(values))
        replaced = series.map(values)
        if cfg.unmapped == "error":
            bad = series[series.notna() & ~listed]
            if len(bad):
                raise ValueError(
                    f"column '{column}' has values the mapping does not list, e.g. "
                    f"{quoted(bad.unique()[:5])}; add them, or set `unmapped: keep`"
                )
        result = replaced if cfg.unmapped != "keep" else replaced.where(listed, series)
        result = result.infer_objects()
        if isinstance(series.dtype, pd.CategoricalDtype):
            result = result.astype("category")
        out[column] = result
    return out.reset_index(drop=True)


class CleanStrings(TransformConfig):
    """Config of ``clean_strings``."""

    columns: list[str] = Field(min_length=1, description="The text columns to clean.")
    strip: bool = Field(True, description="Remove leading and trailing whitespace.")
    lower: bool = Field(False, description="Convert to lower case.")
    collapse_whitespace: bool = Field(
        False, description="Replace every run of whitespace inside a value by one space."
    )
    empty_as_missing: bool = Field(
        False, description="Make empty strings (after the other steps) missing values."
    )

    @model_validator(mode="after")
    def _does_something(self) -> CleanStrings:
        if not (self.strip or self.lower or self.collapse_whitespace or self.empty_as_missing):
            raise ValueError(
                "every cleaning step is off; enable strip, lower, collapse_whitespace or "
                "empty_as_missing"
            )
        return self


@transformation(name="clean_strings")
def clean_strings(df: pd.DataFrame, cfg: CleanStrings) -> pd.DataFrame:
    """Normalise text columns: strip, lower-case, collapse whitespace, blank -> missing.

    Example:
        ```yaml
        tidy:
          uses: clean_strings
          inputs: [raw]
          with:
            columns: [city, email]
            lower: true
            empty_as_missing: true
        ```

    Args:
        df: the table.
        cfg: the columns and the cleaning steps.

    Returns:
        The table with the columns cleaned; missing values stay missing.
    """
    require_columns(df, cfg.columns)
    out = df.copy()
    for column in cfg.columns:
        series = out[column]
        if not is_string_dtype(series.dtype):
            raise ValueError(
                f"column '{column}' is not text (its type is {series.dtype}); clean_strings "
                "only applies to text columns"
            )
        text = series.str
        if cfg.collapse_whitespace:
            series = text.replace(r"\s+", " ", regex=True)
        if cfg.strip:
            series = series.str.strip()
        if cfg.lower:
            series = series.str.lower()
        if cfg.empty_as_missing:
            series = series.mask(series == "")
        out[column] = series
    return out.reset_index(drop=True)
