"""Column transformations: select, drop, rename, cast, replace values, clean strings."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal
from pydantic import ValidationError

from tessera.transforms.columns import (
    CastColumns,
    CleanStrings,
    DropColumns,
    RenameColumns,
    ReplaceValues,
    SelectColumns,
    cast_columns,
    clean_strings,
    drop_columns,
    rename_columns,
    replace_values,
    select_columns,
)


def test_select_columns_in_given_order(people: pd.DataFrame) -> None:
    out = select_columns(people, SelectColumns(columns=["income", "name"]))
    assert_frame_equal(out, people[["income", "name"]])


def test_select_missing_column(people: pd.DataFrame) -> None:
    with pytest.raises(
        ValueError, match="column 'nam' not found in the input; did you mean 'name'"
    ):
        select_columns(people, SelectColumns(columns=["nam"]))


def test_select_config_validation() -> None:
    with pytest.raises(ValidationError):
        SelectColumns(columns=[])
    with pytest.raises(ValidationError, match="duplicates: 'a'"):
        SelectColumns(columns=["a", "a"])
    with pytest.raises(ValidationError, match="Extra inputs are not permitted"):
        SelectColumns.model_validate({"columns": ["a"], "colour": 1})


def test_drop_columns(people: pd.DataFrame) -> None:
    out = drop_columns(people, DropColumns(columns=["age"]))
    assert_frame_equal(out, people[["name", "income"]])
    with pytest.raises(ValueError, match="column 'agee' not found"):
        drop_columns(people, DropColumns(columns=["agee"]))
    out = drop_columns(people, DropColumns(columns=["agee", "age"], missing_ok=True))
    assert list(out.columns) == ["name", "income"]


def test_rename_columns(people: pd.DataFrame) -> None:
    out = rename_columns(people, RenameColumns(mapping={"name": "first_name", "age": "years"}))
    assert list(out.columns) == ["first_name", "years", "income"]
    assert out["years"].tolist() == [31, 45, 27]


def test_rename_errors(people: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="column 'nme' not found"):
        rename_columns(people, RenameColumns(mapping={"nme": "x"}))
    with pytest.raises(ValueError, match="duplicate columns 'age'"):
        rename_columns(people, RenameColumns(mapping={"name": "age"}))
    # Swapping two names is fine.
    out = rename_columns(people, RenameColumns(mapping={"name": "age", "age": "name"}))
    assert out["name"].tolist() == [31, 45, 27]
    with pytest.raises(ValidationError, match="renamed to 'x'"):
        RenameColumns(mapping={"a": "x", "b": "x"})
    with pytest.raises(ValidationError):
        RenameColumns(mapping={})


def test_cast_columns() -> None:
    df = pd.DataFrame(
        {
            "i": ["1", "2", "3"],
            "f": [1, 2, 3],
            "n": [1.0, None, 3.0],
            "s": [1, 2, 3],
            "c": ["x", "y", "x"],
            "b": ["yes", "No", " TRUE "],
            "nb": ["t", None, "f"],
            "d": ["2024-01-31", "2024-02-01", None],
            "f32": [0.5, 1.5, 2.5],
        }
    )
    out = cast_columns(
        df,
        CastColumns(
            dtypes={
                "i": "int64",
                "f": "float64",
                "n": "Int64",
                "s": "string",
                "c": "category",
                "b": "bool",
                "nb": "boolean",
                "d": "datetime",
                "f32": "float32",
            }
        ),
    )
    assert out["i"].tolist() == [1, 2, 3] and out["i"].dtype == "int64"
    assert out["f"].dtype == "float64"
    assert_series_equal(out["n"], pd.Series([1, None, 3], dtype="Int64", name="n"))
    assert out["s"].dtype == pd.StringDtype() and out["s"].tolist() == ["1", "2", "3"]
    assert isinstance(out["c"].dtype, pd.CategoricalDtype)
    assert out["b"].tolist() == [True, False, True] and out["b"].dtype == bool
    assert_series_equal(out["nb"], pd.Series([True, None, False], dtype="boolean", name="nb"))
    assert out["d"].iloc[0] == pd.Timestamp("2024-01-31") and pd.isna(out["d"].iloc[2])
    assert out["f32"].dtype == "float32"


@pytest.mark.parametrize(
    ("values", "dtype", "message"),
    [
        ([1.0, None], "int64", "column 'x' has 1 missing value.*cast to Int64"),
        ([1.5, 2.0], "Int64", "column 'x' has non-integer values"),
        (["1", "abc"], "float64", "cannot cast column 'x' to float64"),
        (["maybe", "yes"], "bool", "column 'x' has values that are not booleans.*'maybe'"),
        ([True, None], "bool", "column 'x' has 1 missing value.*boolean"),
        (["not a date", None], "datetime", "column 'x' cannot be parsed as dates"),
        ([1, 2], "datetime", "column 'x' holds numbers"),
    ],
)
def test_cast_errors_name_the_column(values: list[object], dtype: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        cast_columns(
            pd.DataFrame({"x": values}), CastColumns.model_validate({"dtypes": {"x": dtype}})
        )


def test_cast_config_validation() -> None:
    with pytest.raises(ValidationError, match=r"dtypes\.x"):
        CastColumns.model_validate({"dtypes": {"x": "int"}})
    with pytest.raises(ValidationError):
        CastColumns(dtypes={})


def test_replace_values_is_simultaneous_and_typed() -> None:
    df = pd.DataFrame({"s": ["a", "b", "c", None], "n": [1, 999, 3, 999]})
    cfg = ReplaceValues.model_validate({"mapping": {"s": {"a": "b", "b": "c"}, "n": {999: None}}})
    out = replace_values(df, cfg)
    assert out["s"].tolist()[:3] == ["b", "c", "c"] and pd.isna(out["s"].iloc[3])
    assert_series_equal(out["n"], pd.Series([1.0, None, 3.0, None], name="n"))


def test_replace_values_unmapped() -> None:
    df = pd.DataFrame({"plan": ["free", "pro", "gold", None]})
    mapping = {"plan": {"free": 0, "pro": 2}}
    out = replace_values(
        df, ReplaceValues.model_validate({"mapping": mapping, "unmapped": "missing"})
    )
    assert_series_equal(out["plan"], pd.Series([0.0, 2.0, None, None], name="plan"))
    with pytest.raises(
        ValueError, match=r"column 'plan' has values the mapping does not list.*'gold'"
    ):
        replace_values(df, ReplaceValues.model_validate({"mapping": mapping, "unmapped": "error"}))
    with pytest.raises(ValueError, match="column 'plam' not found"):
        replace_values(df, ReplaceValues.model_validate({"mapping": {"plam": {"a": "b"}}}))
    with pytest.raises(ValidationError, match="no values to replace for 'plan'"):
        ReplaceValues.model_validate({"mapping": {"plan": {}}})


def test_clean_strings() -> None:
    df = pd.DataFrame({"city": ["  New   York ", "PARIS", "  ", None], "n": [1, 2, 3, 4]})
    cfg = CleanStrings(
        columns=["city"], lower=True, collapse_whitespace=True, empty_as_missing=True
    )
    out = clean_strings(df, cfg)
    assert out["city"].tolist()[:2] == ["new york", "paris"]
    assert out["city"].isna().tolist() == [False, False, True, True]
    assert out["n"].tolist() == [1, 2, 3, 4]
    only_strip = clean_strings(df, CleanStrings(columns=["city"]))
    assert only_strip["city"].tolist()[:3] == ["New   York", "PARIS", ""]


def test_clean_strings_errors() -> None:
    df = pd.DataFrame({"n": [1, 2]})
    with pytest.raises(ValueError, match="column 'n' is not text"):
        clean_strings(df, CleanStrings(columns=["n"]))
    with pytest.raises(ValidationError, match="every cleaning step is off"):
        CleanStrings(columns=["n"], strip=False)
