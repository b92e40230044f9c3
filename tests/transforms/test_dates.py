"""Date features: calendar parts and differences between datetimes."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal
from pydantic import ValidationError

from tessera.transforms.dates import DateDiff, DateParts, date_diff, date_parts

ALL_PARTS = [
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


def test_date_parts_from_text() -> None:
    df = pd.DataFrame({"d": ["2024-01-06", "2023-12-31", "2024-03-15 13:45"], "v": [1, 2, 3]})
    out = date_parts(df, DateParts.model_validate({"column": "d", "parts": ALL_PARTS}))
    expected = df.assign(
        d_year=[2024, 2023, 2024],
        d_quarter=[1, 4, 1],
        d_month=[1, 12, 3],
        d_day=[6, 31, 15],
        d_dayofweek=[5, 6, 4],
        d_dayofyear=[6, 365, 75],
        d_hour=[0, 0, 13],
        d_weekofyear=[1, 52, 11],
        d_is_weekend=[True, True, False],
    )
    assert_frame_equal(out, expected)


def test_date_parts_with_missing_dates_and_prefix() -> None:
    df = pd.DataFrame({"d": pd.to_datetime(["2024-01-06", None])})
    out = date_parts(df, DateParts(column="d", parts=["month", "is_weekend"], prefix=""))
    assert_series_equal(out["month"], pd.Series([1.0, None], name="month"))
    assert_series_equal(
        out["is_weekend"], pd.Series([True, None], dtype="boolean", name="is_weekend")
    )


def test_date_parts_errors() -> None:
    df = pd.DataFrame({"d": ["2024-01-06", "not a date"], "n": [1, 2]})
    with pytest.raises(ValueError, match="column 'd' cannot be parsed as dates"):
        date_parts(df, DateParts(column="d", parts=["year"]))
    with pytest.raises(ValueError, match="column 'n' holds numbers"):
        date_parts(df, DateParts(column="n", parts=["year"]))
    with pytest.raises(ValueError, match="column 'dd' not found"):
        date_parts(df, DateParts(column="dd", parts=["year"]))
    with pytest.raises(ValueError, match="output column 'd_year' already exists"):
        date_parts(df.assign(d_year=1), DateParts(column="d", parts=["year"]))
    with pytest.raises(ValidationError):
        DateParts.model_validate({"column": "d", "parts": ["century"]})
    with pytest.raises(ValidationError):
        DateParts.model_validate({"column": "d", "parts": []})
    with pytest.raises(ValidationError, match="duplicates"):
        DateParts.model_validate({"column": "d", "parts": ["year", "year"]})


def test_date_diff() -> None:
    df = pd.DataFrame(
        {
            "start": ["2024-01-01", "2024-01-10", None],
            "end": pd.to_datetime(["2024-01-02 12:00", "2024-01-09 00:00", "2024-01-01 00:00"]),
        }
    )
    out = date_diff(df, DateDiff(start="start", end="end", output="days"))
    assert_series_equal(out["days"], pd.Series([1.5, -1.0, None], name="days"))
    hours = date_diff(df, DateDiff(start="start", end="end", output="h", unit="hours"))
    assert hours["h"].tolist()[:2] == [36.0, -24.0]
    assert out["start"].tolist()[:2] == ["2024-01-01", "2024-01-10"], "inputs unchanged"
    with pytest.raises(ValueError, match="output column 'end' already exists"):
        date_diff(df, DateDiff(start="start", end="end", output="end"))
    with pytest.raises(ValidationError):
        DateDiff.model_validate({"start": "a", "end": "b", "output": "c", "unit": "years"})
