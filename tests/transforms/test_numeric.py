"""Numeric transformations: clip, log, power, bins, ratios, derived columns."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal, assert_series_equal
from pydantic import ValidationError

from tessera.transforms.numeric import (
    BinValues,
    Bounds,
    ClipValues,
    DeriveColumn,
    LogTransform,
    PowerTransform,
    RatioColumns,
    bin_values,
    clip_values,
    derive_column,
    log_transform,
    power_transform,
    ratio_columns,
)


@pytest.fixture
def df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "a": [1, 5, 10, 20],
            "b": [0.0, 2.0, 4.0, None],
            "s": ["w", "x", "y", "z"],
        }
    )


def test_clip_values(df: pd.DataFrame) -> None:
    cfg = ClipValues.model_validate({"bounds": {"a": {"lower": 2, "upper": 12}, "b": {"upper": 3}}})
    out = clip_values(df, cfg)
    assert_series_equal(out["a"], pd.Series([2, 5, 10, 12], name="a"))
    assert_series_equal(out["b"], pd.Series([0.0, 2.0, 3.0, None], name="b"))
    fractional = clip_values(df, ClipValues(bounds={"a": Bounds(lower=2.5)}))
    assert fractional["a"].tolist() == [2.5, 5.0, 10.0, 20.0]


def test_clip_errors(df: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="set `lower`, `upper` or both"):
        ClipValues.model_validate({"bounds": {"a": {}}})
    with pytest.raises(ValidationError, match="is above `upper`"):
        Bounds(lower=3, upper=1)
    with pytest.raises(ValidationError, match=r"bounds\.a\.low"):
        ClipValues.model_validate({"bounds": {"a": {"low": 1}}})
    with pytest.raises(ValueError, match="column 's' must be numeric"):
        clip_values(df, ClipValues(bounds={"s": Bounds(lower=0)}))
    with pytest.raises(ValueError, match="column 'aa' not found"):
        clip_values(df, ClipValues(bounds={"aa": Bounds(lower=0)}))


def test_log_transform(df: pd.DataFrame) -> None:
    out = log_transform(df, LogTransform(columns=["a"], base="10"))
    assert out["a"].tolist() == pytest.approx([0.0, math.log10(5), 1.0, math.log10(20)])
    out = log_transform(df, LogTransform(columns=["b"], offset=1, suffix="_log"))
    assert out["b"].equals(df["b"])
    assert out["b_log"].tolist()[:3] == pytest.approx([0.0, math.log(3), math.log(5)])
    assert math.isnan(out["b_log"].iloc[3])
    assert log_transform(df, LogTransform(columns=["a"], base="2"))["a"].iloc[0] == 0.0


def test_log_transform_errors(df: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"column 'b' has 1 value\(s\) where value \+ offset <= 0"):
        log_transform(df, LogTransform(columns=["b"]))
    with pytest.raises(ValueError, match="column 's' must be numeric"):
        log_transform(df, LogTransform(columns=["s"]))
    with pytest.raises(ValueError, match="output column 'b_log' already exists"):
        log_transform(
            df.rename(columns={"s": "b_log"}), LogTransform(columns=["a", "b"], suffix="_log")
        )
    with pytest.raises(ValidationError):
        LogTransform.model_validate({"columns": ["a"], "base": "3"})


def test_power_transform(df: pd.DataFrame) -> None:
    out = power_transform(df, PowerTransform(columns=["a"], power=2))
    assert out["a"].tolist() == [1.0, 25.0, 100.0, 400.0]
    out = power_transform(df, PowerTransform(columns=["b"], power=0.5, suffix="_sqrt"))
    assert out["b_sqrt"].tolist()[:3] == pytest.approx([0.0, math.sqrt(2), 2.0])
    neg = pd.DataFrame({"x": [-2.0, 3.0]})
    assert power_transform(neg, PowerTransform(columns=["x"], power=3))["x"].tolist() == [
        -8.0,
        27.0,
    ]


def test_power_transform_errors(df: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="column 'x' has negative values"):
        power_transform(pd.DataFrame({"x": [-1.0]}), PowerTransform(columns=["x"], power=0.5))
    with pytest.raises(ValueError, match="column 'b' has zeros"):
        power_transform(df, PowerTransform(columns=["b"], power=-1))
    with pytest.raises(ValidationError, match="power of 0"):
        PowerTransform(columns=["a"], power=0)


def test_bin_values(df: pd.DataFrame) -> None:
    out = bin_values(df, BinValues(column="a", edges=[0, 5, 15], labels=["low", "high"]))
    assert out["a_bin"].tolist()[:3] == ["low", "low", "high"]
    assert pd.isna(out["a_bin"].iloc[3]), "outside the edges"
    assert out["a_bin"].cat.ordered
    assert list(out["a_bin"].cat.categories) == ["low", "high"]
    assert list(out.columns) == ["a", "b", "s", "a_bin"]


def test_bin_values_default_labels_and_options(df: pd.DataFrame) -> None:
    out = bin_values(df, BinValues(column="a", edges=[1, 5, 20.5], output="band"))
    assert pd.isna(out["band"].iloc[0]) and out["band"].iloc[1] == "(1, 5]"
    assert list(out["band"].cat.categories) == ["(1, 5]", "(5, 20.5]"]
    lowest = bin_values(df, BinValues(column="a", edges=[1, 5, 20.5], include_lowest=True))
    assert lowest["a_bin"].iloc[0] == "[1, 5]"
    left = bin_values(df, BinValues(column="a", edges=[1, 5, 20.5], right=False))
    assert left["a_bin"].tolist() == ["[1, 5)", "[5, 20.5)", "[5, 20.5)", "[5, 20.5)"]
    inplace = bin_values(df, BinValues(column="a", edges=[0, 100], labels=["all"], output="a"))
    assert list(inplace.columns) == ["a", "b", "s"] and inplace["a"].tolist() == ["all"] * 4


def test_bin_values_validation(df: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="strictly increasing"):
        BinValues(column="a", edges=[0, 5, 5])
    with pytest.raises(ValidationError):
        BinValues(column="a", edges=[0])
    with pytest.raises(ValidationError, match="3 edges make 2 bins, but 1 labels"):
        BinValues(column="a", edges=[0, 1, 2], labels=["x"])
    with pytest.raises(ValidationError, match="duplicates: 'x'"):
        BinValues(column="a", edges=[0, 1, 2], labels=["x", "x"])
    with pytest.raises(ValueError, match="output column 'b' already exists"):
        bin_values(df, BinValues(column="a", edges=[0, 1], output="b"))


def test_ratio_columns(df: pd.DataFrame) -> None:
    out = ratio_columns(df, RatioColumns(numerator="a", denominator="b", output="r"))
    assert out["r"].tolist()[1:3] == [2.5, 2.5]
    assert out["r"].isna().tolist() == [True, False, False, True]
    zero = ratio_columns(df, RatioColumns(numerator="a", denominator="b", output="r", on_zero=0))
    assert zero["r"].tolist()[:3] == [0.0, 2.5, 2.5] and math.isnan(zero["r"].iloc[3])
    with pytest.raises(ValueError, match="column 's' must be numeric"):
        ratio_columns(df, RatioColumns(numerator="s", denominator="b", output="r"))
    with pytest.raises(ValueError, match="output column 'a' already exists"):
        ratio_columns(df, RatioColumns(numerator="a", denominator="b", output="a"))


def test_derive_column(df: pd.DataFrame) -> None:
    out = derive_column(df, DeriveColumn(output="c", expr="a * 2 + b"))
    assert_series_equal(out["c"], pd.Series([2.0, 12.0, 24.0, None], name="c"))
    out = derive_column(df, DeriveColumn(output="a", expr="a - 1"))
    assert out["a"].tolist() == [0, 4, 9, 19]
    assert derive_column(df, DeriveColumn(output="big", expr="a > 5"))["big"].tolist() == [
        False,
        False,
        True,
        True,
    ]
    assert derive_column(df, DeriveColumn(output="one", expr="1"))["one"].tolist() == [1] * 4
    assert_frame_equal(df, df.copy())


@pytest.mark.parametrize(
    ("expr", "message"),
    [
        ("aa + 1", r"uses unknown column 'aa'; did you mean 'a'\?"),
        ("c = a + 1", "assigns columns"),
        ("a +", "cannot be evaluated"),
        ("@df", "refers to the variable '@df'; only the table's columns"),
    ],
)
def test_derive_column_errors(df: pd.DataFrame, expr: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        derive_column(df, DeriveColumn(output="c", expr=expr))
