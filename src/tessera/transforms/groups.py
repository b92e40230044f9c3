"""Group statistics: aggregates of columns per group, as a summary table or joined back.

Note on leakage: a group statistic computed before a train/test split mixes test rows into the
features of training rows (e.g. a customer's mean spend including future purchases). Compute
per-entity history features with ``rolling_aggregate`` (``include_current: false``) when rows
are events in time.
"""

from __future__ import annotations

from typing import Literal, cast

import pandas as pd
from pydantic import Field, field_validator, model_validator

from tessera.pipeline.registry import transformation
from tessera.transforms._common import (
    TransformConfig,
    fresh_index,
    quoted,
    require_absent,
    require_columns,
)

Agg = Literal["mean", "sum", "min", "max", "std", "count", "nunique", "first", "last", "median"]


class GroupAggregate(TransformConfig):
    """Config of ``group_aggregate``."""

    by: list[str] = Field(min_length=1, description="The columns defining the groups.")
    aggregations: dict[str, list[Agg]] = Field(
        min_length=1,
        description="Column -> aggregates: mean, sum, min, max, std, count (non-missing "
        "values), nunique, first, last (first/last non-missing value by `order_by`), median.",
    )
    join_back: bool = Field(
        True,
        description="Keep every row and add its group's values (true), or return one row per "
        "group with the group columns first, sorted by them (false).",
    )
    order_by: str | None = Field(
        None,
        min_length=1,
        description="Order of rows within a group; required by `first` and `last`.",
    )
    size: str | None = Field(
        None,
        min_length=1,
        description="Also add a column of this name holding the number of rows per group.",
    )

    @field_validator("aggregations")
    @classmethod
    def _some_aggregates(cls, aggregations: dict[str, list[Agg]]) -> dict[str, list[Agg]]:
        empty = [column for column, aggs in aggregations.items() if not aggs]
        if empty:
            raise ValueError(f"no aggregates given for {quoted(empty)}")
        return aggregations

    @model_validator(mode="after")
    def _check(self) -> GroupAggregate:
        ordered = sorted(
            {a for aggs in self.aggregations.values() for a in aggs if a in ("first", "last")}
        )
        if ordered and self.order_by is None:
            raise ValueError(
                f"aggregate(s) {quoted(ordered)} need `order_by` to say which row comes first"
            )
        keys = [c for c in self.aggregations if c in self.by]
        if keys:
            raise ValueError(
                f"cannot aggregate group column(s) {quoted(keys)}; use `size` to count rows"
            )
        return self

    def output_names(self) -> list[str]:
        names = [f"{c}_{a}" for c, aggs in self.aggregations.items() for a in aggs]
        return [*names, self.size] if self.size else names


@transformation(name="group_aggregate")
def group_aggregate(df: pd.DataFrame, cfg: GroupAggregate) -> pd.DataFrame:
    """Compute aggregates of columns per group, joined back to every row or one row per group.

    Rows with missing group keys form their own group.

    Example:
        ```yaml
        customer_stats:
          uses: group_aggregate
          inputs: [clean]
          with:
            by: [customer_id]
            aggregations:
              amount: [mean, max, count]
              plan: [last]
            order_by: event_time
            join_back: false
        ```

    Args:
        df: the table.
        cfg: the groups, the aggregates and the output shape.

    Returns:
        With ``join_back``, the table plus one column per aggregate named ``{column}_{agg}``;
        otherwise the group columns and the aggregates, one row per group sorted by group.
    """
    require_columns(df, [*cfg.by, *cfg.aggregations, *([cfg.order_by] if cfg.order_by else [])])
    data = fresh_index(df)
    names = cfg.output_names()
    if cfg.join_back:
        require_absent(data, names, "rename the existing columns first, or set `join_back: false`")
    clash = [n for n in names if n in cfg.by]
    if clash:
        raise ValueError(f"aggregate column(s) {quoted(clash)} would replace group columns")
    source = data.sort_values(cfg.order_by, kind="stable") if cfg.order_by else data
    grouped = source.groupby(cfg.by, sort=not cfg.join_back, dropna=False)
    results: dict[str, pd.Series] = {}
    for column, aggs in cfg.aggregations.items():
        for agg in aggs:
            try:
                if cfg.join_back:
                    results[f"{column}_{agg}"] = grouped[column].transform(agg)
                else:
                    results[f"{column}_{agg}"] = grouped[column].agg(agg)
            except (TypeError, ValueError) as exc:
                raise ValueError(
                    f"cannot compute {agg} of column '{column}' ({data[column].dtype}): {exc}"
                ) from exc
    if cfg.size:
        results[cfg.size] = (
            cast(pd.Series, grouped.transform("size")) if cfg.join_back else grouped.size()
        )
    if cfg.join_back:
        return data.assign(**results)
    return pd.DataFrame(results).reset_index()
