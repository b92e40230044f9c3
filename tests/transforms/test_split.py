"""train_test_split: random, stratified and time splits."""

from __future__ import annotations

import pandas as pd
import pytest
from pandas.testing import assert_frame_equal
from pydantic import ValidationError

from tessera.transforms.split import TrainTestSplit, train_test_split


@pytest.fixture
def df() -> pd.DataFrame:
    n = 100
    return pd.DataFrame(
        {
            "id": range(n),
            "label": ["pos" if i % 5 == 0 else "neg" for i in range(n)],  # 20 % positive
            "t": pd.date_range("2024-01-01", periods=n, freq="D")[::-1],  # latest first
        }
    )


def _ids(frame: pd.DataFrame) -> list[int]:
    return frame["id"].tolist()


@pytest.mark.parametrize(
    "cfg",
    [
        TrainTestSplit(),
        TrainTestSplit(strategy="stratified", target="label", test_size=0.3),
        TrainTestSplit(strategy="time", time_column="t", test_size=0.25),
    ],
    ids=["random", "stratified", "time"],
)
def test_disjoint_covering_ordered_deterministic(df: pd.DataFrame, cfg: TrainTestSplit) -> None:
    out = train_test_split(df, cfg)
    assert set(out) == {"train", "test"}
    train, test = _ids(out["train"]), _ids(out["test"])
    assert not set(train) & set(test)
    assert sorted(train + test) == list(range(100))
    assert train == sorted(train) and test == sorted(test), "input order kept"
    assert out["test"].index.tolist() == list(range(len(test)))
    assert len(test) == round(cfg.test_size * 100)
    again = train_test_split(df, cfg)
    assert_frame_equal(again["train"], out["train"])
    assert_frame_equal(again["test"], out["test"])


def test_seed_changes_random_split(df: pd.DataFrame) -> None:
    a = train_test_split(df, TrainTestSplit(seed=1))["test"]
    b = train_test_split(df, TrainTestSplit(seed=2))["test"]
    assert _ids(a) != _ids(b)


def test_stratified_keeps_class_proportions(df: pd.DataFrame) -> None:
    for seed in range(5):
        cfg = TrainTestSplit(strategy="stratified", target="label", test_size=0.25, seed=seed)
        out = train_test_split(df, cfg)
        assert out["test"]["label"].value_counts().to_dict() == {"neg": 20, "pos": 5}
        assert out["train"]["label"].value_counts().to_dict() == {"neg": 60, "pos": 15}


def test_stratified_rare_class() -> None:
    df = pd.DataFrame({"y": [0] * 9 + [1], "id": range(10)})
    out = train_test_split(df, TrainTestSplit(strategy="stratified", target="y", test_size=0.2))
    assert len(out["test"]) == 2 and set(out["test"]["y"]) == {0}


def test_time_split_puts_latest_rows_in_test(df: pd.DataFrame) -> None:
    out = train_test_split(df, TrainTestSplit(strategy="time", time_column="t", test_size=0.2))
    assert out["train"]["t"].max() < out["test"]["t"].min()
    assert _ids(out["test"]) == list(range(20))


def test_time_split_ties_go_to_test() -> None:
    df = pd.DataFrame({"t": [1, 2, 2, 2, 3], "id": range(5)})
    out = train_test_split(df, TrainTestSplit(strategy="time", time_column="t", test_size=0.4))
    assert _ids(out["test"]) == [1, 2, 3, 4]
    assert out["train"]["t"].max() < out["test"]["t"].min()


def test_tiny_tables() -> None:
    two = pd.DataFrame({"id": [0, 1]})
    out = train_test_split(two, TrainTestSplit(test_size=0.01))
    assert len(out["train"]) == 1 and len(out["test"]) == 1
    with pytest.raises(ValueError, match="cannot split a table of 1 row"):
        train_test_split(pd.DataFrame({"id": [0]}), TrainTestSplit())


def test_errors(df: pd.DataFrame) -> None:
    with pytest.raises(ValidationError, match="needs `target`"):
        TrainTestSplit(strategy="stratified")
    with pytest.raises(ValidationError, match="needs `time_column`"):
        TrainTestSplit(strategy="time")
    for size in (0, 1, 1.5):
        with pytest.raises(ValidationError):
            TrainTestSplit(test_size=size)
    with pytest.raises(ValidationError):
        TrainTestSplit.model_validate({"strategy": "kfold"})
    with pytest.raises(ValueError, match=r"column 'lable' not found.*did you mean 'label'"):
        train_test_split(df, TrainTestSplit(strategy="stratified", target="lable"))
    with pytest.raises(ValueError, match="target column 'label' has 1 missing value"):
        train_test_split(
            df.assign(label=df["label"].where(df["id"] != 3)),
            TrainTestSplit(strategy="stratified", target="label"),
        )
    same_time = df.assign(t=pd.Timestamp("2024-01-01"))
    with pytest.raises(ValueError, match="no row is left for training"):
        train_test_split(same_time, TrainTestSplit(strategy="time", time_column="t"))
