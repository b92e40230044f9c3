"""Row-level operations: filtering, de-duplicating, ordering and sampling rows.

Every transformation here returns a table with a fresh 0..n-1 index. Only ``sort_rows`` changes
the order of the rows it keeps; the others keep the input order.
"""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pandas.api.types import is_bool_dtype
from pydantic import Field, model_validator

from tessera.pipeline.registry import transformation
from tessera.transforms._common import (
    TransformConfig,
    evaluate,
    fresh_index,
    require_columns,
)


class FilterRows(TransformConfig):
    """Config of ``filter_rows``."""

    expr: str = Field(
        min_length=1,
        description="A condition in pandas query syntax, e.g. `amount > 0 and country == 'GB'`; "
        "rows where it is true are kept. Backtick-quote column names with spaces.",
    )


@transformation(name="filter_rows")
def filter_rows(df: pd.DataFrame, cfg: FilterRows) -> pd.DataFrame:
    """Keep the rows for which a condition holds (pandas query syntax).

    Rows where the condition is missing (e.g. compares a missing value) are dropped.

    Example:
        ```yaml
        recent:
          uses: filter_rows
          inputs: [clean]
          with:
            expr: "amount > 0 and event_time >= '2024-01-01'"
        ```

    Args:
        df: the table.
        cfg: the condition.

    Returns:
        The rows that satisfy ``expr``, in input order.
    """
    mask = evaluate(df, cfg.expr, "filter expression")
    if not isinstance(mask, pd.Series) or not is_bool_dtype(mask.dtype):
        kind = f"values of type {mask.dtype}" if isinstance(mask, pd.Series) else repr(mask)
        raise ValueError(
            f"filter expression {cfg.expr!r} must give true/false for each row, but gives "
            f"{kind}; write a condition such as `amount > 0`"
        )
    keep = mask.fillna(False).astype(bool)
    return df.loc[keep.to_numpy()].reset_index(drop=True)


class DropDuplicates(TransformConfig):
    """Config of ``drop_duplicates``."""

    subset: list[str] | None = Field(
        None, min_length=1, description="Columns that identify a duplicate (default: all columns)."
    )
    keep: Literal["first", "last", "none"] = Field(
        "first",
        description="Which of the duplicates to keep: the first, the last, or none of them.",
    )


@transformation(name="drop_duplicates")
def drop_duplicates(df: pd.DataFrame, cfg: DropDuplicates) -> pd.DataFrame:
    """Remove duplicate rows.

    Example:
        ```yaml
        unique_events:
          uses: drop_duplicates
          inputs: [raw]
          with:
            subset: [event_id]
            keep: last
        ```

    Args:
        df: the table.
        cfg: what counts as a duplicate and which copy survives.

    Returns:
        The table without duplicates, in input order.
    """
    if cfg.subset is not None:
        require_columns(df, cfg.subset)
    keep: Literal["first", "last", False] = False if cfg.keep == "none" else cfg.keep
    return df.drop_duplicates(subset=cfg.subset, keep=keep).reset_index(drop=True)


class SortRows(TransformConfig):
    """Config of ``sort_rows``."""

    by: list[str] = Field(min_length=1, description="Columns to sort by, most significant first.")
    ascending: bool | list[bool] = Field(
        True, description="Sort direction: one for all columns, or one per column of `by`."
    )
    missing: Literal["last", "first"] = Field(
        "last", description="Where rows with missing sort values go."
    )

    @model_validator(mode="after")
    def _one_direction_per_column(self) -> SortRows:
        if isinstance(self.ascending, list) and len(self.ascending) != len(self.by):
            raise ValueError(
                f"`ascending` has {len(self.ascending)} value(s) but `by` has {len(self.by)} "
                "column(s); give one direction per column, or a single true/false"
            )
        return self


@transformation(name="sort_rows")
def sort_rows(df: pd.DataFrame, cfg: SortRows) -> pd.DataFrame:
    """Sort rows by one or more columns (stable: ties keep their input order).

    Example:
        ```yaml
        ordered:
          uses: sort_rows
          inputs: [clean]
          with:
            by: [customer_id, event_time]
            ascending: [true, false]
        ```

    Args:
        df: the table.
        cfg: the sort keys and directions.

    Returns:
        The sorted table.
    """
    require_columns(df, cfg.by)
    return df.sort_values(
        cfg.by, ascending=cfg.ascending, kind="stable", na_position=cfg.missing
    ).reset_index(drop=True)


class SampleRows(TransformConfig):
    """Config of ``sample_rows``."""

    n: int | None = Field(None, ge=0, description="Number of rows to draw (give `n` or `frac`).")
    frac: float | None = Field(
        None,
        gt=0,
        description="Fraction of rows to draw (give `n` or `frac`); above 1 needs `replace`.",
    )
    seed: int = Field(0, ge=0, description="Random seed: the same seed draws the same rows.")
    replace: bool = Field(False, description="Draw with replacement (a row can appear twice).")

    @model_validator(mode="after")
    def _n_or_frac(self) -> SampleRows:
        if (self.n is None) == (self.frac is None):
            raise ValueError("give exactly one of `n` (a row count) or `frac` (a fraction)")
        if self.frac is not None and self.frac > 1 and not self.replace:
            raise ValueError("`frac` above 1 draws more rows than there are; set `replace: true`")
        return self


@transformation(name="sample_rows")
def sample_rows(df: pd.DataFrame, cfg: SampleRows) -> pd.DataFrame:
    """Draw a random sample of rows, reproducibly.

    The sampled rows keep their input order (the sample is a subset, not a shuffle).

    Example:
        ```yaml
        dev_sample:
          uses: sample_rows
          inputs: [clean]
          with:
            frac: 0.1
            seed: 7
        ```

    Args:
        df: the table.
        cfg: how many rows, and the seed.

    Returns:
        The sampled rows.
    """
    if cfg.n is not None and cfg.n > len(df) and not cfg.replace:
        raise ValueError(
            f"cannot draw n={cfg.n} rows from a table of {len(df)} rows without replacement; "
            "lower `n` or set `replace: true`"
        )
    picked = fresh_index(df).sample(
        n=cfg.n, frac=cfg.frac, replace=cfg.replace, random_state=cfg.seed
    )
    if not cfg.replace:
        picked = picked.sort_index()
    return picked.reset_index(drop=True)


class OneRowPer(TransformConfig):
    """Config of ``one_row_per``."""

    by: list[str] = Field(
        min_length=1, description="Columns identifying an entity (e.g. customer_id)."
    )
    order_by: str = Field(min_length=1, description="Column deciding which row is first or last.")
    keep: Literal["first", "last"] = Field(
        "last",
        description="Keep the row with the smallest (`first`) or largest (`last`) `order_by`.",
    )


@transformation(name="one_row_per")
def one_row_per(df: pd.DataFrame, cfg: OneRowPer) -> pd.DataFrame:
    """Keep one row per entity: its first or last record by a column (e.g. the latest state).

    Ties in ``order_by`` are broken by input order (the later row is the "last"). Rows with a
    missing ``order_by`` are only kept when their entity has no other row.

    Example:
        ```yaml
        latest_profile:
          uses: one_row_per
          inputs: [profiles]
          with:
            by: [customer_id]
            order_by: updated_at
            keep: last
        ```

    Args:
        df: the table.
        cfg: the entity key, the ordering column and which end to keep.

    Returns:
        One row per distinct ``by`` value, in the input order of the kept rows.
    """
    require_columns(df, [*cfg.by, cfg.order_by])
    ordered = fresh_index(df).sort_values(
        cfg.order_by, kind="stable", na_position="first" if cfg.keep == "last" else "last"
    )
    kept = ordered.drop_duplicates(subset=cfg.by, keep=cfg.keep)
    return kept.sort_index().reset_index(drop=True)
