"""Drafting schemas from data: readable YAML that the data itself passes."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import yaml

from tessera.examples.churn_data import generate_events
from tessera.validation import draft_schema, parse_schema, validate
from tessera.validation.draft import outward


def round_trip(df: pd.DataFrame, name: str | None = None) -> dict:
    text = draft_schema(df, name=name)
    report = validate(df, parse_schema(text, "draft.yaml"))
    assert report.ok, report.summary + "\n" + text
    return yaml.safe_load(text)


def test_a_small_frame() -> None:
    df = pd.DataFrame(
        {
            "customer_id": [f"C{i:05d}" for i in range(1, 9)],
            "order_id": [101, 102, 103, 104, 105, 106, 107, 108],
            "age": pd.array([18, 34, None, 51, 77, 23, 45, 38], dtype="Int64"),
            "plan": ["Basic", "Premium", "Basic", "Basic", "Premium", "Basic", "Basic", "Premium"],
            "score": [0.134, 0.5, 0.871, 0.2, 0.33, 0.41, 0.6, 0.79],
            "joined": pd.to_datetime(
                [
                    "2023-01-05 10:30",
                    "2023-02-01",
                    "2023-03-01",
                    "2023-03-02",
                    "2023-04-01",
                    "2023-05-01",
                    "2023-06-01",
                    "2023-12-31 23:59",
                ],
                format="ISO8601",
            ),
            "active": [True, False, True, True, False, True, True, False],
        }
    )
    text = draft_schema(df, name="customers.csv")
    assert text.startswith("# Schema drafted from customers.csv (8 rows, 7 columns).")
    assert "    nullable: true                      # 1 missing (12.5%)\n" in text
    data = round_trip(df, "customers.csv")
    assert data["name"] == "customers.csv"
    columns = data["columns"]
    assert columns["customer_id"] == {"dtype": "string", "regex": r"C\d{5}", "unique": True}
    assert columns["order_id"] == {"dtype": "int64", "min": 101, "max": 108, "unique": True}
    assert columns["age"] == {"dtype": "Int64", "nullable": True, "min": 18, "max": 77}
    assert columns["plan"] == {"dtype": "string", "isin": ["Basic", "Premium"]}
    assert columns["score"] == {"dtype": "float64", "min": 0.13, "max": 0.88}
    assert columns["joined"] == {"dtype": "datetime", "min": "2023-01-05", "max": "2024-01-01"}
    assert columns["active"] == {"dtype": "bool"}
    assert data["rows"] == {"min": 1}
    assert data["strict"] is True


def test_the_churn_example_data() -> None:
    df = generate_events(n_customers=300, seed=3)
    data = round_trip(df, "events.csv")
    columns = data["columns"]
    assert list(columns) == list(df.columns)
    assert columns["customer_id"]["regex"] == r"C\d{5}"
    assert columns["contract"]["isin"] == ["month-to-month", "one_year", "two_year"]
    assert columns["paperless_billing"]["isin"] == ["no", "yes"]  # quoted: not booleans
    assert columns["age"]["dtype"] == "Int64" and columns["age"]["nullable"] is True
    assert columns["churned"] == {"dtype": "int64", "min": 0, "max": 1}
    assert columns["event_time"]["dtype"] == "datetime"
    # Another sample of the same process mostly fits, but a draft is a draft: the bounds are
    # what one sample showed.
    other = generate_events(n_customers=300, seed=4)
    report = validate(other, parse_schema(draft_schema(df), "draft.yaml"))
    assert {f.check for f in report.failures} <= {"in_range", "isin", "not_null", "regex"}


@pytest.mark.parametrize(
    "column",
    [
        pd.Series([], dtype="float64"),
        pd.Series([np.nan, np.nan]),
        pd.Series([None, None], dtype=object),
        pd.Series(["a", 1, 2.5], dtype=object),
        pd.Series(pd.Categorical(["x", "y", "x", None])),
        pd.Series(pd.Categorical([1, 2, 1])),
        pd.Series([True, None, False], dtype="boolean"),
        pd.Series(
            pd.to_datetime(["2024-01-01 10:00", "2024-03-01 00:00"]).tz_localize("Europe/Paris")
        ),
        pd.Series([pd.Timedelta("1D"), pd.Timedelta("2h")]),
        pd.Series([1.5, np.inf, -1.0]),
        pd.Series([0.1, 0.2, 0.3], dtype="float32"),
        pd.Series([7, 7, 7], dtype="uint8"),
        pd.Series([-1e15, 3e15]),
        pd.Series([2**62, 2**62 + 5], dtype="int64"),
        pd.Series(["", " ", "yes", "no", "null", "2024-01-01"]),
        pd.Series(["a", None, "b"], dtype="string"),
        pd.Series([1, None], dtype="Float64"),
    ],
    ids=lambda s: str(s.dtype),
)
def test_unusual_columns_round_trip(column: pd.Series) -> None:
    round_trip(pd.DataFrame({"value": column, "with space": range(len(column))}))


def test_an_empty_table() -> None:
    data = round_trip(pd.DataFrame({"a": pd.Series([], dtype="int64")}))
    assert data["columns"]["a"] == {"dtype": "int64"}
    assert "rows" not in data


def test_odd_column_names_are_quoted() -> None:
    df = pd.DataFrame({"yes": [1, 2], "1": ["a", "b"], "a: b": [1.0, 2.0], "#x": [1, 2]})
    data = round_trip(df)
    assert list(data["columns"]) == ["yes", "1", "a: b", "#x"]


@pytest.mark.parametrize(
    ("lo", "hi", "integer", "expected"),
    [
        (18, 999, True, (10, 1000)),
        (0, 1, True, (0, 1)),
        (1, 5, True, (1, 5)),
        (0.134, 0.871, False, (0.13, 0.88)),
        (-83.54, 109.4, False, (-90, 110)),
        (0.83, 9999.99, False, (0, 10000)),
        (5.0, 5.0, False, (5, 5)),
        (0.0, 0.0, False, (0.0, 0.0)),
        (1e-7, 3e-7, False, (1e-7, 3e-7)),
        (-7, -3, True, (-7, -3)),
    ],
)
def test_outward_rounding(lo: float, hi: float, integer: bool, expected: tuple) -> None:
    low, high = outward(lo, hi, integer=integer)
    assert (low, high) == pytest.approx(expected)
    assert low <= lo and high >= hi
