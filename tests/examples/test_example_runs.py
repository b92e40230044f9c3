"""The examples run end to end with ``tessera run`` and produce clean train/test tables."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tessera.examples import scaffold

pytestmark = pytest.mark.slow

Run = Callable[..., Any]


def statuses(result: Any) -> dict[str, str]:
    return {s["stage"]: s["status"] for s in result.json()["stages"]}


def tables(root: Path) -> tuple[pd.DataFrame, pd.DataFrame]:
    features = root / "data" / "features"
    return pd.read_parquet(features / "train.parquet"), pd.read_parquet(features / "test.parquet")


def test_churn_runs(tmp_path: Path, tessera: Run) -> None:
    root = tmp_path / "churn"
    scaffold(root, "churn")
    first = tessera("run", "--json", cwd=root)
    assert first.code == 0, first.err
    assert set(statuses(first).values()) == {"done"}

    train, test = tables(root)
    assert (len(train), len(test)) == (4_000, 1_000)
    both = pd.concat([train, test])
    assert both["customer_id"].is_unique  # one row per customer, no customer in both tables
    assert abs(train["churned"].mean() - test["churned"].mean()) < 0.01  # stratified
    for column in ("plan", "region", "device", "contract"):
        values = set(both[column].astype(str))
        assert all(v == v.strip().lower() for v in values), column
    assert set(both["plan"].astype(str)) == {"basic", "standard", "premium"}
    assert set(both["device"].astype(str)) == {"android", "ios", "web", "desktop", "unknown"}
    assert both["age"].max() < 120
    assert both["monthly_charges"].min() >= 0
    assert both["data_usage_gb"].max() <= 150
    assert both["device"].notna().all() and both["payment_method"].notna().all()
    expected = {
        "engagement_score",
        "monthly_charges_lag3",
        "data_usage_gb_roll3_mean",
        "support_tickets_sum",
        "n_events",
        "usage_trend",
        "charge_change_3m",
        "event_month",
    }
    assert expected <= set(both.columns)
    assert "event_time" not in both.columns

    again = tessera("run", "--json", cwd=root)
    assert again.code == 0, again.err
    assert set(statuses(again).values()) == {"cached"}

    small = tessera("run", "--env", "small", "--json", cwd=root)
    assert small.code == 0, small.err
    assert statuses(small)["raw"] == "cached"
    train, test = tables(root)
    assert (len(train), len(test)) == (800, 200)


def test_breast_cancer_runs(tmp_path: Path, tessera: Run) -> None:
    root = tmp_path / "bc"
    scaffold(root, "breast_cancer")
    result = tessera("run", "--json", cwd=root)
    assert result.code == 0, result.err
    train, test = tables(root)
    assert len(train) + len(test) == 569
    assert len(test) == pytest.approx(569 * 0.25, abs=1)
    assert "target" not in train.columns
    assert abs(train["benign"].mean() - test["benign"].mean()) < 0.02
    assert {"area_growth", "radius_spread", "shape_irregularity", "mean_area_log"} <= set(
        train.columns
    )
    assert set(train["radius_band"].astype(str)) == {"small", "medium", "large"}
    assert train["worst_concavity"].max() <= 1.0


def test_empty_project_runs(tmp_path: Path, tessera: Run) -> None:
    scaffold(tmp_path / "blank")
    result = tessera("run", cwd=tmp_path / "blank")
    assert result.code == 0, result.err
