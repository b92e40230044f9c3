"""Scoring a fitted pipeline: on a table (hold-out) and by k-fold cross-validation."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from tessera.training import metrics, spec

if TYPE_CHECKING:
    import pandas as pd

#: Called after each fold with (fold number from 0, mean of the fold scores so far of the
#: first metric); may raise to stop (tuning prunes a trial this way).
FoldCallback = Callable[[int, float], None]
#: Fits a fold: (unfitted pipeline, training rows, their target, held-out rows, their target,
#: fold number) -> the fitted pipeline. Tuning uses it to watch a boosting model's iterations.
FoldFit = Callable[[Any, "pd.DataFrame", Any, "pd.DataFrame", Any, int], Any]


def features_of(frame: pd.DataFrame, features: Sequence[str]) -> pd.DataFrame:
    missing = [c for c in features if c not in frame.columns]
    if missing:
        raise ValueError(f"the table lacks the model's feature column(s): {', '.join(missing)}")
    return frame[list(features)]


def target_of(frame: pd.DataFrame, target: str) -> Any:
    if target not in frame.columns:
        raise ValueError(f"the table lacks the target column '{target}'")
    y = frame[target]
    if y.isna().any():
        raise ValueError(f"target column '{target}' has {int(y.isna().sum())} missing value(s)")
    return y.to_numpy()


def predictions(
    pipeline: Any,
    task: str,
    frame: pd.DataFrame,
    features: Sequence[str],
    target: str,
    names: Sequence[str],
    *,
    estimator: str = "the estimator",
) -> metrics.Predictions:
    """The pipeline's predictions on ``frame``, encoded for :func:`metrics.score`.

    Probabilities are computed when a metric needs them (or always, when the pipeline has
    ``predict_proba``, so curves can be drawn).
    """
    X, y = features_of(frame, features), target_of(frame, target)
    proba = None
    if task == "classification" and hasattr(pipeline, "predict_proba"):
        proba = pipeline.predict_proba(X)
    elif metrics.needs_proba(names):
        raise ValueError(
            f"metrics {', '.join(n for n in names if n in spec.PROBABILITY_METRICS)} need "
            f"predicted probabilities and {estimator} has no predict_proba"
        )
    classes = pipeline.classes_ if task == "classification" else []
    return metrics.encode(task, classes, y, pipeline.predict(X), proba)


def higher_is_better(metric: str) -> bool:
    return metric not in {"log_loss", "rmse", "mae"}


def cross_validate(
    pipeline: Any,
    task: str,
    frame: pd.DataFrame,
    features: Sequence[str],
    target: str,
    names: Sequence[str],
    *,
    folds: int,
    seed: int = 0,
    on_fold: FoldCallback | None = None,
    fit: FoldFit | None = None,
) -> dict[str, list[float]]:
    """Each metric's score on each of ``folds`` folds (stratified for classification).

    Every fold fits a fresh clone of ``pipeline`` (fitted or not: only its parameters count),
    preprocessing included, on the other folds only.

    Raises:
        ValueError: fewer rows (or, for classification, members of a class) than folds.
    """
    import numpy as np
    from sklearn.base import clone
    from sklearn.model_selection import KFold, StratifiedKFold

    X, y = features_of(frame, features), target_of(frame, target)
    if task == "classification":
        counts = np.unique(y.astype(str), return_counts=True)[1]
        if counts.min() < folds:
            raise ValueError(
                f"cross-validation with {folds} folds needs at least {folds} rows of every "
                f"class; the smallest class has {int(counts.min())}"
            )
        splitter: Any = StratifiedKFold(folds, shuffle=True, random_state=seed)
    else:
        if len(frame) < folds:
            raise ValueError(f"cross-validation with {folds} folds needs at least {folds} rows")
        splitter = KFold(folds, shuffle=True, random_state=seed)
    scores: dict[str, list[float]] = {n: [] for n in names}
    for i, (train_idx, test_idx) in enumerate(splitter.split(np.zeros(len(y)), y)):
        if fit is None:
            model = clone(pipeline).fit(X.iloc[train_idx], y[train_idx])
        else:
            model = fit(
                clone(pipeline), X.iloc[train_idx], y[train_idx], X.iloc[test_idx], y[test_idx], i
            )
        pred = predictions(model, task, frame.iloc[test_idx], features, target, names)
        for s in metrics.score(pred, names, samples=0):
            scores[s.metric].append(s.value)
        if on_fold is not None:
            on_fold(i, float(np.mean(scores[names[0]])))
    return scores


def fold_summary(scores: dict[str, list[float]], confidence: float = 0.95) -> list[metrics.Score]:
    """Mean over folds with a Student-t interval of the mean, per metric."""
    import numpy as np
    from scipy import stats

    out = []
    for name, values in scores.items():
        arr = np.asarray(values, dtype=float)
        mean = float(arr.mean())
        if len(arr) > 1 and np.isfinite(arr).all():
            half = float(
                stats.t.ppf((1 + confidence) / 2, len(arr) - 1)
                * arr.std(ddof=1)
                / np.sqrt(len(arr))
            )
            out.append(metrics.Score(name, mean, mean - half, mean + half))
        else:
            out.append(metrics.Score(name, mean, float("nan"), float("nan")))
    return out
