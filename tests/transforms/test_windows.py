"""Lags and rolling aggregates: per group, in time order, results in the input's row order."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal
from pydantic import ValidationError

from tessera.transforms.windows import (
    LagColumns,
    RollingAggregate,
    lag_columns,
    rolling_aggregate,
)

NaN = math.nan

# events (see conftest): a's amounts in time order are 1, 20, 300 (rows 3, 1, 5);
# b's are 10, 20, 30 (rows 2, 4, 0).


def test_lag_per_group_keeps_input_order(events: pd.DataFrame) -> None:
    cfg = LagColumns(columns=["amount"], by=["customer_id"], order_by="event_time", periods=[1, 2])
    out = lag_columns(events, cfg)
    assert_frame_equal(out[list(events.columns)], events)
    assert_series_equal(
        out["amount_lag1"], pd.Series([20.0, 1.0, NaN, NaN, 10.0, 20.0], name="amount_lag1")
    )
    assert_series_equal(
        out["amount_lag2"], pd.Series([10.0, NaN, NaN, NaN, NaN, 1.0], name="amount_lag2")
    )


def test_lag_without_groups(events: pd.DataFrame) -> None:
    out = lag_columns(events, LagColumns(columns=["amount"], order_by="event_time"))
    # Time order (stable): rows 2, 3 (Jan 1), 1, 4 (Jan 2), 0, 5 (Jan 3).
    assert out["amount_lag1"].tolist()[:2] == [20.0, 1.0]
    assert math.isnan(out["amount_lag1"].iloc[2])
    assert out["amount_lag1"].tolist()[3:] == [10.0, 20.0, 30.0]


def test_lag_ignores_a_non_default_index(events: pd.DataFrame) -> None:
    shuffled = events.set_axis([10, 7, 3, 99, 0, 5])
    out = lag_columns(
        shuffled, LagColumns(columns=["amount"], by=["customer_id"], order_by="event_time")
    )
    assert out.index.tolist() == list(range(6))
    assert out["amount_lag1"].tolist()[:2] == [20.0, 1.0]


def test_lag_errors(events: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="column 'amnt' not found"):
        lag_columns(events, LagColumns(columns=["amnt"], order_by="event_time"))
    with pytest.raises(ValueError, match=r"column 'time' not found.*did you mean 'event_time'"):
        lag_columns(events, LagColumns(columns=["amount"], order_by="time"))
    with pytest.raises(ValueError, match="output column 'amount_lag1' already exists"):
        lag_columns(
            events.assign(amount_lag1=0), LagColumns(columns=["amount"], order_by="event_time")
        )
    for periods in (0, -1, [], [1, 1]):
        with pytest.raises(ValidationError):
            LagColumns.model_validate({"columns": ["a"], "order_by": "t", "periods": periods})
    with pytest.raises(ValidationError):
        LagColumns.model_validate({"columns": ["a"]})


def test_rolling_includes_current_row(events: pd.DataFrame) -> None:
    cfg = RollingAggregate(
        columns=["amount"],
        by=["customer_id"],
        order_by="event_time",
        window=2,
        aggs=["mean", "count", "max"],
    )
    out = rolling_aggregate(events, cfg)
    assert_frame_equal(out[list(events.columns)], events)
    assert out["amount_roll2_mean"].tolist() == [25.0, 10.5, 10.0, 1.0, 15.0, 160.0]
    assert out["amount_roll2_count"].tolist() == [2.0, 2.0, 1.0, 1.0, 2.0, 2.0]
    assert out["amount_roll2_max"].tolist() == [30.0, 20.0, 10.0, 1.0, 20.0, 300.0]


def test_rolling_excluding_current_row_does_not_leak(events: pd.DataFrame) -> None:
    cfg = RollingAggregate(
        columns=["amount"],
        by=["customer_id"],
        order_by="event_time",
        window=2,
        aggs=["mean", "sum"],
        include_current=False,
    )
    out = rolling_aggregate(events, cfg)
    assert_series_equal(
        out["amount_roll2_mean"],
        pd.Series([15.0, 1.0, NaN, NaN, 10.0, 10.5], name="amount_roll2_mean"),
    )
    # Changing a row's own value never changes its feature (nor earlier rows' features).
    changed = events.copy()
    changed.loc[5, "amount"] = -1.0e6
    again = rolling_aggregate(changed, cfg)
    assert_series_equal(again["amount_roll2_sum"], out["amount_roll2_sum"])


def test_rolling_min_periods_and_no_groups(events: pd.DataFrame) -> None:
    cfg = RollingAggregate(
        columns=["amount"], order_by="event_time", window=3, aggs=["sum"], min_periods=3
    )
    out = rolling_aggregate(events, cfg)
    # Time order: 10, 1, 20, 20, 30, 300 (rows 2, 3, 1, 4, 0, 5).
    assert_series_equal(
        out["amount_roll3_sum"],
        pd.Series([70.0, 31.0, NaN, NaN, 41.0, 350.0], name="amount_roll3_sum"),
    )


def test_rolling_errors(events: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="column 'customer_id' must be numeric"):
        rolling_aggregate(
            events, RollingAggregate(columns=["customer_id"], order_by="event_time", window=2)
        )
    with pytest.raises(ValidationError, match=r"min_periods \(3\) cannot exceed window \(2\)"):
        RollingAggregate(columns=["a"], order_by="t", window=2, min_periods=3)
    with pytest.raises(ValidationError):
        RollingAggregate(columns=["a"], order_by="t", window=0)
    with pytest.raises(ValidationError):
        RollingAggregate.model_validate(
            {"columns": ["a"], "order_by": "t", "window": 2, "aggs": ["median"]}
        )
