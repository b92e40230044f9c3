"""Every rule of a schema, passing and failing, and the lazy report of all failures at once."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from tessera.validation import Schema, ValidationReport, validate


def failures(report: ValidationReport) -> list[tuple[str, str, int, list[str]]]:
    """(column, check, failures, samples) of each failing check."""
    return [(r.column, r.check, r.failures, list(r.samples)) for r in report.failures]


@pytest.fixture
def people() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3, 4, 5],
            "age": pd.array([34, 51, None, 19, 77], dtype="Int64"),
            "plan": ["Basic", "Premium", "Basic", "Standard", "Basic"],
            "code": ["C00001", "C00002", "C00003", "C00004", "C00005"],
            "score": [0.5, 0.25, 1.0, 0.0, 0.75],
            "joined": pd.to_datetime(
                ["2023-01-05", "2023-02-01", "2023-03-01", "2023-03-02", "2024-01-01"]
            ),
            "active": [True, False, True, True, False],
        }
    )


@pytest.mark.parametrize(
    ("rules", "good"),
    [
        ("id: {dtype: int64, unique: true}", True),
        ("age: {dtype: Int64, nullable: true, min: 18, max: 77}", True),
        ("age: {dtype: Int64, nullable: true, min: 18, max: 77, max_exclusive: true}", False),
        ("age: {dtype: int, nullable: true, min: 19, min_exclusive: true}", False),
        ("age: {dtype: number, nullable: true}", True),
        ("age: {dtype: Int64}", False),  # a missing value
        ("age: {dtype: int64, nullable: true}", False),  # Int64 is not int64
        ("plan: {dtype: string, isin: [Basic, Premium, Standard]}", True),
        ("plan: {isin: [Basic, Premium]}", False),
        ("plan: {unique: true}", False),
        ("code: {dtype: string, regex: 'C\\d{5}', unique: true}", True),
        ("code: {regex: 'C\\d{4}'}", False),  # full match, not a prefix
        ("score: {dtype: float64, min: 0, max: 1}", True),
        ("score: {dtype: float, min: 0, min_exclusive: true}", False),
        ("score: {dtype: float32}", False),
        ("joined: {dtype: datetime, min: '2023-01-01', max: '2024-01-01'}", True),
        ("joined: {dtype: datetime, max: '2023-12-31'}", False),
        ("joined: {dtype: datetime_tz}", False),
        ("active: {dtype: bool}", True),
        ("active: {dtype: boolean}", False),
        ("active: {dtype: bool, isin: [true]}", False),
        ("extra: {required: false, dtype: string}", True),
        ("extra: {dtype: string}", False),
    ],
)
def test_each_rule(
    people: pd.DataFrame, schema_of: Callable[[str], Schema], rules: str, good: bool
) -> None:
    report = validate(people, schema_of(f"columns:\n  {rules}\n"))
    assert report.ok is good, report.summary


def test_table_rules(people: pd.DataFrame, schema_of: Callable[[str], Schema]) -> None:
    columns = "columns: {id: {}, age: {nullable: true}, plan: {}, code: {}, score: {}}\n"
    assert validate(people, schema_of(columns + "rows: {min: 5, max: 5}")).ok
    assert not validate(people, schema_of(columns + "rows: {min: 6}")).ok
    assert not validate(people, schema_of(columns + "rows: {max: 4}")).ok
    assert validate(people, schema_of(columns)).ok  # not strict: extra columns are fine
    strict = validate(people, schema_of(columns + "strict: true"))
    assert failures(strict) == [("<table>", "strict", 2, ["joined", "active"])]
    assert strict.summary == (
        "1 check failed in the table: <table> (strict: unexpected columns joined, active)"
    )
    assert validate(people, schema_of(columns + "unique: [plan, code]")).ok
    combo = validate(people, schema_of(columns + "unique: [plan, score]"))
    assert combo.ok
    people.loc[4, "score"] = 1.0
    combo = validate(people, schema_of(columns + "unique: [plan, score]"))
    assert failures(combo) == [("<table>", "unique", 2, ["plan=Basic, score=1.0"])]
    assert combo.failures[0].rows == (2, 4)


def test_every_failure_is_reported_at_once(schema_of: Callable[[str], Schema]) -> None:
    df = pd.DataFrame(
        {
            "customer_id": ["C1", "C2", "C2", "C4", "C5", "C6"],
            "age": [34, 150, 16, 16, 999, 40],
            "plan": ["Basic", "Gold", "Basic", "basic", "Gold", None],
        }
    )
    schema = schema_of(
        """
        columns:
          customer_id: {dtype: string, unique: true}
          age: {dtype: int64, min: 18, max: 120}
          plan: {dtype: string, isin: [Basic, Premium]}
          signup: {dtype: datetime}
        rows: {min: 10}
        """
    )
    report = validate(df, schema)
    assert not report.ok
    assert failures(report) == [
        ("<table>", "rows", 1, ["6 rows"]),
        ("customer_id", "unique", 2, ["C2"]),
        ("age", "in_range", 4, ["150", "16", "999"]),
        ("plan", "not_null", 1, ["null"]),
        ("plan", "isin", 3, ["Gold", "basic"]),
        ("signup", "required", 1, []),
    ]
    frame = report.frame
    assert list(frame.columns) == ["column", "check", "failures", "samples", "expected", "rows"]
    assert frame.iloc[2].to_dict() == {
        "column": "age",
        "check": "in_range",
        "failures": 4,
        "samples": "150, 16, 999",
        "expected": ">= 18 and <= 120",
        "rows": "1, 2, 3, 4",
    }
    assert frame["expected"][4] == "one of Basic, Premium"
    assert report.to_dict()["failures"][2]["samples"] == ["150", "16", "999"]
    assert report.to_dict()["failures"][2]["rows"] == [1, 2, 3, 4]
    assert report.failed_columns == ["customer_id", "age", "plan", "signup", "<table>"]
    assert report.summary == (
        "6 checks failed in 4 columns and the table: <table> (rows: 6 rows, expected at least "
        "10 rows), customer_id (unique: 2 rows), age (in_range: 4 rows), plan (not_null: 1 row), "
        "plan (isin: 3 rows), signup (required: missing)"
    )


def test_samples_are_distinct_and_at_most_five(schema_of: Callable[[str], Schema]) -> None:
    df = pd.DataFrame({"x": [-1, -1, -2, -3, -4, -5, -6, -7, 3]})
    report = validate(df, schema_of("columns: {x: {min: 0}}"))
    assert failures(report) == [("x", "in_range", 8, ["-1", "-2", "-3", "-4", "-5"])]
    assert report.failures[0].rows == (0, 1, 2, 3, 4)


def test_samples_show_hidden_whitespace_and_rows_ignore_the_index(
    schema_of: Callable[[str], Schema],
) -> None:
    df = pd.DataFrame({"plan": ["Basic", " Basic", "", "Basic "]}, index=[10, 11, 12, 13])
    report = validate(df, schema_of("columns: {plan: {isin: [Basic]}}"))
    assert failures(report) == [("plan", "isin", 3, ["' Basic'", "''", "'Basic '"])]
    assert report.failures[0].rows == (1, 2, 3)


def test_a_wrong_dtype_is_a_failure_not_an_exception(schema_of: Callable[[str], Schema]) -> None:
    df = pd.DataFrame(
        {
            "age": ["34", "n/a", "51", "unknown"],
            "amount": [1.0, 2.5, np.nan, 4.0],
            "count": [1, 2, 3, 4],
            "when": ["2024-01-01", "soon", None, "2024-02-30"],
        }
    )
    schema = schema_of(
        """
        columns:
          age: {dtype: int64, min: 18}
          amount: {dtype: Int64, nullable: true}
          count: {dtype: Int64, max: 3}
          when: {dtype: datetime, nullable: true, max: '2030-01-01'}
        """
    )
    report = validate(df, schema)
    assert failures(report) == [
        ("age", "dtype", 2, ["n/a", "unknown"]),
        ("amount", "dtype", 1, ["2.5"]),
        ("count", "dtype", 4, []),  # every value fits Int64; the column's type does not
        ("count", "in_range", 1, ["4"]),  # value rules still run on values of the right kind
        ("when", "dtype", 2, ["soon", "2024-02-30"]),  # ... not on values of another kind
    ]
    expected = list(report.frame["expected"])
    assert expected[0] == "int64, got string"
    assert expected[1] == "Int64, got float64"
    assert "age (dtype: expected int64, got string)" in report.summary


def test_string_dtype_accepts_any_text_column(schema_of: Callable[[str], Schema]) -> None:
    schema = schema_of("columns: {s: {dtype: string, nullable: true}}")
    for values in (
        pd.Series(["a", None], dtype=object),
        pd.Series(["a", None], dtype="string"),
        pd.Series(["a", None], dtype="str"),
    ):
        assert validate(pd.DataFrame({"s": values}), schema).ok
    mixed = pd.DataFrame({"s": pd.Series(["a", 1, None], dtype=object)})
    assert failures(validate(mixed, schema)) == [("s", "dtype", 1, ["1"])]


def test_datetime_dtype_accepts_any_resolution_and_tz_bounds(
    schema_of: Callable[[str], Schema],
) -> None:
    for unit in ("s", "ms", "us", "ns"):
        df = pd.DataFrame({"t": pd.to_datetime(["2024-01-01", "2024-06-01"]).as_unit(unit)})
        assert validate(df, schema_of("columns: {t: {dtype: datetime, min: '2024-01-01'}}")).ok
    aware = pd.DataFrame({"t": pd.to_datetime(["2024-01-01 12:00"]).tz_localize("UTC")})
    schema = schema_of("columns: {t: {dtype: datetime_tz, max: '2024-01-01T11:00:00+00:00'}}")
    assert failures(validate(aware, schema)) == [
        ("t", "in_range", 1, ["2024-01-01 12:00:00+00:00"])
    ]
    assert validate(aware, schema_of("columns: {t: {dtype: datetime_tz, min: '2024-01-01'}}")).ok


def test_category_and_regex_on_non_text(schema_of: Callable[[str], Schema]) -> None:
    df = pd.DataFrame({"plan": pd.Categorical(["a", "b", "a"]), "zip": [12345, 2345, 99999]})
    schema = schema_of(
        """
        columns:
          plan: {dtype: category, isin: [a]}
          zip: {dtype: int64, regex: '\\d{5}'}
        """
    )
    assert failures(validate(df, schema)) == [
        ("plan", "isin", 1, ["b"]),
        ("zip", "regex", 1, ["2345"]),
    ]


def test_unique_ignores_missing_values(schema_of: Callable[[str], Schema]) -> None:
    df = pd.DataFrame({"k": [1.0, np.nan, np.nan, 2.0]})
    assert validate(df, schema_of("columns: {k: {unique: true, nullable: true}}")).ok


def test_passing_report(people: pd.DataFrame, schema_of: Callable[[str], Schema]) -> None:
    report = validate(people, schema_of("columns: {id: {dtype: int64, min: 1}}\nrows: {min: 1}"))
    assert report.ok
    assert report.frame.empty
    assert list(report.frame.columns) == [
        "column",
        "check",
        "failures",
        "samples",
        "expected",
        "rows",
    ]
    assert report.summary == "all 5 checks passed on 5 rows"
    assert report.to_dict() == {
        "ok": True,
        "schema": "s.yaml",
        "rows_checked": 5,
        "checks": 5,
        "summary": "all 5 checks passed on 5 rows",
        "failures": [],
    }


def test_an_empty_table(schema_of: Callable[[str], Schema]) -> None:
    df = pd.DataFrame({"a": pd.Series([], dtype="int64")})
    assert validate(df, schema_of("columns: {a: {dtype: int64, min: 0, unique: true}}")).ok
    assert not validate(df, schema_of("columns: {a: {}}\nrows: {min: 1}")).ok


def test_odd_tables_are_reported_not_raised(schema_of: Callable[[str], Schema]) -> None:
    schema = schema_of("columns: {a: {dtype: int64, unique: true}}\nstrict: true")
    duplicated = pd.DataFrame([[1, 2, 3], [1, 4, 5]], columns=["a", "a", "b"])
    assert failures(validate(duplicated, schema)) == [
        ("<table>", "strict", 1, ["b"]),
        ("<table>", "columns", 1, ["a"]),
        ("a", "unique", 2, ["1"]),
    ]
    numbered = pd.DataFrame({0: [1], 1: [2]})
    assert failures(validate(numbered, schema)) == [
        ("<table>", "strict", 2, ["0", "1"]),
        ("a", "required", 1, []),
    ]
    assert failures(validate(pd.DataFrame(), schema)) == [("a", "required", 1, [])]
