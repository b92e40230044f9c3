"""Missing values: fill with constants, drop incomplete rows, flag gaps."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from pydantic import ValidationError

import tessera.transforms.missing as missing_module
from tessera.transforms.missing import (
    DropMissing,
    FillMissing,
    FlagMissing,
    drop_missing,
    fill_missing,
    flag_missing,
)


@pytest.fixture
def df() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "city": ["Oslo", None, "Rome"],
            "n": [1.0, None, None],
            "flag": pd.array([True, None, False], dtype="boolean"),
            "when": pd.to_datetime(["2024-01-01", None, "2024-01-03"]),
            "cat": pd.Categorical(["x", None, "y"]),
        }
    )


def test_fill_missing(df: pd.DataFrame) -> None:
    cfg = FillMissing.model_validate(
        {
            "values": {
                "city": "unknown",
                "n": 0,
                "flag": False,
                "when": "2000-01-01",
                "cat": "other",
            }
        }
    )
    out = fill_missing(df, cfg)
    expected = pd.DataFrame(
        {
            "city": ["Oslo", "unknown", "Rome"],
            "n": [1.0, 0.0, 0.0],
            "flag": pd.array([True, False, False], dtype="boolean"),
            "when": pd.to_datetime(["2024-01-01", "2000-01-01", "2024-01-03"]),
            "cat": pd.Categorical(["x", "other", "y"], categories=["x", "y", "other"]),
        }
    )
    assert_frame_equal(out, expected)
    assert df["city"].isna().sum() == 1, "the input is not modified"


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("n", "zero", "column 'n' holds numbers .* fill value 'zero' is not a number"),
        ("n", True, "column 'n' holds numbers"),
        ("city", 0, "column 'city' holds text; fill value 0 is not text"),
        ("flag", "no", "column 'flag' holds booleans"),
        ("when", "someday", "column 'when' holds dates"),
        ("nope", 1, "column 'nope' not found"),
    ],
)
def test_fill_missing_type_errors(
    df: pd.DataFrame, column: str, value: object, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        fill_missing(df, FillMissing.model_validate({"values": {column: value}}))


def test_fill_missing_config_and_docs() -> None:
    with pytest.raises(ValidationError):
        FillMissing.model_validate({"values": {"n": [1, 2]}})
    with pytest.raises(ValidationError):
        FillMissing.model_validate({"values": {"n": "mean"}, "strategy": "mean"})
    with pytest.raises(ValidationError):
        FillMissing(values={})
    # Learned statistics are deliberately absent, and the docs say why.
    assert "leak" in (missing_module.__doc__ or "")
    assert "leak" in (fill_missing.__doc__ or "")


def test_drop_missing(df: pd.DataFrame) -> None:
    assert drop_missing(df, DropMissing())["city"].tolist() == ["Oslo"]
    out = drop_missing(df, DropMissing(subset=["city", "n"], how="all"))
    assert_frame_equal(out, df.iloc[[0, 2]].reset_index(drop=True))
    assert drop_missing(df, DropMissing(subset=["city"]))["city"].tolist() == ["Oslo", "Rome"]
    with pytest.raises(ValueError, match="column 'cty' not found"):
        drop_missing(df, DropMissing(subset=["cty"]))
    with pytest.raises(ValidationError):
        DropMissing.model_validate({"how": "some"})


def test_flag_missing(df: pd.DataFrame) -> None:
    out = flag_missing(df, FlagMissing(columns=["city", "n"]))
    assert out["city_missing"].tolist() == [False, True, False]
    assert out["n_missing"].tolist() == [False, True, True]
    assert list(out.columns)[:5] == list(df.columns)
    with pytest.raises(ValueError, match="output column 'city_missing' already exists"):
        flag_missing(out, FlagMissing(columns=["city"]))
    assert "city_na" in flag_missing(df, FlagMissing(columns=["city"], suffix="_na")).columns
