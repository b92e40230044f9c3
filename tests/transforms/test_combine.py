"""join_tables and concat_tables."""

from __future__ import annotations

import pandas as pd
import pytest
import yaml
from pandas.testing import assert_frame_equal
from pydantic import ValidationError

from tessera.transforms.combine import ConcatTables, JoinTables, concat_tables, join_tables


@pytest.fixture
def orders() -> pd.DataFrame:
    return pd.DataFrame({"cid": [2, 1, 3, 2, None], "amount": [10.0, 20.0, 30.0, 40.0, 50.0]})


@pytest.fixture
def customers() -> pd.DataFrame:
    return pd.DataFrame(
        {"cid": [1.0, 2.0, 4.0, None], "amount": [0.0, 0.0, 0.0, 0.0], "tier": ["x", "y", "z", "n"]}
    )


def test_left_join_keeps_left_order(orders: pd.DataFrame, customers: pd.DataFrame) -> None:
    out = join_tables(orders, customers, JoinTables(on=["cid"]))
    assert list(out.columns) == ["cid", "amount", "amount_right", "tier"]
    assert out["amount"].tolist() == [10.0, 20.0, 30.0, 40.0, 50.0]
    assert out["tier"].tolist()[:2] == ["y", "x"]
    # Unknown key and missing key: no match (a missing key never matches a missing key).
    assert out["tier"].isna().tolist() == [False, False, True, False, True]


def test_inner_right_outer(orders: pd.DataFrame, customers: pd.DataFrame) -> None:
    inner = join_tables(orders, customers, JoinTables(on=["cid"], how="inner"))
    assert inner["amount"].tolist() == [10.0, 20.0, 40.0]
    right = join_tables(orders, customers, JoinTables(on=["cid"], how="right"))
    assert right["tier"].tolist() == ["x", "y", "y", "z", "n"]
    outer = join_tables(orders, customers, JoinTables(on=["cid"], how="outer"))
    assert len(outer) == 7
    assert sorted(outer["tier"].dropna()) == ["n", "x", "y", "y", "z"]
    assert outer.index.tolist() == list(range(7))
    matching = join_tables(
        orders, customers, JoinTables(on=["cid"], how="inner", match_missing_keys=True)
    )
    assert matching["tier"].tolist() == ["y", "x", "y", "n"]


def test_suffixes_and_validate(orders: pd.DataFrame, customers: pd.DataFrame) -> None:
    cfg = JoinTables.model_validate({"on": ["cid"], "suffixes": ["_o", "_c"]})
    assert {"amount_o", "amount_c"} <= set(join_tables(orders, customers, cfg).columns)
    ok = JoinTables.model_validate({"on": ["cid"], "validate": "many_to_one"})
    assert len(join_tables(orders, customers, ok)) == 5
    bad = JoinTables.model_validate({"on": ["cid"], "validate": "one_to_one"})
    with pytest.raises(ValueError, match=r"(?s)join on 'cid' failed.*keys must be unique on both"):
        join_tables(orders, customers, bad)


def test_unquoted_yaml_on_key(orders: pd.DataFrame, customers: pd.DataFrame) -> None:
    """PyYAML reads `on:` as the boolean true; the config still understands it."""
    assert yaml.safe_load("on: [cid]") == {True: ["cid"]}
    cfg = JoinTables.model_validate(yaml.safe_load("on: [cid]\nhow: inner"))
    assert cfg.on == ["cid"] and cfg.how == "inner"
    assert len(join_tables(orders, customers, cfg)) == 3


def test_join_errors(orders: pd.DataFrame, customers: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match="column 'id' not found in the left input"):
        join_tables(orders, customers, JoinTables(on=["id"]))
    with pytest.raises(ValueError, match="column 'amount' not found in the right input"):
        join_tables(orders, customers.drop(columns="amount"), JoinTables(on=["amount"]))
    text_keys = customers.assign(cid=["1", "2", "4", None])
    with pytest.raises(
        ValueError,
        match="join on 'cid' failed: key 'cid' is float64 in the left input but str in the right",
    ):
        join_tables(orders, text_keys, JoinTables(on=["cid"]))
    with pytest.raises(ValidationError, match="suffixes must differ"):
        JoinTables.model_validate({"on": ["cid"], "suffixes": ["_x", "_x"]})
    with pytest.raises(ValidationError):
        JoinTables.model_validate({"on": ["cid"], "validate": "1:1"})
    with pytest.raises(ValidationError):
        JoinTables.model_validate({"on": []})


def test_concat_tables() -> None:
    a = pd.DataFrame({"x": [1, 2], "y": ["a", "b"]})
    b = pd.DataFrame({"y": ["c"], "x": [3]})
    c = pd.DataFrame({"x": [4], "z": [True]})
    assert_frame_equal(
        concat_tables(a, b, cfg=ConcatTables()),
        pd.DataFrame({"x": [1, 2, 3], "y": ["a", "b", "c"]}),
    )
    union = concat_tables(a, c, cfg=ConcatTables())
    assert list(union.columns) == ["x", "y", "z"] and union["x"].tolist() == [1, 2, 4]
    inter = concat_tables(a, c, cfg=ConcatTables(columns="intersection"))
    assert_frame_equal(inter, pd.DataFrame({"x": [1, 2, 4]}))
    same = concat_tables(a, b, cfg=ConcatTables(columns="same"))
    assert list(same.columns) == ["x", "y"]
    assert_frame_equal(concat_tables(a, cfg=ConcatTables()), a)


def test_concat_errors() -> None:
    a = pd.DataFrame({"x": [1], "y": [2]})
    with pytest.raises(
        ValueError, match="input 2 does not have the columns of input 1: it lacks 'y'"
    ):
        concat_tables(a, pd.DataFrame({"x": [1], "z": [1]}), cfg=ConcatTables(columns="same"))
    with pytest.raises(ValueError, match="at least one input"):
        concat_tables(cfg=ConcatTables())
