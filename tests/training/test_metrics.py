"""Metrics equal scikit-learn's on the same predictions; bootstrap intervals are sound."""

from __future__ import annotations

import time

import numpy as np
import pytest
from sklearn import metrics as skm

from tessera.training.metrics import encode, score


def binary(n: int = 400, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    p1 = np.clip(0.35 * y + rng.uniform(0, 0.65, n), 0, 1).round(2)  # rounding: ties
    labels = np.array(["bad", "good"])
    return labels[y], labels[(p1 > 0.5).astype(int)], np.column_stack([1 - p1, p1])


def multiclass(n: int = 500, seed: int = 1):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    raw = rng.uniform(size=(n, 3)) + np.eye(3)[y] * 0.6
    proba = raw / raw.sum(axis=1, keepdims=True)
    return y, proba.argmax(axis=1), proba


CLASSIFICATION = [
    "accuracy",
    "balanced_accuracy",
    "precision",
    "recall",
    "f1",
    "roc_auc",
    "log_loss",
]


def sklearn_value(name: str, y, pred, proba, classes) -> float:
    binary = len(classes) == 2
    avg = {"average": "binary", "pos_label": classes[1]} if binary else {"average": "macro"}
    return {
        "accuracy": lambda: skm.accuracy_score(y, pred),
        "balanced_accuracy": lambda: skm.balanced_accuracy_score(y, pred),
        "precision": lambda: skm.precision_score(y, pred, zero_division=0, **avg),
        "recall": lambda: skm.recall_score(y, pred, zero_division=0, **avg),
        "f1": lambda: skm.f1_score(y, pred, zero_division=0, **avg),
        "roc_auc": lambda: (
            skm.roc_auc_score(y == classes[1], proba[:, 1])
            if binary
            else skm.roc_auc_score(y, proba, multi_class="ovr", labels=classes)
        ),
        "log_loss": lambda: skm.log_loss(y, proba, labels=classes),
    }[name]()


@pytest.mark.parametrize("data", [binary, multiclass])
def test_classification_metrics_equal_sklearn(data) -> None:
    y, pred, proba = data()
    classes = np.unique(y)
    scores = score(encode("classification", classes, y, pred, proba), CLASSIFICATION)
    for s in scores:
        assert s.value == pytest.approx(sklearn_value(s.metric, y, pred, proba, classes), abs=1e-12)
        assert s.ci_low <= s.value <= s.ci_high, s
        assert s.ci_high - s.ci_low < 0.25


def test_regression_metrics_equal_sklearn() -> None:
    rng = np.random.default_rng(2)
    y = rng.normal(size=300)
    pred = y + rng.normal(scale=0.5, size=300)
    scores = {
        s.metric: s for s in score(encode("regression", [], y, pred), ["rmse", "mse", "mae", "r2"])
    }
    assert scores["rmse"].value == pytest.approx(skm.root_mean_squared_error(y, pred), abs=1e-12)
    assert scores["mse"].value == pytest.approx(skm.mean_squared_error(y, pred), abs=1e-12)
    assert scores["mae"].value == pytest.approx(skm.mean_absolute_error(y, pred), abs=1e-12)
    assert scores["r2"].value == pytest.approx(skm.r2_score(y, pred), abs=1e-12)
    for s in scores.values():
        assert s.ci_low <= s.value <= s.ci_high


def test_the_intervals_are_reproducible_and_follow_the_settings() -> None:
    y, pred, proba = binary()
    pred_ = encode("classification", ["bad", "good"], y, pred, proba)
    a = score(pred_, ["accuracy", "roc_auc"], samples=300, seed=5)
    assert a == score(pred_, ["accuracy", "roc_auc"], samples=300, seed=5)
    assert a != score(pred_, ["accuracy", "roc_auc"], samples=300, seed=6)
    narrow = score(pred_, ["accuracy"], samples=300, seed=5, confidence=0.5)[0]
    assert a[0].ci_low < narrow.ci_low <= narrow.ci_high < a[0].ci_high
    [none] = score(pred_, ["accuracy"], samples=0)
    assert np.isnan(none.ci_low) and np.isnan(none.ci_high) and none.value == a[0].value


def test_the_bootstrap_matches_a_loop_over_resamples() -> None:
    y, pred, proba = multiclass(120)
    pred_ = encode("classification", [0, 1, 2], y, pred, proba)
    [fast] = score(pred_, ["f1"], samples=50, seed=3, confidence=0.9)
    rng = np.random.default_rng(3)
    idx = rng.integers(0, 120, size=(50, 120))
    slow = [skm.f1_score(y[i], pred[i], average="macro", zero_division=0) for i in idx]
    assert fast.ci_low == pytest.approx(np.quantile(slow, 0.05))
    assert fast.ci_high == pytest.approx(np.quantile(slow, 0.95))


def test_the_bootstrap_is_fast() -> None:
    y, pred, proba = binary(20_000)
    pred_ = encode("classification", ["bad", "good"], y, pred, proba)
    started = time.perf_counter()
    score(pred_, ["accuracy", "f1", "log_loss"], samples=200)
    assert time.perf_counter() - started < 5


def test_errors() -> None:
    y, pred, proba = binary()
    pred_ = encode("classification", ["bad", "good"], y, pred, proba)
    with pytest.raises(ValueError, match="metric 'rmse' does not apply to a classification"):
        score(pred_, ["rmse"])
    no_proba = encode("classification", ["bad", "good"], y, pred)
    with pytest.raises(ValueError, match="metric 'roc_auc' needs predicted probabilities"):
        score(no_proba, ["roc_auc"])
    unseen = encode("classification", ["bad", "good"], ["ugly", *y[1:]], pred, proba)
    assert score(unseen, ["accuracy"])[0].value < score(pred_, ["accuracy"])[0].value
    with pytest.raises(ValueError, match="target values the model never saw"):
        score(unseen, ["log_loss"])
