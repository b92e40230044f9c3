"""Metrics with bootstrap confidence intervals, vectorised over resamples with numpy.

Every metric is a function of ``idx``, a ``(B, n)`` array of row positions: row ``b`` of ``idx``
is one resample of the evaluated rows. The point estimate is the same function of the identity
resample, so the value and its interval are computed by the same code, and the values equal
``sklearn.metrics`` on the same predictions (tests check it). Resamples are drawn in blocks so
memory stays bounded for large test sets; all metrics see the same resamples.

Conventions (those of scikit-learn): with two classes, precision, recall and F1 are those of the
positive class, the second of the sorted classes (``classes_[1]``); with more, they are macro
averages over the classes present in the true or predicted labels. ``roc_auc`` with more than two
classes is the one-vs-rest macro average. A resample where a metric is undefined (one class only,
for ROC AUC) is left out of its interval.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tessera.training.spec import METRICS, PROBABILITY_METRICS

if TYPE_CHECKING:
    import numpy as np

#: Values per block of resamples (rows x resamples), to bound memory.
_BLOCK = 2_000_000


@dataclass(frozen=True)
class Predictions:
    """What the metrics need: true and predicted values, encoded.

    For classification, ``y_true`` and ``y_pred`` are class positions in ``classes`` (``-1`` for
    a label the model never saw) and ``proba`` the ``(n, K)`` probabilities (or None).
    """

    task: str
    y_true: np.ndarray
    y_pred: np.ndarray
    proba: np.ndarray | None
    n_classes: int


def encode(
    task: str,
    classes: Sequence[Any],
    y_true: Sequence[Any],
    y_pred: Sequence[Any],
    proba: Any = None,
) -> Predictions:
    """:class:`Predictions` from labels as the model gives them."""
    import numpy as np

    if task == "regression":
        return Predictions(
            task,
            np.asarray(y_true, dtype=float),
            np.asarray(y_pred, dtype=float),
            None,
            0,
        )
    position = {c: i for i, c in enumerate(np.asarray(classes).tolist())}

    def codes(values: Sequence[Any]) -> np.ndarray:
        return np.fromiter(
            (position.get(v, -1) for v in np.asarray(values).tolist()), dtype=np.int64
        )

    return Predictions(
        task,
        codes(y_true),
        codes(y_pred),
        None if proba is None else np.asarray(proba, dtype=float),
        len(position),
    )


Metric = Callable[[Predictions, "np.ndarray"], "np.ndarray"]


def _ratio(num: np.ndarray, den: np.ndarray) -> np.ndarray:
    """``num / den`` with 0 where ``den`` is 0 (scikit-learn's ``zero_division=0``)."""
    import numpy as np

    return np.divide(num, den, out=np.zeros(num.shape, dtype=float), where=den > 0)


def _counts(p: Predictions, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per resample and class: true positives, predicted positives, actual positives."""
    import numpy as np

    t, q = p.y_true[idx], p.y_pred[idx]
    shape = (idx.shape[0], p.n_classes)
    tp, pp, ap = np.zeros(shape), np.zeros(shape), np.zeros(shape)
    for k in range(p.n_classes):
        is_t, is_q = t == k, q == k
        tp[:, k] = (is_t & is_q).sum(axis=1)
        pp[:, k] = is_q.sum(axis=1)
        ap[:, k] = is_t.sum(axis=1)
    return tp, pp, ap


def _averaged(score: Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]) -> Metric:
    """Binary: the positive class's score; multi-class: macro average over present classes."""

    def metric(p: Predictions, idx: np.ndarray) -> np.ndarray:
        tp, pp, ap = _counts(p, idx)
        per_class = score(tp, pp, ap)
        if p.n_classes == 2:
            return per_class[:, 1]
        present = (pp + ap) > 0
        return (per_class * present).sum(axis=1) / present.sum(axis=1)

    return metric


def _accuracy(p: Predictions, idx: np.ndarray) -> np.ndarray:
    return (p.y_true[idx] == p.y_pred[idx]).mean(axis=1)


def _balanced_accuracy(p: Predictions, idx: np.ndarray) -> np.ndarray:
    import numpy as np

    tp, _, ap = _counts(p, idx)
    present = ap > 0
    with np.errstate(invalid="ignore"):
        return (_ratio(tp, ap) * present).sum(axis=1) / present.sum(axis=1)


def _need_proba(p: Predictions, name: str) -> np.ndarray:
    if p.proba is None:
        raise ValueError(f"metric '{name}' needs predicted probabilities")
    if (p.y_true < 0).any():
        raise ValueError(
            f"metric '{name}': the evaluated rows have target values the model never saw"
        )
    return p.proba


def _average_ranks(a: np.ndarray) -> np.ndarray:
    """1-based ranks within each row, ties sharing their average rank."""
    import numpy as np

    order = np.argsort(a, axis=1, kind="stable")
    s = np.take_along_axis(a, order, axis=1)
    n = a.shape[1]
    pos = np.broadcast_to(np.arange(n), a.shape)
    first = np.ones(a.shape, dtype=bool)  # first of its block of equal values
    first[:, 1:] = s[:, 1:] != s[:, :-1]
    last = np.ones(a.shape, dtype=bool)
    last[:, :-1] = first[:, 1:]
    start = np.maximum.accumulate(np.where(first, pos, 0), axis=1)
    end = np.minimum.accumulate(np.where(last, pos, n - 1)[:, ::-1], axis=1)[:, ::-1]
    ranks = np.empty(a.shape, dtype=float)
    np.put_along_axis(ranks, order, (start + end) / 2 + 1, axis=1)
    return ranks


def _auc(scores: np.ndarray, positive: np.ndarray) -> np.ndarray:
    """ROC AUC per row from the rank sum of the positives (ties get average ranks)."""
    import numpy as np

    ranks = _average_ranks(scores)
    n_pos = positive.sum(axis=1)
    n_neg = positive.shape[1] - n_pos
    rank_sum = (ranks * positive).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        auc = (rank_sum - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg)
    return np.where((n_pos > 0) & (n_neg > 0), auc, np.nan)


def _roc_auc(p: Predictions, idx: np.ndarray) -> np.ndarray:
    import numpy as np

    proba = _need_proba(p, "roc_auc")
    t = p.y_true[idx]
    if p.n_classes == 2:
        return _auc(proba[idx, 1], t == 1)
    per_class = np.stack([_auc(proba[idx, k], t == k) for k in range(p.n_classes)], axis=1)
    with np.errstate(invalid="ignore"):
        # Like scikit-learn, every class must be present; a resample missing one is undefined.
        return per_class.mean(axis=1)


def _log_loss(p: Predictions, idx: np.ndarray) -> np.ndarray:
    import numpy as np

    proba = _need_proba(p, "log_loss")
    eps = np.finfo(proba.dtype).eps
    picked = np.clip(proba[np.arange(len(p.y_true)), p.y_true], eps, 1 - eps)
    return (-np.log(picked))[idx].mean(axis=1)


def _squared(p: Predictions, idx: np.ndarray) -> np.ndarray:
    return ((p.y_pred - p.y_true) ** 2)[idx].mean(axis=1)


def _rmse(p: Predictions, idx: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.sqrt(_squared(p, idx))


def _mae(p: Predictions, idx: np.ndarray) -> np.ndarray:
    import numpy as np

    return np.abs(p.y_pred - p.y_true)[idx].mean(axis=1)


def _r2(p: Predictions, idx: np.ndarray) -> np.ndarray:
    import numpy as np

    y = p.y_true[idx]
    ss_res = ((p.y_pred - p.y_true) ** 2)[idx].sum(axis=1)
    ss_tot = ((y - y.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r2 = 1 - ss_res / ss_tot
    # scikit-learn's force_finite: a constant target scores 1 when predicted exactly, else 0.
    return np.where(ss_tot > 0, r2, np.where(ss_res == 0, 1.0, 0.0))


_FUNCTIONS: dict[str, Metric] = {
    "accuracy": _accuracy,
    "balanced_accuracy": _balanced_accuracy,
    "precision": _averaged(lambda tp, pp, ap: _ratio(tp, pp)),
    "recall": _averaged(lambda tp, pp, ap: _ratio(tp, ap)),
    "f1": _averaged(lambda tp, pp, ap: _ratio(2 * tp, pp + ap)),
    "roc_auc": _roc_auc,
    "log_loss": _log_loss,
    "rmse": _rmse,
    "mse": _squared,
    "mae": _mae,
    "r2": _r2,
}
assert set(_FUNCTIONS) == {m for names in METRICS.values() for m in names}


@dataclass(frozen=True)
class Score:
    """One metric: the point estimate and its bootstrap interval (NaN without resamples)."""

    metric: str
    value: float
    ci_low: float
    ci_high: float


def needs_proba(names: Sequence[str]) -> bool:
    """Whether any of the metrics needs predicted probabilities."""
    return any(n in PROBABILITY_METRICS for n in names)


def score(
    pred: Predictions,
    names: Sequence[str],
    *,
    samples: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
) -> list[Score]:
    """Each metric's value on all rows and its percentile bootstrap interval.

    Args:
        pred: the encoded predictions.
        names: metric names, all of ``pred.task``.
        samples: number of bootstrap resamples (0: no interval).
        confidence: the interval's coverage, e.g. 0.95.
        seed: seed of the resampling.

    Raises:
        ValueError: a metric of another task, no rows, or probabilities missing.
    """
    import numpy as np

    for name in names:
        if name not in METRICS[pred.task]:
            raise ValueError(
                f"metric '{name}' does not apply to a {pred.task} model "
                f"(its metrics: {', '.join(METRICS[pred.task])})"
            )
    n = len(pred.y_true)
    if n == 0:
        raise ValueError("no rows to evaluate")
    identity = np.arange(n)[None, :]
    values = {name: float(_FUNCTIONS[name](pred, identity)[0]) for name in names}
    draws: dict[str, list[np.ndarray]] = {name: [] for name in names}
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK // n)
    for start in range(0, samples, block):
        idx = rng.integers(0, n, size=(min(block, samples - start), n))
        for name in names:
            draws[name].append(_FUNCTIONS[name](pred, idx))
    alpha = (1 - confidence) / 2
    scores = []
    for name in names:
        low = high = float("nan")
        if samples:
            stats = np.concatenate(draws[name])
            if np.isfinite(stats).any():
                low, high = (float(v) for v in np.nanquantile(stats, [alpha, 1 - alpha]))
        scores.append(Score(name, values[name], low, high))
    return scores
