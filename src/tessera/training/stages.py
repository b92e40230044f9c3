"""The ``train``, ``evaluate`` and ``predict`` transformations.

Registered through the ``tessera.transformations`` entry point. Importing this module must stay
cheap (discovery imports it for every command that builds the registry): scikit-learn, LightGBM,
skops, pandas and numpy load only when a stage runs or a spec is checked.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from tessera.config.errors import did_you_mean
from tessera.pipeline.registry import InputPath, transformation
from tessera.training import build, evaluation, metrics, modelio, spec, track

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa

LIBRARIES = ("scikit-learn", "lightgbm", "skops")
_TRACK = Field(
    True,
    description="Log the run to MLflow (parameters, metrics, artifacts, the model) with tags "
    "linking it to the pipeline run, its input versions, code hash and commit.",
)
_ALL_METRICS = [m for names in spec.METRICS.values() for m in names]


def _check_spec(value: str, info: ValidationInfo) -> spec.ModelSpec | None:
    """The spec, loaded and checked, when the pipeline is being checked (before anything runs).

    Raises:
        ValueError: the file is missing or the spec is wrong (the message lists every problem
            with its file, line and key).
    """
    root = (info.context or {}).get("project_root")
    if root is None:  # running: the stage loads (and checks) the spec itself
        return None
    from pathlib import Path

    from tessera.config.errors import ConfigError

    if not (Path(root) / value).is_file():
        raise ValueError("an existing model spec file")
    try:
        return spec.load_spec(Path(root) / value, value)
    except ConfigError as exc:
        raise ValueError(
            "a valid model spec: " + "; ".join(p.render() for p in exc.sorted_problems())
        ) from None


class Train(BaseModel):
    """Config of ``train``."""

    model_config = ConfigDict(extra="forbid")

    spec: InputPath = Field(
        description="The model spec, relative to the project root (see docs/training.md); its "
        "content is part of the stage's cache key."
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Estimator parameters that replace the spec's `estimator.params` "
        "(handy on the command line: `-o model.params.n_estimators=50`).",
    )
    cv: int | None = Field(
        None,
        ge=2,
        description="Also cross-validate on the training table with this many folds "
        "(stratified for classification); logged as `cv_*` metrics.",
    )
    track: bool = _TRACK

    @field_validator("spec")
    @classmethod
    def _spec_is_valid(cls, value: str, info: ValidationInfo) -> str:
        _check_spec(value, info)
        return value

    @field_validator("params")
    @classmethod
    def _params_are_known(cls, value: dict[str, Any], info: ValidationInfo) -> dict[str, Any]:
        if not value or "spec" not in info.data:
            return value
        try:
            loaded = _check_spec(info.data["spec"], info)
        except ValueError:  # reported on `spec` already
            return value
        if loaded is None:
            return value
        est = spec.estimator_class(loaded.estimator.class_path)
        unknown = spec.unknown_params(est, value)
        if unknown:
            raise ValueError(
                f"parameters of {est.__name__}; unknown: "
                + ", ".join(f"'{n}'" + (f" ({h})" if h else "") for n, h in unknown)
            )
        return value


@transformation(name="train", libraries=LIBRARIES)
def train_model(train: pd.DataFrame, cfg: Train) -> pa.Table:
    """Fit the model a spec describes on a training table; output the model as a table.

    Preprocessing (imputers, scalers, encoders of the spec's column groups) and the estimator
    form one scikit-learn pipeline, fitted on this table only and saved whole, so evaluation and
    serving apply exactly what was learnt here. The output is one row: the pipeline serialized
    with skops (no pickle) in ``bytes``, its ``sha256``, and what it was trained with (task,
    target, estimator, features, classes, parameters, metrics, seed, rows, library versions).
    Load it with ``tessera.training.load_model``.

    Example:
        ```yaml
        model:
          uses: train
          inputs: [split.train]
          with:
            spec: models/churn.yaml
        ```

    Args:
        train: the training rows: the spec's features and target.
        cfg: the spec file, and parameter overrides.

    Returns:
        The one-row model table.
    """
    loaded = spec.load_spec(cfg.spec)
    tracking = track.tracker() if cfg.track else None
    if tracking is not None:
        tracking[0].experiment_id  # noqa: B018  (an unreachable server fails before the fit)
    started = time.perf_counter()
    fitted = build.fit(loaded, train, cfg.params)
    table = model_table(loaded, fitted, len(train))
    print(
        f"trained {loaded.estimator.class_path} on {len(train)} rows x "
        f"{len(fitted.features)} features in {time.perf_counter() - started:.2f}s"
    )
    cv = None
    if cfg.cv:
        cv = evaluation.cross_validate(
            fitted.pipeline,
            loaded.task,
            train,
            fitted.features,
            loaded.target,
            loaded.metric_names,
            folds=cfg.cv,
            seed=loaded.seed,
        )
        for s in evaluation.fold_summary(cv):
            print(f"cv {s.metric}: {s.value:.4f} [{s.ci_low:.4f}, {s.ci_high:.4f}]")
    if tracking is not None:
        run_id = track.log_fit(tracking, loaded, fitted, train, table, kind="train", cv=cv)
        print(f"logged MLflow run {run_id}")
    return table


def model_table(loaded: spec.ModelSpec, fitted: build.Fitted, train_rows: int) -> pa.Table:
    """The one-row model table of a fitted pipeline."""
    return modelio.model_table(
        fitted.pipeline,
        task=loaded.task,
        target=loaded.target,
        estimator=loaded.estimator.class_path,
        features=fitted.features,
        classes=fitted.classes,
        params=fitted.params,
        metrics=loaded.metric_names,
        seed=loaded.seed,
        train_rows=train_rows,
    )


class Bootstrap(BaseModel):
    """Bootstrap confidence intervals."""

    model_config = ConfigDict(extra="forbid")

    samples: int = Field(200, ge=0, description="Number of resamples (0: no intervals).")
    confidence: float = Field(0.95, gt=0, lt=1, description="Coverage of the intervals.")
    seed: int = Field(0, ge=0, description="Seed of the resampling.")


def check_metric_names(value: list[str] | None) -> list[str] | None:
    for name in value or []:
        if name not in _ALL_METRICS:
            hint = did_you_mean(name, _ALL_METRICS)
            raise ValueError(
                f"metric names; unknown: '{name}'"
                + (f" ({hint})" if hint else f" (known: {', '.join(_ALL_METRICS)})")
            )
    return value


class Evaluate(BaseModel):
    """Config of ``evaluate``."""

    model_config = ConfigDict(extra="forbid")

    metrics: list[str] | None = Field(
        None,
        min_length=1,
        description="Metrics to compute (default: the spec's `metrics`); names per task in "
        "docs/training.md.",
    )
    bootstrap: Bootstrap = Field(
        default_factory=Bootstrap, description="Bootstrap confidence intervals."
    )
    split: str = Field("test", description="The name written in the `split` column.")
    cv: int | None = Field(
        None,
        ge=2,
        description="Cross-validate instead of scoring the model as it is: refit copies of "
        "its pipeline (same preprocessing and parameters) on this many folds of the table; "
        "`value` is the mean over folds and the interval a Student-t interval of the mean.",
    )
    track: bool = _TRACK

    @field_validator("metrics")
    @classmethod
    def _metrics_are_known(cls, value: list[str] | None) -> list[str] | None:
        return check_metric_names(value)


@transformation(name="evaluate", libraries=LIBRARIES)
def evaluate_model(model: pd.DataFrame, test: pd.DataFrame, cfg: Evaluate) -> pd.DataFrame:
    """Score a trained model on a table: one row per metric, with a bootstrap interval.

    Predictions come from the saved pipeline (its own preprocessing); ``roc_auc`` and
    ``log_loss`` use predicted probabilities. Intervals are percentile bootstrap intervals over
    ``bootstrap.samples`` resamples of the rows.

    Example:
        ```yaml
        scores:
          uses: evaluate
          inputs: [model, split.test]
          with:
            bootstrap: {samples: 500}
        ```

    Args:
        model: the output of a `train` stage.
        test: rows with the model's features and target.
        cfg: metrics and bootstrap settings.

    Returns:
        Columns `metric`, `value`, `ci_low`, `ci_high`, `split` and `rows`.
    """
    import pandas as pd

    info = modelio.model_info(model)
    pipeline = modelio.load_model(model)
    names = cfg.metrics or info.metrics
    if cfg.cv:
        scores = evaluation.fold_summary(
            evaluation.cross_validate(
                pipeline,
                info.task,
                test,
                info.features,
                info.target,
                names,
                folds=cfg.cv,
                seed=info.seed,
            ),
            cfg.bootstrap.confidence,
        )
    else:
        pred = evaluation.predictions(
            pipeline, info.task, test, info.features, info.target, names, estimator=info.estimator
        )
        scores = metrics.score(
            pred,
            names,
            samples=cfg.bootstrap.samples,
            confidence=cfg.bootstrap.confidence,
            seed=cfg.bootstrap.seed,
        )
        tracking = track.tracker() if cfg.track else None
        if tracking is not None:
            model_version = next(iter(tracking[1].inputs.values()), None)
            if model_version is not None:
                run_id = track.log_evaluation(
                    tracking, model_version, info, pipeline, pred, scores, cfg.split
                )
                print(f"logged {cfg.split} metrics to MLflow run {run_id}")
    return pd.DataFrame(
        {
            "metric": [s.metric for s in scores],
            "value": [s.value for s in scores],
            "ci_low": [s.ci_low for s in scores],
            "ci_high": [s.ci_high for s in scores],
            "split": "cv" if cfg.cv else cfg.split,
            "rows": len(test),
        }
    )


class Predict(BaseModel):
    """Config of ``predict``."""

    model_config = ConfigDict(extra="forbid")

    column: str = Field("prediction", min_length=1, description="Name of the prediction column.")
    probability: str | None = Field(
        "probability",
        min_length=1,
        description="Binary classification: name of the column holding the probability of the "
        "positive class (the second of the sorted classes); null for none.",
    )


@transformation(name="predict", libraries=LIBRARIES)
def predict(model: pd.DataFrame, data: pd.DataFrame, cfg: Predict) -> pd.DataFrame:
    """Add the model's predictions to a table.

    Example:
        ```yaml
        scored:
          uses: predict
          inputs: [model, new_customers]
        ```

    Args:
        model: the output of a `train` stage.
        data: rows with the model's features (other columns are kept, untouched).
        cfg: names of the added columns.

    Returns:
        ``data`` with the prediction column (and, for two classes, the probability column).
    """
    info = modelio.model_info(model)
    pipeline = modelio.load_model(model)
    X = evaluation.features_of(data, info.features)
    out = data.copy()
    out[cfg.column] = pipeline.predict(X)
    if cfg.probability and info.task == "classification" and len(info.classes) == 2:
        out[cfg.probability] = pipeline.predict_proba(X)[:, 1]
    return out
