"""The churn example's synthetic event log: deterministic, big enough, realistically dirty."""

from __future__ import annotations

import re
import time
from pathlib import Path

import pandas as pd
import pytest

from tessera.examples.churn_data import COLUMNS, generate_events, write_events

ID_COLUMNS = {"customer_id", "event_time", "churned"}


@pytest.fixture(scope="module")
def csv_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_events(tmp_path_factory.mktemp("churn") / "events.csv")


@pytest.fixture(scope="module")
def events(csv_path: Path) -> pd.DataFrame:
    return pd.read_csv(csv_path, parse_dates=["event_time"])


def test_same_seed_gives_the_same_bytes(csv_path: Path, tmp_path: Path) -> None:
    again = write_events(tmp_path / "again.csv")
    assert again.read_bytes() == csv_path.read_bytes()


def test_another_seed_gives_other_data(tmp_path: Path) -> None:
    a = write_events(tmp_path / "a.csv", n_customers=200, seed=1)
    b = write_events(tmp_path / "b.csv", n_customers=200, seed=2)
    assert a.read_bytes() != b.read_bytes()


def test_generation_is_fast(tmp_path: Path) -> None:
    generate_events(n_customers=50)  # warm up imports
    start = time.perf_counter()
    write_events(tmp_path / "events.csv")
    assert time.perf_counter() - start < 2.0


def test_shape_and_columns(events: pd.DataFrame) -> None:
    assert list(events.columns) == list(COLUMNS)
    assert 50_000 <= len(events) <= 80_000
    assert events["customer_id"].map(lambda s: bool(re.fullmatch(r"C\d{5}", s))).all()
    per_customer = events.groupby("customer_id").size()
    assert len(per_customer) == 5_000
    assert per_customer.min() >= 2 and per_customer.max() <= 30  # varying history lengths
    assert per_customer.std() > 2
    span = events["event_time"].max() - events["event_time"].min()
    assert pd.Timedelta(days=600) < span <= pd.Timedelta(days=731)
    assert events["event_time"].is_monotonic_increasing


def test_mixed_feature_types(events: pd.DataFrame) -> None:
    features = [c for c in events.columns if c not in ID_COLUMNS]
    numeric = [c for c in features if pd.api.types.is_numeric_dtype(events[c])]
    categorical = [c for c in features if c not in numeric]
    assert len(features) >= 12
    assert len(numeric) >= 6
    assert len(categorical) >= 4


def test_missing_values_in_several_columns(events: pd.DataFrame) -> None:
    rates = events.isna().mean()
    dirty = rates[rates > 0]
    assert len(dirty) >= 4
    assert dirty.max() < 0.10
    assert rates[["customer_id", "event_time", "churned"]].sum() == 0


def test_duplicate_rows(events: pd.DataFrame) -> None:
    rate = events.duplicated().mean()
    assert 0.005 < rate < 0.02


def test_outliers(events: pd.DataFrame) -> None:
    assert (events["monthly_charges"] < 0).sum() > 10
    assert (events["data_usage_gb"] > 1_000).sum() > 10
    assert (events["age"] == 999).sum() > 10
    typical = events["age"][events["age"] < 999]
    assert typical.between(18, 100).all()


def test_inconsistent_categories(events: pd.DataFrame) -> None:
    plans = set(events["plan"].unique())
    assert {"Basic", "Standard", "Premium"} <= plans
    assert any(p != p.strip() for p in plans)
    assert any(p.strip() not in {"Basic", "Standard", "Premium"} for p in plans)
    assert {p.strip().lower() for p in plans} == {"basic", "standard", "premium"}
    devices = {d.strip().lower() for d in events["device"].dropna().unique()}
    assert devices == {"android", "ios", "iphone", "web", "desktop"}


def test_label_is_per_customer_and_learnable(events: pd.DataFrame) -> None:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import train_test_split

    assert events.groupby("customer_id")["churned"].nunique().max() == 1
    clean = events.drop_duplicates()
    clean = clean.assign(m2m=(clean["contract"].str.strip() == "month-to-month").astype(float))
    per_customer = clean.groupby("customer_id").agg(
        churned=("churned", "first"),
        tickets=("support_tickets", "mean"),
        late=("late_payments", "mean"),
        satisfaction=("satisfaction_score", "mean"),
        logins=("num_logins", "mean"),
        month_to_month=("m2m", "max"),
    )
    rate = per_customer["churned"].mean()
    assert 0.10 < rate < 0.40
    x = per_customer.drop(columns="churned").fillna(0.0)
    y = per_customer["churned"]
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.3, random_state=0, stratify=y
    )
    model = LogisticRegression(max_iter=1_000).fit(x_train, y_train)
    assert roc_auc_score(y_test, model.predict_proba(x_test)[:, 1]) > 0.7
