"""group_aggregate: joined back to every row, or one row per group."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal
from pydantic import ValidationError

from tessera.transforms.groups import GroupAggregate, group_aggregate


def test_join_back_keeps_rows_and_order(events: pd.DataFrame) -> None:
    cfg = GroupAggregate.model_validate(
        {
            "by": ["customer_id"],
            "aggregations": {"amount": ["mean", "sum", "count", "first", "last"]},
            "order_by": "event_time",
            "size": "n_events",
        }
    )
    out = group_aggregate(events, cfg)
    assert_frame_equal(out[list(events.columns)], events)
    is_a = events["customer_id"] == "a"
    assert out["amount_mean"].tolist() == [107.0 if a else 20.0 for a in is_a]
    assert out["amount_sum"].tolist() == [321.0 if a else 60.0 for a in is_a]
    assert out["amount_count"].tolist() == [3] * 6
    # first / last follow event_time, not the input order.
    assert out["amount_first"].tolist() == [1.0 if a else 10.0 for a in is_a]
    assert out["amount_last"].tolist() == [300.0 if a else 30.0 for a in is_a]
    assert out["n_events"].tolist() == [3] * 6


def test_one_row_per_group_sorted_by_keys(events: pd.DataFrame) -> None:
    cfg = GroupAggregate.model_validate(
        {
            "by": ["customer_id"],
            "aggregations": {"amount": ["min", "max", "median", "last"]},
            "order_by": "event_time",
            "join_back": False,
            "size": "n",
        }
    )
    out = group_aggregate(events, cfg)
    expected = pd.DataFrame(
        {
            "customer_id": ["a", "b"],
            "amount_min": [1.0, 10.0],
            "amount_max": [300.0, 30.0],
            "amount_median": [20.0, 20.0],
            "amount_last": [300.0, 30.0],
            "n": [3, 3],
        }
    )
    assert_frame_equal(out, expected)


def test_several_keys_missing_keys_and_text_columns() -> None:
    df = pd.DataFrame(
        {
            "g": ["x", "x", None, "y", None],
            "h": [1, 2, 1, 1, 1],
            "v": [1.0, 2.0, 3.0, 4.0, 5.0],
            "s": ["p", "q", "p", "r", "s"],
        }
    )
    cfg = GroupAggregate.model_validate(
        {"by": ["g"], "aggregations": {"v": ["std"], "s": ["nunique"]}, "join_back": False}
    )
    out = group_aggregate(df, cfg)
    assert out["g"].tolist()[:2] == ["x", "y"] and pd.isna(out["g"].iloc[2])
    assert out["s_nunique"].tolist() == [2, 1, 2]
    assert out["v_std"].iloc[0] == pytest.approx(math.sqrt(0.5))
    two = GroupAggregate.model_validate({"by": ["g", "h"], "aggregations": {"v": ["sum"]}})
    assert_series_equal(
        group_aggregate(df, two)["v_sum"], pd.Series([1.0, 2.0, 8.0, 4.0, 8.0], name="v_sum")
    )


def test_errors(events: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="'first', 'last' need `order_by`"):
        GroupAggregate.model_validate(
            {"by": ["customer_id"], "aggregations": {"amount": ["first", "last"]}}
        )
    with pytest.raises(ValidationError, match="cannot aggregate group column"):
        GroupAggregate.model_validate({"by": ["k"], "aggregations": {"k": ["count"]}})
    with pytest.raises(ValidationError):
        GroupAggregate.model_validate({"by": [], "aggregations": {"a": ["sum"]}})
    with pytest.raises(ValidationError):
        GroupAggregate.model_validate({"by": ["k"], "aggregations": {"a": ["mode"]}})
    with pytest.raises(ValidationError):
        GroupAggregate.model_validate({"by": ["k"], "aggregations": {"a": []}})
    with pytest.raises(ValueError, match="column 'amnt' not found"):
        group_aggregate(events, GroupAggregate(by=["customer_id"], aggregations={"amnt": ["sum"]}))
    with pytest.raises(ValueError, match="cannot compute mean of column 'customer_id'"):
        group_aggregate(
            events, GroupAggregate(by=["amount"], aggregations={"customer_id": ["mean"]})
        )
    with pytest.raises(ValueError, match="output column 'amount_sum' already exists"):
        group_aggregate(
            events.assign(amount_sum=0),
            GroupAggregate(by=["customer_id"], aggregations={"amount": ["sum"]}),
        )
