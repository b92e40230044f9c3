"""What the training stages log to MLflow, and how a model finds its MLflow run.

A training run (``train``, or ``tune``'s refit) logs: the estimator's parameters, training
metrics (``train_*``), cross-validation metrics (``cv_*`` and ``cv_*_std``) when asked for,
feature importance, and the model itself (scikit-learn flavour, skops format, signature and
input example). It is tagged with :func:`tessera.tracking.lineage_tags` and with the version id
of the model table it produced (``tessera.model_version``); ``evaluate`` and ``register`` find
the run through that tag, log test metrics and evaluation artifacts to it, and register its
model.

Nothing is tracked outside a pipeline run (no stage context), or with ``track: false``.
"""

from __future__ import annotations

import importlib.metadata
import tempfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tessera.pipeline.context import StageContext, current
from tessera.tracking import Tracker, lineage_tags
from tessera.tracking.client import TAG_KIND, TAG_MODEL_VERSION
from tessera.training import evaluation, metrics, modelio, report, spec

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

    from tessera.training.build import Fitted

#: Distributions a logged model needs to be loaded (``lightgbm`` only when it uses it).
_RUNTIME = ("mlflow", "scikit-learn", "skops", "numpy", "pandas", "scipy")


def tracker() -> tuple[Tracker, StageContext] | None:
    """The project's tracker and the stage context, inside a pipeline run."""
    context = current()
    if context is None:
        return None
    return Tracker.for_project(context.project), context


def model_version(table: pa.Table) -> str:
    """The version id the pipeline will give this model table (its fingerprint)."""
    from tessera.data.fingerprint import fingerprint_table

    return fingerprint_table(table)


def requirements(estimator: str) -> list[str]:
    """Pinned requirements of a logged model, from the installed versions."""
    dists = list(_RUNTIME) + (["lightgbm"] if estimator.startswith("lightgbm.") else [])
    pinned = []
    for dist in dists:
        try:
            pinned.append(f"{dist}=={importlib.metadata.version(dist)}")
        except importlib.metadata.PackageNotFoundError:
            continue
    return pinned


def log_fit(
    tracking: tuple[Tracker, StageContext],
    loaded: spec.ModelSpec,
    fitted: Fitted,
    train: pd.DataFrame,
    table: pa.Table,
    *,
    kind: str,
    cv: Mapping[str, Sequence[float]] | None = None,
    params: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> str:
    """Log a fitted model to MLflow; returns the run id.

    Args:
        tracking: from :func:`tracker`.
        loaded: the spec.
        fitted: the fitted pipeline.
        train: the rows it was fitted on (for training metrics and the input example).
        table: the model table the stage returns (its fingerprint tags the run).
        kind: ``train`` or ``tune``.
        cv: cross-validation scores per metric, one per fold.
        params: more parameters to log (beyond the estimator's).
        run_id: log into this (already started) run instead of a new one.
    """
    import numpy as np

    tracker_, context = tracking
    tags = {**lineage_tags(context), TAG_KIND: kind, TAG_MODEL_VERSION: model_version(table)}
    own_run = run_id is None
    rid = run_id or tracker_.start_run(context.stage, tags)
    try:
        names = loaded.metric_names
        pred = evaluation.predictions(
            fitted.pipeline,
            loaded.task,
            train,
            fitted.features,
            loaded.target,
            names,
            estimator=loaded.estimator.class_path,
        )
        values = {f"train_{s.metric}": s.value for s in metrics.score(pred, names, samples=0)}
        for name, folds in (cv or {}).items():
            values[f"cv_{name}"] = float(np.mean(folds))
            values[f"cv_{name}_std"] = float(np.std(folds))
        tracker_.log(
            rid,
            params={
                **fitted.params,
                "estimator": loaded.estimator.class_path,
                "features": len(fitted.features),
                "train_rows": len(train),
                "seed": loaded.seed,
                **(params or {}),
            },
            metrics=values,
            tags=tags if not own_run else None,
        )
        with tempfile.TemporaryDirectory(prefix="tessera-fit-") as tmp:
            importances = report.feature_importances(fitted.pipeline, fitted.features)
            if importances:
                report.importance_artifacts(importances, Path(tmp))
                tracker_.log_artifacts(rid, Path(tmp), "training")
        data = table.column("bytes")[0].as_py()  # the skops bytes model_table made
        tracker_.log_model(
            rid,
            fitted.pipeline,
            train[fitted.features].head(5),
            trusted_types=modelio.trusted_types_of(data),
            requirements=requirements(loaded.estimator.class_path),
        )
    except BaseException:
        if own_run:
            tracker_.end_run(rid, "FAILED")
        raise
    if own_run:
        tracker_.end_run(rid)
    return rid


def log_evaluation(
    tracking: tuple[Tracker, StageContext],
    model_version_id: str,
    info: modelio.ModelInfo,
    pipeline: Any,
    pred: metrics.Predictions,
    scores: Sequence[metrics.Score],
    split: str,
) -> str:
    """Log test metrics and evaluation artifacts to the model's training run.

    When the model's run is not in this tracking store (the model came from a remote cache), a
    run of its own is created for the evaluation, tagged with the model's version id.
    """
    tracker_, context = tracking
    rid = tracker_.find_run(TAG_MODEL_VERSION, model_version_id)
    own_run = rid is None
    if rid is None:
        tags = {**lineage_tags(context), TAG_KIND: "evaluate", TAG_MODEL_VERSION: model_version_id}
        rid = tracker_.start_run(context.stage, tags)
    values: dict[str, float] = {}
    for s in scores:
        values[f"{split}_{s.metric}"] = s.value
        values[f"{split}_{s.metric}_ci_low"] = s.ci_low
        values[f"{split}_{s.metric}_ci_high"] = s.ci_high
    tracker_.log(rid, metrics=values, params=None)
    with tempfile.TemporaryDirectory(prefix="tessera-eval-") as tmp:
        classes = list(info.classes)
        y_true, y_pred, proba = _labels(pred, classes)
        report.evaluation_artifacts(
            info.task,
            y_true,
            y_pred,
            proba,
            classes,
            report.feature_importances(pipeline, info.features),
            Path(tmp),
        )
        tracker_.log_artifacts(rid, Path(tmp), f"evaluation/{split}")
    if own_run:
        tracker_.end_run(rid)
    return rid


def _labels(pred: metrics.Predictions, classes: list[Any]) -> tuple[Any, Any, Any]:
    """Original labels back from :func:`metrics.encode`'s class codes (rows whose true label
    the model never saw are left out), and the matching probabilities."""
    import numpy as np

    if pred.task == "regression":
        return pred.y_true, pred.y_pred, None
    known = pred.y_true >= 0
    lookup = np.asarray(classes)
    proba = None if pred.proba is None else pred.proba[known]
    return lookup[pred.y_true[known]], lookup[np.maximum(pred.y_pred[known], 0)], proba
