"""Row transformations: filter, de-duplicate, sort, sample, one row per entity."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from pydantic import ValidationError

from tessera.transforms.rows import (
    DropDuplicates,
    FilterRows,
    OneRowPer,
    SampleRows,
    SortRows,
    drop_duplicates,
    filter_rows,
    one_row_per,
    sample_rows,
    sort_rows,
)


@pytest.fixture
def df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "k": ["a", "b", "a", "c", "b"],
            "x": [1.0, None, 3.0, 4.0, 2.0],
            "t": pd.to_datetime(
                ["2024-01-02", "2024-01-01", "2024-01-03", "2024-01-01", "2024-01-05"]
            ),
        }
    )


def test_filter_rows(df: pd.DataFrame) -> None:
    out = filter_rows(df, FilterRows(expr="x > 1.5 and k != 'c'"))
    assert_frame_equal(out, df.iloc[[2, 4]].reset_index(drop=True))


def test_filter_rows_on_dates(df: pd.DataFrame) -> None:
    out = filter_rows(df, FilterRows(expr="t >= '2024-01-03'"))
    assert out["k"].tolist() == ["a", "b"]


def test_filter_rows_missing_condition_drops_row() -> None:
    df = pd.DataFrame({"ok": pd.array([True, None, False], dtype="boolean")})
    assert len(filter_rows(df, FilterRows(expr="ok"))) == 1


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("xx > 1", r"uses unknown column 'xx'; did you mean 'x'\?"),
        ("x >", "cannot be evaluated: SyntaxError"),
        ("x + 1", "must give true/false for each row"),
    ],
)
def test_filter_rows_errors(df: pd.DataFrame, expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message) as exc:
        filter_rows(df, FilterRows(expr=expr))
    assert repr(expr) in str(exc.value)


def test_filter_config_validation() -> None:
    with pytest.raises(ValidationError):
        FilterRows(expr="")
    with pytest.raises(ValidationError):
        FilterRows.model_validate({"query": "x > 1"})


def test_drop_duplicates() -> None:
    df = pd.DataFrame({"id": [1, 1, 2, 3, 3], "v": ["a", "b", "c", "d", "d"]})
    assert drop_duplicates(df, DropDuplicates())["v"].tolist() == ["a", "b", "c", "d"]
    assert drop_duplicates(df, DropDuplicates(subset=["id"]))["v"].tolist() == ["a", "c", "d"]
    last = drop_duplicates(df, DropDuplicates(subset=["id"], keep="last"))
    assert_frame_equal(last, pd.DataFrame({"id": [1, 2, 3], "v": ["b", "c", "d"]}))
    assert drop_duplicates(df, DropDuplicates(subset=["id"], keep="none"))["v"].tolist() == ["c"]
    with pytest.raises(ValueError, match="column 'idd' not found"):
        drop_duplicates(df, DropDuplicates(subset=["idd"]))
    with pytest.raises(ValidationError):
        DropDuplicates.model_validate({"keep": False})


def test_sort_rows_is_stable(df: pd.DataFrame) -> None:
    out = sort_rows(df, SortRows(by=["t"]))
    assert out["k"].tolist() == ["b", "c", "a", "a", "b"]
    out = sort_rows(df, SortRows(by=["k", "t"], ascending=[True, False]))
    assert out["t"].dt.day.tolist() == [3, 2, 5, 1, 1]
    assert out.index.tolist() == [0, 1, 2, 3, 4]
    assert sort_rows(df, SortRows(by=["x"], missing="first"))["x"].isna().tolist()[0]


def test_sort_rows_errors(df: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="`ascending` has 1 value"):
        SortRows(by=["k", "t"], ascending=[True])
    with pytest.raises(ValueError, match="column 'tt' not found"):
        sort_rows(df, SortRows(by=["tt"]))


def test_sample_rows_reproducible_and_in_order() -> None:
    df = pd.DataFrame({"i": range(100)})
    a = sample_rows(df, SampleRows(n=10, seed=3))
    b = sample_rows(df, SampleRows(n=10, seed=3))
    assert_frame_equal(a, b)
    assert a["i"].is_monotonic_increasing and len(a) == 10
    assert a.index.tolist() == list(range(10))
    assert not a.equals(sample_rows(df, SampleRows(n=10, seed=4)))
    assert len(sample_rows(df, SampleRows(frac=0.25))) == 25
    assert len(sample_rows(df, SampleRows(frac=2.0, replace=True))) == 200


def test_sample_rows_errors() -> None:
    with pytest.raises(ValueError, match="cannot draw n=5 rows from a table of 2 rows"):
        sample_rows(pd.DataFrame({"i": [1, 2]}), SampleRows(n=5))
    with pytest.raises(ValidationError, match="exactly one of `n`"):
        SampleRows()
    with pytest.raises(ValidationError, match="exactly one of `n`"):
        SampleRows(n=1, frac=0.5)
    with pytest.raises(ValidationError, match="replace: true"):
        SampleRows(frac=1.5)
    with pytest.raises(ValidationError):
        SampleRows(frac=0)


def test_one_row_per(df: pd.DataFrame) -> None:
    last = one_row_per(df, OneRowPer(by=["k"], order_by="t"))
    assert_frame_equal(last, df.iloc[[2, 3, 4]].reset_index(drop=True))
    first = one_row_per(df, OneRowPer(by=["k"], order_by="t", keep="first"))
    assert_frame_equal(first, df.iloc[[0, 1, 3]].reset_index(drop=True))


def test_one_row_per_ties_and_missing_order() -> None:
    df = pd.DataFrame({"k": [1, 1, 1, 2], "t": [1.0, 2.0, 2.0, None], "v": ["a", "b", "c", "d"]})
    assert one_row_per(df, OneRowPer(by=["k"], order_by="t"))["v"].tolist() == ["c", "d"]
    first = one_row_per(df, OneRowPer(by=["k"], order_by="t", keep="first"))
    assert first["v"].tolist() == ["a", "d"]
    with pytest.raises(ValueError, match="column 'tt' not found"):
        one_row_per(df, OneRowPer(by=["k"], order_by="tt"))
