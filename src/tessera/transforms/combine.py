"""Combining tables: joining two tables on key columns, stacking tables on top of each other."""

from __future__ import annotations

from typing import Literal

import pandas as pd
from pydantic import ConfigDict, Field, field_validator, model_validator

from tessera.pipeline.registry import transformation
from tessera.transforms._common import (
    TransformConfig,
    preview,
    quoted,
    require_columns,
)

_VALIDATE_HINT = {
    "one_to_one": "keys must be unique on both sides",
    "one_to_many": "keys must be unique in the left input",
    "many_to_one": "keys must be unique in the right input",
    "many_to_many": "",
}


class JoinTables(TransformConfig):
    """Config of ``join_tables``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    on: list[str] = Field(min_length=1, description="Key columns, present in both inputs.")
    how: Literal["inner", "left", "right", "outer"] = Field(
        "left",
        description="Which rows to keep: `left` keeps every left row (in its order), `inner` only "
        "matching rows, `right` every right row, `outer` every row of both.",
    )
    suffixes: tuple[str, str] = Field(
        ("", "_right"),
        description="Appended to non-key columns present in both inputs: [left, right].",
    )
    # `validate` would shadow BaseModel.validate: the field is `validate_`, spelt `validate`.
    validate_: Literal["one_to_one", "one_to_many", "many_to_one", "many_to_many"] | None = Field(
        None,
        alias="validate",
        description="Check the key relationship and fail if it does not hold, e.g. "
        "`many_to_one` when each left row must match at most one right row.",
    )
    match_missing_keys: bool = Field(
        False,
        description="Let missing key values match each other. By default a row whose key is "
        "missing matches nothing (as in SQL) but is still kept by left/right/outer joins.",
    )

    @model_validator(mode="before")
    @classmethod
    def _yaml_on_key(cls, data: object) -> object:
        # YAML 1.1 (PyYAML) reads an unquoted `on:` key as the boolean true.
        if isinstance(data, dict) and "on" not in data and any(k is True for k in data):
            return {("on" if k is True else k): v for k, v in data.items()}
        return data

    @field_validator("suffixes")
    @classmethod
    def _distinct(cls, suffixes: tuple[str, str]) -> tuple[str, str]:
        if suffixes[0] == suffixes[1]:
            raise ValueError("the two suffixes must differ, or shared columns would collide")
        return suffixes


def _merge(left: pd.DataFrame, right: pd.DataFrame, cfg: JoinTables, how: str) -> pd.DataFrame:
    try:
        return left.merge(
            right,
            on=cfg.on,
            how=how,  # type: ignore[arg-type]
            suffixes=cfg.suffixes,
            validate=cfg.validate_,
        )
    except pd.errors.MergeError as exc:
        hint = _VALIDATE_HINT.get(cfg.validate_ or "", "")
        raise ValueError(
            f"join on {quoted(cfg.on)} failed: {exc}" + (f" ({hint})" if hint else "")
        ) from exc
    except (ValueError, TypeError) as exc:
        differ = [
            f"'{c}' is {left[c].dtype} in the left input but {right[c].dtype} in the right"
            for c in cfg.on
            if left[c].dtype != right[c].dtype
        ]
        if differ:
            raise ValueError(
                f"join on {quoted(cfg.on)} failed: key {'; '.join(differ)}; give both the same "
                "type (e.g. with cast_columns)"
            ) from exc
        raise ValueError(f"join on {quoted(cfg.on)} failed: {exc}") from exc


@transformation(name="join_tables")
def join_tables(left: pd.DataFrame, right: pd.DataFrame, cfg: JoinTables) -> pd.DataFrame:
    """Join two tables on key columns (like SQL JOIN).

    Left, inner and right joins keep the row order of the left (right) input; outer joins
    order rows by key.

    Example:
        ```yaml
        enriched:
          uses: join_tables
          inputs: {left: transactions, right: customers}
          with:
            on: [customer_id]
            how: left
            validate: many_to_one
        ```

    Args:
        left: the left table.
        right: the right table.
        cfg: the keys, the kind of join and the checks.

    Returns:
        The joined table: keys, then the left's other columns, then the right's.
    """
    require_columns(left, cfg.on, "the left input")
    require_columns(right, cfg.on, "the right input")
    if cfg.match_missing_keys:
        return _merge(left, right, cfg, cfg.how).reset_index(drop=True)
    left_missing = left[cfg.on].isna().any(axis=1)
    right_missing = right[cfg.on].isna().any(axis=1)
    # Rows with a missing key are kept out of the matching: they join nothing.
    if cfg.how == "left":
        joined = _merge(left, right[~right_missing], cfg, "left")
    elif cfg.how == "right":
        joined = _merge(left[~left_missing], right, cfg, "right")
    elif cfg.how == "inner":
        joined = _merge(left[~left_missing], right[~right_missing], cfg, "inner")
    else:
        matched = _merge(left, right[~right_missing], cfg, "outer")
        # Unmatched right rows with missing keys, laid out like the join's other rows.
        right_only = _merge(left.iloc[:0], right[right_missing], cfg, "right")
        joined = pd.concat([matched, right_only], ignore_index=True) if len(right_only) else matched
    return joined.reset_index(drop=True)


class ConcatTables(TransformConfig):
    """Config of ``concat_tables``."""

    columns: Literal["union", "intersection", "same"] = Field(
        "union",
        description="Columns of the result: all columns of any input (missing cells where an "
        "input lacks one), only those every input has, or `same`: every input must have the "
        "same columns (else an error).",
    )


@transformation(name="concat_tables")
def concat_tables(*frames: pd.DataFrame, cfg: ConcatTables) -> pd.DataFrame:
    """Stack tables on top of each other (rows of the first input, then the second...).

    Columns are matched by name, in the order of the first input.

    Example:
        ```yaml
        all_months:
          uses: concat_tables
          inputs: [january, february, march]
          with:
            columns: same
        ```

    Args:
        *frames: the tables, at least one.
        cfg: how to handle columns that not every input has.

    Returns:
        All rows of all inputs, in input order.
    """
    if not frames:
        raise ValueError("concat_tables needs at least one input table")
    first = list(frames[0].columns)
    if cfg.columns == "same":
        for i, frame in enumerate(frames[1:], start=2):
            lacking = [c for c in first if c not in set(frame.columns)]
            extra = [c for c in frame.columns if c not in set(first)]
            if lacking or extra:
                parts = ([f"lacks {quoted(lacking)}"] if lacking else []) + (
                    [f"has extra {quoted(extra)}"] if extra else []
                )
                raise ValueError(
                    f"input {i} does not have the columns of input 1: it {' and '.join(parts)} "
                    f"(input 1 columns: {preview(first)}); use `columns: union` or `intersection`"
                )
    join: Literal["inner", "outer"] = "inner" if cfg.columns == "intersection" else "outer"
    aligned = [f[first] if cfg.columns == "same" else f for f in frames]
    return pd.concat(aligned, ignore_index=True, join=join, sort=False)
