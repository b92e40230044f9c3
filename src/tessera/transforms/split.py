"""Splitting a table into training and test rows: random, stratified or by time.

Splits are deterministic: the same table, config and seed always give the same split. Each
output keeps the input's row order. The test set has ``ceil(test_size * n)`` rows (random and
stratified), so both sets are non-empty for any table of two rows or more.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import Field, model_validator

from tessera.pipeline.registry import transformation
from tessera.transforms._common import TransformConfig, fresh_index, require_columns


class TrainTestSplit(TransformConfig):
    """Config of ``train_test_split``."""

    strategy: Literal["random", "stratified", "time"] = Field(
        "random",
        description="`random`: rows drawn at random; `stratified`: random within each class of "
        "`target`, so both sets keep the class proportions; `time`: the latest rows by "
        "`time_column` are the test set.",
    )
    test_size: float = Field(
        0.2, gt=0, lt=1, description="Fraction of the rows that go to the test set."
    )
    target: str | None = Field(
        None,
        min_length=1,
        description="The class column to stratify on (required by `stratified`).",
    )
    time_column: str | None = Field(
        None, min_length=1, description="The column ordering rows in time (required by `time`)."
    )
    seed: int = Field(42, ge=0, description="Random seed (random and stratified strategies).")

    @model_validator(mode="after")
    def _strategy_needs(self) -> TrainTestSplit:
        if self.strategy == "stratified" and self.target is None:
            raise ValueError("strategy `stratified` needs `target`: the class column")
        if self.strategy == "time" and self.time_column is None:
            raise ValueError("strategy `time` needs `time_column`: the column ordering rows")
        return self


def _test_count(n: int, test_size: float) -> int:
    return min(max(math.ceil(test_size * n - 1e-9), 1), n - 1)


def _random(n: int, cfg: TrainTestSplit) -> np.ndarray:
    rng = np.random.default_rng(cfg.seed)
    return rng.permutation(n)[: _test_count(n, cfg.test_size)]


def _stratified(labels: pd.Series, cfg: TrainTestSplit) -> np.ndarray:
    """Test positions: each class contributes in proportion to its size (largest remainder)."""
    if labels.isna().any():
        raise ValueError(
            f"target column '{cfg.target}' has {int(labels.isna().sum())} missing value(s); "
            "drop or fill them before a stratified split"
        )
    codes, classes = pd.factorize(labels, sort=True)
    counts = np.bincount(codes, minlength=len(classes))
    total = _test_count(len(labels), cfg.test_size)
    exact = counts * (total / len(labels))
    quota = np.floor(exact).astype(int)
    # Hand out the remaining rows to the classes with the largest fractional parts (ties:
    # the first class in sorted order), never more than a class has.
    for k in np.argsort(-(exact - quota), kind="stable")[: total - int(quota.sum())]:
        quota[k] = min(quota[k] + 1, counts[k])
    rng = np.random.default_rng(cfg.seed)
    picked = [rng.permutation(np.flatnonzero(codes == k))[: quota[k]] for k in range(len(classes))]
    return np.concatenate(picked) if picked else np.array([], dtype=int)


def _by_time(times: pd.Series, cfg: TrainTestSplit) -> np.ndarray:
    """Test positions: the rows at or after the cutoff time, so all train rows come earlier."""
    if times.isna().any():
        raise ValueError(
            f"time column '{cfg.time_column}' has {int(times.isna().sum())} missing value(s); "
            "drop them before a time split"
        )
    try:
        order = np.argsort(times.to_numpy(), kind="stable")
    except TypeError as exc:
        raise ValueError(f"time column '{cfg.time_column}' cannot be sorted: {exc}") from exc
    cutoff = times.iloc[order[len(times) - _test_count(len(times), cfg.test_size)]]
    test = np.flatnonzero((times >= cutoff).to_numpy())
    if len(test) == len(times):
        raise ValueError(
            f"time column '{cfg.time_column}': the cutoff time {cutoff} is also the earliest "
            "time, so no row is left for training; a time split needs rows at different times "
            "(or a smaller test_size)"
        )
    return test


@transformation(name="train_test_split", outputs=("train", "test"))
def train_test_split(df: pd.DataFrame, cfg: TrainTestSplit) -> dict[str, pd.DataFrame]:
    """Split a table into train and test tables: random, stratified by class, or by time.

    With ``strategy: time`` the test set is the latest ``test_size`` fraction of rows by
    ``time_column``; rows tied with the cutoff time all go to the test set, so every training
    row is strictly earlier than every test row. Use the outputs as ``STAGE.train`` and
    ``STAGE.test``.

    Example:
        ```yaml
        split:
          uses: train_test_split
          inputs: [features]
          with:
            strategy: stratified
            target: churned
            test_size: 0.25
            seed: 7
        ```

    Args:
        df: the table (at least two rows).
        cfg: the strategy and its parameters.

    Returns:
        ``{"train": ..., "test": ...}``: disjoint, together every input row, in input order.
    """
    needed = [c for c in (cfg.target, cfg.time_column) if c is not None]
    require_columns(df, needed)
    data = fresh_index(df)
    if len(data) < 2:
        raise ValueError(f"cannot split a table of {len(data)} row(s); it needs at least 2")
    if cfg.strategy == "stratified":
        assert cfg.target is not None
        test_positions = _stratified(data[cfg.target], cfg)
    elif cfg.strategy == "time":
        assert cfg.time_column is not None
        test_positions = _by_time(data[cfg.time_column], cfg)
    else:
        test_positions = _random(len(data), cfg)
    is_test = np.zeros(len(data), dtype=bool)
    is_test[test_positions] = True
    return {
        "train": data[~is_test].reset_index(drop=True),
        "test": data[is_test].reset_index(drop=True),
    }
