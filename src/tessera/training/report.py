"""Evaluation artifacts (plots and their data) and the model card, as files and text.

Pure functions for the ``evaluate`` and ``register`` stages, which log what they return to
MLflow; nothing here talks to MLflow. :func:`evaluation_artifacts` writes PNG plots with the
JSON or CSV data behind them, :func:`feature_importances` reads importances from a fitted
scikit-learn ``Pipeline`` and :func:`model_card` renders a model card as Markdown and as a
standalone HTML page.

Importing this module is cheap: matplotlib, numpy and scikit-learn load when a function runs.
Plots are drawn on :class:`matplotlib.figure.Figure` objects rendered by the Agg canvas, never
through ``pyplot``: no global figure registry (nothing to leak or close, safe in threads) and
the interactive backend of a notebook that calls these functions is left alone.
"""

from __future__ import annotations

import contextlib
import csv
import html
import json
import math
import numbers
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    from matplotlib.figure import Figure

#: Points kept per curve in ``roc_curve.json`` and ``pr_curve.json``.
CURVE_POINTS = 200
#: Points kept per curve in the ROC and precision-recall plots.
_PLOT_POINTS = 1000
#: Features shown in ``feature_importance.png`` (all of them go to the CSV).
TOP_FEATURES = 20
#: Rows drawn in the regression scatter plots (a fixed random subset beyond that).
_SCATTER_POINTS = 5000
_DPI = 100


# --------------------------------------------------------------------------------------------
# Evaluation artifacts


def evaluation_artifacts(
    task: str,
    y_true: np.ndarray,
    y_pred: np.ndarray,
    proba: np.ndarray | None,
    classes: Sequence[Any],
    importances: Mapping[str, float] | None,
    out_dir: Path,
) -> list[Path]:
    """Write the evaluation plots of a model, and the data behind them, into ``out_dir``.

    Classification:

    - ``confusion_matrix.png`` and ``confusion_matrix.json`` (``labels``, and ``matrix`` with
      true labels as rows and predicted labels as columns, both in the order of ``classes``);
    - with ``proba``: ``roc_curve.png``/``.json`` and ``pr_curve.png``/``.json``. With two
      classes, one curve for the positive class ``classes[1]`` (scored by ``proba[:, 1]``);
      with more, one one-vs-rest curve per class. The JSON holds, per curve, the class, its
      area (``auc`` or ``average_precision``, computed on all points) and the points, thinned
      to at most :data:`CURVE_POINTS`. A class without both positive and negative rows has no
      curve; it is listed under ``skipped``.

    Regression: ``residuals.png`` (residuals ``y_true - y_pred`` against predictions, and their
    histogram) and ``predicted_vs_actual.png``.

    Both, when ``importances`` is not empty: ``feature_importance.png`` (the
    :data:`TOP_FEATURES` largest by absolute value) and ``feature_importance.csv`` (columns
    ``feature``, ``importance``; every feature, by decreasing absolute importance).

    Args:
        task: ``"classification"`` or ``"regression"``.
        y_true: 1-D true values: labels as in ``classes``, or numbers.
        y_pred: 1-D predicted values, like ``y_true``.
        proba: ``(n, len(classes))`` predicted probabilities in the order of ``classes``, or
            None. Ignored for regression.
        classes: the model's classes, in its order (``classes_``). Ignored for regression.
        importances: importance per feature (e.g. from :func:`feature_importances`), or None.
        out_dir: directory of the files, created if missing.

    Returns:
        The paths of the files written, in the order above.

    Raises:
        ValueError: an unknown task, or arrays of inconsistent shapes.
    """
    import numpy as np

    if task not in ("classification", "regression"):
        raise ValueError(f"unknown task {task!r}: expected 'classification' or 'regression'")
    truth = np.asarray(y_true).ravel()
    pred = np.asarray(y_pred).ravel()
    if truth.shape != pred.shape:
        raise ValueError(f"y_true has {truth.size} values but y_pred has {pred.size}")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    if task == "classification":
        labels = list(classes)
        written += _confusion_matrix(truth, pred, labels, out_dir)
        if proba is not None:
            scores = np.asarray(proba, dtype=float)
            if scores.shape != (truth.size, len(labels)):
                raise ValueError(
                    f"proba has shape {scores.shape}, expected ({truth.size}, {len(labels)}): "
                    "one row per value and one column per class"
                )
            written += _curves(truth, scores, labels, out_dir)
    else:
        written += _regression(truth.astype(float), pred.astype(float), out_dir)
    if importances:
        written += importance_artifacts(dict(importances), out_dir)
    return written


def _figure(width: float, height: float) -> Figure:
    """A figure drawn by the Agg canvas, outside pyplot's registry."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=_DPI)
    FigureCanvasAgg(fig)
    return fig


def _save(fig: Figure, path: Path) -> Path:
    fig.savefig(path, dpi=_DPI, format="png", bbox_inches="tight")
    fig.clear()
    return path


def _plain(value: Any) -> Any:
    """``value`` as a JSON value: numpy scalars unwrapped, non-finite floats as null."""
    if hasattr(value, "item") and not isinstance(value, str | bytes):
        try:
            value = value.item()
        except (TypeError, ValueError):
            value = str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, bool | int | float | str):
        return value
    return str(value)


def _write_json(path: Path, data: Any) -> Path:
    path.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n", encoding="utf-8")
    return path


def _floats(values: Iterable[Any]) -> list[float | None]:
    return [_plain(float(v)) for v in values]


def _thin(n: int, limit: int) -> np.ndarray:
    """At most ``limit`` evenly spread positions of ``range(n)``, with the first and last."""
    import numpy as np

    if n <= limit:
        return np.arange(n)
    return np.unique(np.round(np.linspace(0, n - 1, limit)).astype(np.int64))


def _confusion_matrix(
    truth: np.ndarray, pred: np.ndarray, labels: list[Any], out_dir: Path
) -> list[Path]:
    import numpy as np
    from sklearn.metrics import confusion_matrix

    known = np.isin(truth, labels) & np.isin(pred, labels)
    matrix = (
        confusion_matrix(truth, pred, labels=labels)
        if labels and known.any()
        else np.zeros((len(labels), len(labels)), dtype=np.int64)
    )
    names = [str(c) for c in labels]
    k = len(labels)
    side = min(16.0, max(4.0, 0.55 * k + 2.0))
    fig = _figure(side + 1.0, side)
    ax = fig.add_subplot()
    image = ax.imshow(matrix, cmap="Blues", interpolation="nearest")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(k), [_short(n) for n in names], rotation=45 if k > 4 else 0, ha="right")
    ax.set_yticks(range(k), [_short(n) for n in names])
    ax.set_xlabel("Predicted label")
    ax.set_ylabel("True label")
    ax.set_title("Confusion matrix")
    if k <= 30:
        high = matrix.max() if matrix.size else 0
        size = 10 if k <= 10 else 7
        for i in range(k):
            for j in range(k):
                count = int(matrix[i, j])
                ax.text(
                    j,
                    i,
                    str(count),
                    ha="center",
                    va="center",
                    fontsize=size,
                    color="white" if high and count > high / 2 else "black",
                )
    data = {
        "labels": [_plain(c) for c in labels],
        "matrix": [[int(v) for v in row] for row in matrix],
        "rows": "true label",
        "columns": "predicted label",
        "n": int(matrix.sum()),
        # Rows whose true or predicted label is not one of the classes are not counted.
        "uncounted": int((~known).sum()),
    }
    return [
        _save(fig, out_dir / "confusion_matrix.png"),
        _write_json(out_dir / "confusion_matrix.json", data),
    ]


def _short(name: str, width: int = 40) -> str:
    return name if len(name) <= width else name[: width - 1] + "…"


@dataclass(frozen=True)
class _Curve:
    label: Any
    area: float
    x: np.ndarray
    y: np.ndarray
    thresholds: np.ndarray
    prevalence: float


def _curves(truth: np.ndarray, proba: np.ndarray, labels: list[Any], out_dir: Path) -> list[Path]:
    import numpy as np
    from sklearn.metrics import auc, average_precision_score, precision_recall_curve, roc_curve

    if len(labels) < 2:
        return []
    binary = len(labels) == 2
    wanted = [(labels[1], 1)] if binary else list(zip(labels, range(len(labels)), strict=True))
    roc: list[_Curve] = []
    pr: list[_Curve] = []
    skipped: list[Any] = []
    for label, k in wanted:
        positive = truth == label
        n_pos = int(positive.sum())
        if n_pos == 0 or n_pos == positive.size:
            skipped.append(label)
            continue
        score = proba[:, k]
        prevalence = n_pos / positive.size
        fpr, tpr, roc_thresholds = roc_curve(positive, score)
        roc.append(_Curve(label, float(auc(fpr, tpr)), fpr, tpr, roc_thresholds, prevalence))
        precision, recall, pr_thresholds = precision_recall_curve(positive, score)
        # The last point (recall 0, precision 1) has no threshold.
        pr_thresholds = np.append(pr_thresholds, np.nan)
        ap = float(average_precision_score(positive, score))
        pr.append(_Curve(label, ap, recall, precision, pr_thresholds, prevalence))

    def macro(curves: list[_Curve]) -> float | None:
        # Like scikit-learn's one-vs-rest macro average: undefined unless every class has a curve.
        if binary or skipped or not curves:
            return None
        return _plain(float(np.mean([c.area for c in curves])))

    common = {
        "kind": "binary" if binary else "one-vs-rest",
        "positive_class": _plain(labels[1]) if binary else None,
        "skipped": [_plain(s) for s in skipped],
    }
    roc_data = {
        **common,
        "macro_auc": macro(roc),
        "curves": [_curve_json(c, "auc", "fpr", "tpr") for c in roc],
    }
    pr_data = {
        **common,
        "macro_average_precision": macro(pr),
        "curves": [_curve_json(c, "average_precision", "recall", "precision") for c in pr],
    }
    roc_fig = _curve_figure(
        roc,
        binary,
        title="ROC curve",
        xlabel="False positive rate",
        ylabel="True positive rate",
        area="AUC",
        positive=labels[1],
    )
    ax = roc_fig.axes[0]
    ax.plot([0, 1], [0, 1], linestyle="--", color="grey", linewidth=1, label="chance")
    ax.legend(loc="lower right", fontsize="small")
    pr_fig = _curve_figure(
        pr,
        binary,
        title="Precision-recall curve",
        xlabel="Recall",
        ylabel="Precision",
        area="AP",
        positive=labels[1],
        steps=True,
    )
    ax = pr_fig.axes[0]
    if binary and pr:
        ax.axhline(pr[0].prevalence, linestyle="--", color="grey", linewidth=1, label="chance")
    ax.legend(loc="lower left", fontsize="small")
    return [
        _save(roc_fig, out_dir / "roc_curve.png"),
        _write_json(out_dir / "roc_curve.json", roc_data),
        _save(pr_fig, out_dir / "pr_curve.png"),
        _write_json(out_dir / "pr_curve.json", pr_data),
    ]


def _curve_json(curve: _Curve, area: str, x: str, y: str) -> dict[str, Any]:
    keep = _thin(len(curve.x), CURVE_POINTS)
    return {
        "class": _plain(curve.label),
        area: _plain(curve.area),
        "prevalence": _plain(curve.prevalence),
        x: _floats(curve.x[keep]),
        y: _floats(curve.y[keep]),
        "thresholds": _floats(curve.thresholds[keep]),
    }


def _curve_figure(
    curves: list[_Curve],
    binary: bool,
    *,
    title: str,
    xlabel: str,
    ylabel: str,
    area: str,
    positive: Any,
    steps: bool = False,
) -> Figure:
    fig = _figure(6.0, 5.0)
    ax = fig.add_subplot()
    for curve in curves:
        keep = _thin(len(curve.x), _PLOT_POINTS)
        label = f"{area} = {curve.area:.3f}"
        if not binary:
            label = f"{_short(str(curve.label), 24)} ({label})"
        ax.plot(
            curve.x[keep],
            curve.y[keep],
            linewidth=1.5,
            label=label,
            drawstyle="steps-post" if steps else "default",
        )
    ax.set_xlim(-0.01, 1.01)
    ax.set_ylim(-0.01, 1.01)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    suffix = f" (positive class: {_short(str(positive), 30)})" if binary else " (one-vs-rest)"
    ax.set_title(title + suffix)
    ax.grid(alpha=0.3)
    return fig


def _scatter_rows(n: int) -> np.ndarray:
    import numpy as np

    if n <= _SCATTER_POINTS:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, _SCATTER_POINTS, replace=False))


def _regression(truth: np.ndarray, pred: np.ndarray, out_dir: Path) -> list[Path]:
    import numpy as np

    residuals = truth - pred
    rows = _scatter_rows(truth.size)
    fig = _figure(11.0, 4.5)
    scatter, histogram = fig.subplots(1, 2)
    scatter.scatter(pred[rows], residuals[rows], s=8, alpha=0.5, edgecolors="none")
    scatter.axhline(0, color="grey", linestyle="--", linewidth=1)
    scatter.set_xlabel("Predicted")
    scatter.set_ylabel("Residual (actual - predicted)")
    scatter.set_title("Residuals vs predicted")
    scatter.grid(alpha=0.3)
    finite = residuals[np.isfinite(residuals)]
    histogram.hist(finite, bins=min(50, max(10, int(np.sqrt(finite.size)))), color="C0")
    histogram.axvline(0, color="grey", linestyle="--", linewidth=1)
    histogram.set_xlabel("Residual (actual - predicted)")
    histogram.set_ylabel("Rows")
    histogram.set_title("Distribution of residuals")
    residual_png = _save(fig, out_dir / "residuals.png")

    fig = _figure(5.5, 5.5)
    ax = fig.add_subplot()
    ax.scatter(truth[rows], pred[rows], s=8, alpha=0.5, edgecolors="none")
    both = np.concatenate([truth, pred])
    both = both[np.isfinite(both)]
    if both.size:
        low, high = float(both.min()), float(both.max())
        ax.plot([low, high], [low, high], color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("Actual")
    ax.set_ylabel("Predicted")
    ax.set_title("Predicted vs actual")
    ax.grid(alpha=0.3)
    return [residual_png, _save(fig, out_dir / "predicted_vs_actual.png")]


def importance_artifacts(importances: dict[str, float], out_dir: Path) -> list[Path]:
    """``feature_importance.png`` (top :data:`TOP_FEATURES`) and ``feature_importance.csv``."""

    def key(item: tuple[str, float]) -> tuple[bool, float]:
        value = float(item[1])
        return (not math.isfinite(value), -abs(value) if math.isfinite(value) else 0.0)

    ranked = sorted(((str(k), float(v)) for k, v in importances.items()), key=key)
    csv_path = out_dir / "feature_importance.csv"
    with csv_path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.writer(f)
        writer.writerow(["feature", "importance"])
        writer.writerows((name, repr(value)) for name, value in ranked)
    top = [(n, v) for n, v in ranked if math.isfinite(v)][:TOP_FEATURES]
    fig = _figure(7.0, 0.3 * len(top) + 1.5)
    ax = fig.add_subplot()
    top.reverse()  # barh draws bottom-up: the largest on top
    ax.barh(range(len(top)), [v for _, v in top], color="C0")
    ax.set_yticks(range(len(top)), [_short(n) for n, _ in top])
    ax.axvline(0, color="grey", linewidth=0.8)
    ax.set_xlabel("Importance")
    shown = f"top {len(top)} of {len(ranked)}" if len(ranked) > len(top) else f"{len(top)}"
    ax.set_title(f"Feature importance ({shown} features)")
    ax.grid(axis="x", alpha=0.3)
    return [_save(fig, out_dir / "feature_importance.png"), csv_path]


# --------------------------------------------------------------------------------------------
# Feature importances


def feature_importances(pipeline: Any, feature_names: Sequence[str]) -> dict[str, float] | None:
    """Importance of each feature the estimator sees, from a fitted scikit-learn pipeline.

    The estimator is the pipeline's last step, fed by the earlier ones (a ``ColumnTransformer``
    in Tessera's pipelines, whatever the steps are named). Importances are the estimator's
    ``feature_importances_`` (tree ensembles, LightGBM's scikit-learn models), or else the
    absolute value of its ``coef_`` (linear models; with one row of coefficients per class, the
    mean over classes). They are named by ``pipeline[:-1].get_feature_names_out()`` (one-hot
    columns, for instance), or by ``feature_names`` when the earlier steps cannot name their
    outputs. A bare estimator (not a ``Pipeline``) is named by ``feature_names``.

    Args:
        pipeline: a fitted ``sklearn.pipeline.Pipeline`` (or a fitted estimator).
        feature_names: the model's input features.

    Returns:
        ``{transformed feature name: importance}`` in the estimator's column order, or None when
        the estimator has no importances or they do not match the names. Never raises.
    """
    try:
        return _importances(pipeline, feature_names)
    except Exception:
        return None


def _importances(pipeline: Any, feature_names: Sequence[str]) -> dict[str, float] | None:
    import numpy as np

    steps = getattr(pipeline, "steps", None)
    estimator = steps[-1][1] if steps else pipeline
    if hasattr(estimator, "feature_importances_"):
        values = np.asarray(estimator.feature_importances_, dtype=float)
    elif hasattr(estimator, "coef_"):
        coef = np.abs(np.asarray(estimator.coef_, dtype=float))
        values = coef.mean(axis=0) if coef.ndim == 2 else coef
    else:
        return None
    values = values.ravel()
    candidates: list[list[str]] = []
    if steps and len(steps) > 1:
        with contextlib.suppress(Exception):
            candidates.append([str(n) for n in pipeline[:-1].get_feature_names_out()])
    candidates.append([str(n) for n in feature_names])
    for names in candidates:
        if len(names) == values.size and len(set(names)) == len(names) and names:
            return {name: float(v) for name, v in zip(names, values, strict=True)}
    return None


# --------------------------------------------------------------------------------------------
# Model card


@dataclass(frozen=True)
class _Table:
    header: list[str]
    rows: list[list[str]]


@dataclass(frozen=True)
class _Items:
    """Bullets; with ``pairs``, each item is ``key: value`` (the key in bold)."""

    items: list[str] | list[tuple[str, str]]


@dataclass(frozen=True)
class _Status:
    passed: bool
    text: str


_Block = str | _Table | _Items | _Status


def model_card(info: Mapping[str, Any]) -> tuple[str, str]:
    """A model card: Markdown, and the same content as a standalone HTML page.

    Sections: Overview, Intended use, Training data, Evaluation, Quality gate (when ``gate`` is
    given), Lineage, Limitations and Parameters. Every key of ``info`` is optional; what is
    missing is left out or marked unknown. The HTML page has inline CSS and no external
    resources, and every value from ``info`` is HTML-escaped.

    Args:
        info: what the card says. Keys:

            - ``name`` (str), ``version`` (str): the registered model and its version.
            - ``description`` (str | None): what the model does; generated when missing.
            - ``task`` (``"classification"`` | ``"regression"``), ``target`` (str): what it
              predicts.
            - ``estimator`` (str): import path of the estimator class.
            - ``params`` (dict): the estimator's parameters.
            - ``features`` (list[str]): input features. ``classes`` (list): the classes seen.
            - ``metrics`` (list of dict): ``{metric, value, ci_low, ci_high, split, rows}``;
              the 95% interval may be None or NaN.
            - ``data`` (list of dict): ``{role, stage, version, rows}``, e.g. role ``"train"``
              or ``"test"``.
            - ``lineage`` (dict): ``pipeline_run``, ``git_commit``, ``code_hash``,
              ``mlflow_run_id`` (other keys are listed too).
            - ``gate`` (dict | None): ``{passed: bool, checks: [{check, value, threshold,
              passed}]}``.
            - ``intended_use`` (str | None), ``limitations`` (list[str] | None): generated from
              the facts above when missing.
            - ``created`` (str): ISO time of creation.
            - ``sha256`` (str, or dict of file name to str): digest of the model files.

    Returns:
        ``(markdown, html)``.
    """
    name = _text(info.get("name")) or "model"
    version = _text(info.get("version"))
    title = f"Model card: {name}" + (f" version {version}" if version else "")
    sections: list[tuple[str, list[_Block]]] = [
        ("Overview", _overview(info)),
        ("Intended use", [_intended_use(info)]),
        ("Training data", _data(info)),
        ("Evaluation", _evaluation(info)),
    ]
    gate = info.get("gate")
    if isinstance(gate, Mapping):
        sections.append(("Quality gate", _gate(gate)))
    sections += [
        ("Lineage", _lineage(info)),
        ("Limitations", [_Items(_limitations(info))]),
        ("Parameters", _parameters(info)),
    ]
    created = _text(info.get("created"))
    subtitle = f"Created {created}." if created else ""
    return _markdown(title, subtitle, sections), _html(title, subtitle, sections)


def _text(value: Any) -> str:
    """``value`` as one line of text ("" for None)."""
    if value is None:
        return ""
    if isinstance(value, float) and math.isnan(value):
        return ""
    return " ".join(str(value).split())


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def _fmt(value: Any) -> str:
    """A metric or threshold: 4 decimals, or 4 significant digits when very large or small."""
    if isinstance(value, bool) or value is None:
        return _text(value)
    number = _number(value)
    if number is None:
        return _text(value) if not isinstance(value, float) else "n/a"
    if isinstance(value, numbers.Integral):
        return f"{int(number):,}"
    if number != 0 and not 1e-3 <= abs(number) < 1e5:
        return f"{number:.4g}"
    return f"{number:.4f}"


def _rows(value: Any) -> str:
    number = _number(value)
    if number is None or number != int(number):
        return _text(value)
    return f"{int(number):,}"


def _records(info: Mapping[str, Any], key: str) -> list[Mapping[str, Any]]:
    value = info.get(key)
    if not isinstance(value, Iterable) or isinstance(value, str | bytes | Mapping):
        return []
    return [r for r in value if isinstance(r, Mapping)]


def _strings(info: Mapping[str, Any], key: str) -> list[str]:
    value = info.get(key)
    if value is None or isinstance(value, str | bytes) or not isinstance(value, Iterable):
        return []
    return [_text(v) for v in value]


def _listing(names: list[str], limit: int = 30) -> str:
    if len(names) <= limit:
        return ", ".join(names)
    return ", ".join(names[:limit]) + f" and {len(names) - limit} more"


def _overview(info: Mapping[str, Any]) -> list[_Block]:
    task = _text(info.get("task"))
    target = _text(info.get("target"))
    estimator = _text(info.get("estimator"))
    features = _strings(info, "features")
    classes = _strings(info, "classes")
    description = _text(info.get("description"))
    if not description:
        what = f"A {task} model" if task else "A model"
        if target:
            what += f" predicting '{target}'"
        if features:
            what += f" from {len(features)} feature{'s' if len(features) != 1 else ''}"
        description = what + (f", using {estimator}." if estimator else ".")
    pairs: list[tuple[str, str]] = [
        ("Task", task or "unknown"),
        ("Target", target or "unknown"),
        ("Estimator", estimator or "unknown"),
        ("Features", f"{len(features)}: {', '.join(features)}" if features else "unknown"),
    ]
    if classes or task == "classification":
        pairs.append(("Classes", ", ".join(classes) if classes else "unknown"))
    digest = info.get("sha256")
    if isinstance(digest, Mapping):
        pairs += [(f"SHA-256 of {_text(k)}", _text(v)) for k, v in digest.items()]
    elif digest:
        pairs.append(("SHA-256 of the model files", _text(digest)))
    return [description, _Items(pairs)]


def _intended_use(info: Mapping[str, Any]) -> str:
    given = _text(info.get("intended_use"))
    if given:
        return given
    task = _text(info.get("task")) or "prediction"
    target = _text(info.get("target"))
    what = f"{task.capitalize()} of '{target}'" if target else task.capitalize()
    return (
        f"{what} for rows like those it was trained on: the same features, produced by the "
        "same pipeline, from the same population and period. Any other use needs its own "
        "evaluation."
    )


def _data(info: Mapping[str, Any]) -> list[_Block]:
    records = _records(info, "data")
    if not records:
        return ["No data versions were recorded."]
    rows = [
        [_text(r.get("role")), _text(r.get("stage")), _text(r.get("version")), _rows(r.get("rows"))]
        for r in records
    ]
    return [_Table(["Role", "Stage", "Version", "Rows"], rows)]


def _interval(record: Mapping[str, Any]) -> str:
    value = _fmt(record.get("value"))
    low, high = _number(record.get("ci_low")), _number(record.get("ci_high"))
    if low is None or high is None:
        return value
    return f"{value} [{_fmt(low)}, {_fmt(high)}]"


def _evaluation(info: Mapping[str, Any]) -> list[_Block]:
    records = _records(info, "metrics")
    if not records:
        return ["No metrics were recorded."]
    rows = [
        [_text(r.get("metric")), _interval(r), _text(r.get("split")), _rows(r.get("rows"))]
        for r in records
    ]
    return [
        "Values on the evaluated rows, with 95% bootstrap confidence intervals in brackets.",
        _Table(["Metric", "Value [95% CI]", "Split", "Rows"], rows),
    ]


def _gate(gate: Mapping[str, Any]) -> list[_Block]:
    passed = bool(gate.get("passed"))
    checks = _records(gate, "checks")
    blocks: list[_Block] = [
        _Status(passed, "Passed: the model met every check." if passed else "Failed.")
    ]
    if checks:
        rows = [
            [
                _text(c.get("check")),
                _fmt(c.get("value")),
                _fmt(c.get("threshold")),
                "pass" if c.get("passed") else "fail",
            ]
            for c in checks
        ]
        blocks.append(_Table(["Check", "Value", "Threshold", "Result"], rows))
    return blocks


_LINEAGE = {
    "pipeline_run": "Pipeline run",
    "git_commit": "Git commit",
    "code_hash": "Code hash",
    "mlflow_run_id": "MLflow run ID",
}


def _lineage(info: Mapping[str, Any]) -> list[_Block]:
    lineage = info.get("lineage")
    lineage = lineage if isinstance(lineage, Mapping) else {}
    pairs = [(label, _text(lineage.get(key)) or "unknown") for key, label in _LINEAGE.items()]
    pairs += [(_text(k), _text(v)) for k, v in lineage.items() if k not in _LINEAGE]
    return [_Items(pairs)]


def _limitations(info: Mapping[str, Any]) -> list[str]:
    given = info.get("limitations")
    if given:
        return [_text(g) for g in ([given] if isinstance(given, str) else given)]
    task = _text(info.get("task"))
    data = _records(info, "data")
    features = _strings(info, "features")
    classes = _strings(info, "classes")
    metrics = _records(info, "metrics")
    out: list[str] = []
    train = [r for r in data if _text(r.get("role")).lower() == "train"]
    train_rows = [_number(r.get("rows")) for r in train]
    if train_rows and all(n is not None for n in train_rows):
        total = int(sum(n for n in train_rows if n is not None))
        out.append(
            f"Trained on {total:,} rows only; populations or periods absent from them are not "
            "represented."
        )
    if features:
        these = f"these {len(features)} features" if len(features) > 1 else "this feature"
        out.append(
            f"Uses only {these}: {_listing(features)}. Rows must provide "
            "them, with the meaning and units they had in training."
        )
    if task == "classification" and classes:
        out.append(
            f"Predicts only the {len(classes)} classes seen in training ({_listing(classes)}); "
            "a row of any other class is assigned one of them."
        )
    if task == "regression":
        out.append(
            "Predictions for feature values outside the range seen in training are "
            "extrapolations and may be unreliable."
        )
    if metrics:
        splits = sorted({_text(m.get("split")) for m in metrics if _text(m.get("split"))})
        where = f"the held-out {'/'.join(splits)} split" if splits else "held-out rows"
        out.append(
            f"The metrics are measured on {where}, drawn from the same data distribution as the "
            "training rows; performance on data that drifts from it may be lower."
        )
    else:
        out.append("No evaluation metrics were recorded for this version.")
    gate = info.get("gate")
    if isinstance(gate, Mapping) and not gate.get("passed"):
        out.append("This version did not pass its quality gate.")
    out.append("Not evaluated for fairness across subgroups of the population.")
    return out


def _parameters(info: Mapping[str, Any]) -> list[_Block]:
    params = info.get("params")
    if not isinstance(params, Mapping) or not params:
        return ["No parameters were recorded (the estimator's defaults)."]
    rows = [[_text(k), _param(v)] for k, v in sorted(params.items(), key=lambda kv: str(kv[0]))]
    return [_Table(["Parameter", "Value"], rows)]


def _param(value: Any) -> str:
    if isinstance(value, str):
        return _text(value)
    if value is None or isinstance(value, bool | int | float):
        return str(value)
    try:
        return json.dumps(value, sort_keys=True, default=str)
    except (TypeError, ValueError):
        return _text(value)


# Renderers: the same sections as Markdown and as HTML.


def _md_cell(text: str) -> str:
    return text.replace("\\", "\\\\").replace("|", "\\|")


def _markdown(title: str, subtitle: str, sections: list[tuple[str, list[_Block]]]) -> str:
    lines = [f"# {title}", ""]
    if subtitle:
        lines += [f"_{subtitle}_", ""]
    for heading, blocks in sections:
        lines += [f"## {heading}", ""]
        for block in blocks:
            if isinstance(block, str):
                lines.append(block)
            elif isinstance(block, _Status):
                lines.append(f"**{block.text}**")
            elif isinstance(block, _Items):
                for item in block.items:
                    if isinstance(item, tuple):
                        lines.append(f"- **{item[0]}:** {item[1]}")
                    else:
                        lines.append(f"- {item}")
            else:
                lines.append("| " + " | ".join(block.header) + " |")
                lines.append("|" + "|".join("---" for _ in block.header) + "|")
                lines += ["| " + " | ".join(_md_cell(c) for c in row) + " |" for row in block.rows]
            lines.append("")
    return "\n".join(lines)


_CSS = """
body { font-family: -apple-system, "Segoe UI", Roboto, Helvetica, Arial, sans-serif;
  color: #1f2328; background: #fff; margin: 0; line-height: 1.5; }
main { max-width: 60rem; margin: 2rem auto; padding: 0 1.5rem; }
h1 { font-size: 1.8rem; border-bottom: 1px solid #d0d7de; padding-bottom: .3rem; }
h2 { font-size: 1.3rem; margin-top: 2rem; border-bottom: 1px solid #eaeef2; }
.subtitle { color: #59636e; font-style: italic; }
table { border-collapse: collapse; margin: .5rem 0 1rem; }
th, td { border: 1px solid #d0d7de; padding: .3rem .7rem; text-align: left;
  vertical-align: top; }
th { background: #f6f8fa; }
td { font-variant-numeric: tabular-nums; overflow-wrap: anywhere; }
ul { padding-left: 1.5rem; }
li { overflow-wrap: anywhere; }
.status { display: inline-block; padding: .2rem .7rem; border-radius: 1rem; font-weight: 600; }
.passed { background: #dafbe1; color: #1a7f37; }
.failed { background: #ffebe9; color: #cf222e; }
td.pass { color: #1a7f37; } td.fail { color: #cf222e; font-weight: 600; }
""".strip()


def _html(title: str, subtitle: str, sections: list[tuple[str, list[_Block]]]) -> str:
    e = html.escape
    out = [
        "<!DOCTYPE html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(title)}</title>",
        f"<style>\n{_CSS}\n</style>",
        "</head>",
        "<body>",
        "<main>",
        f"<h1>{e(title)}</h1>",
    ]
    if subtitle:
        out.append(f'<p class="subtitle">{e(subtitle)}</p>')
    for heading, blocks in sections:
        out.append("<section>")
        out.append(f"<h2>{e(heading)}</h2>")
        for block in blocks:
            if isinstance(block, str):
                out.append(f"<p>{e(block)}</p>")
            elif isinstance(block, _Status):
                kind = "passed" if block.passed else "failed"
                out.append(f'<p><span class="status {kind}">{e(block.text)}</span></p>')
            elif isinstance(block, _Items):
                out.append("<ul>")
                for item in block.items:
                    if isinstance(item, tuple):
                        out.append(f"<li><strong>{e(item[0])}:</strong> {e(item[1])}</li>")
                    else:
                        out.append(f"<li>{e(item)}</li>")
                out.append("</ul>")
            else:
                out.append("<table>")
                head = "".join(f"<th>{e(h)}</th>" for h in block.header)
                out.append(f"<thead><tr>{head}</tr></thead>")
                out.append("<tbody>")
                for row in block.rows:
                    cells = []
                    for heading, cell in zip(block.header, row, strict=True):
                        result = heading == "Result" and cell in ("pass", "fail")
                        css = f' class="{cell}"' if result else ""
                        cells.append(f"<td{css}>{e(cell)}</td>")
                    out.append("<tr>" + "".join(cells) + "</tr>")
                out.append("</tbody>")
                out.append("</table>")
        out.append("</section>")
    out += ["</main>", "</body>", "</html>", ""]
    return "\n".join(out)
