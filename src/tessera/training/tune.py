"""The ``tune`` transformation: hyperparameter search with Optuna, the best model refit.

A study samples estimator parameters from the spec's ``search_space`` (TPE by default), scores
each trial by cross-validation on the training table (or a hold-out share of it), stops hopeless
trials after a fold (median pruning), then refits the best parameters on the whole table and
returns the same one-row model table as ``train``.

Studies live in the project's Optuna storage (``stores.studies``, default SQLite
``.tessera/optuna.db``) under a name derived from the spec's content, the training data's version
and the objective, so an interrupted or extended tuning resumes where it stopped while a changed
input starts a new study. Trial workers — this process, worker processes (``n_jobs``) or Dask
workers — share that storage; each is a top-level function taking plain data. With tracking on,
the stage's MLflow run holds the refit model and the study summary, and every trial is a run
nested under it.

Importing this module stays cheap: Optuna, MLflow, scikit-learn, pandas and Dask load when the
stage runs.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from tessera.config.errors import did_you_mean
from tessera.pipeline.context import StageContext, current
from tessera.pipeline.registry import InputPath, transformation
from tessera.training import build, evaluation, metrics, spec, track
from tessera.training.stages import _TRACK, _check_spec, check_metric_names, model_table

if TYPE_CHECKING:
    import optuna
    import pandas as pd
    import pyarrow as pa

    from tessera.tracking import Tracker

LIBRARIES = ("scikit-learn", "lightgbm", "skops", "optuna", "mlflow")
#: Trials a worker counts before starting another one (running ones will finish; a failed one
#: does not count, and waiting ones, enqueued by hand, are what ``ask`` hands out first).
_TAKEN = ("COMPLETE", "PRUNED", "RUNNING")
#: Median pruning: trials that always run to the end before any is pruned.
PRUNER_STARTUP_TRIALS = 5
#: Seconds between progress lines while workers in other processes run trials.
_POLL_SECONDS = 1.0
TAG_STUDY = "tessera.study"
TAG_TRIAL = "tessera.trial"
TAG_TRIAL_STATE = "tessera.trial_state"


class Tune(BaseModel):
    """Config of ``tune``."""

    model_config = ConfigDict(extra="forbid")

    spec: InputPath = Field(
        description="The model spec, relative to the project root; its `search_space` is what "
        "is tuned (it must not be empty) and its content is part of the cache key and of the "
        "study's name."
    )
    trials: int = Field(
        20,
        ge=1,
        description="Trials the study should have in all: trials already in the study (complete "
        "or pruned) count, so raising it and running again adds only the difference. Not part "
        "of the study's name.",
    )
    metric: str | None = Field(
        None,
        description="The metric to optimise (a metric of the spec's task, see docs/training.md); "
        "maximised or minimised as the metric says (`log_loss`, `rmse`, `mae`, `mse` are "
        "minimised). Default: the spec's first metric.",
    )
    cv: int = Field(
        3,
        ge=2,
        description="Folds of the cross-validation that scores each trial (stratified for "
        "classification, seeded with the spec's `seed`); pruning looks at the running mean "
        "after each fold. Not used with `validation`.",
    )
    validation: float | None = Field(
        None,
        gt=0,
        lt=1,
        description="Score each trial on this share of the rows held out instead "
        "(stratified for classification; faster, noisier, no pruning); exclusive with `cv`.",
    )
    sampler: Literal["tpe", "random", "grid"] = Field(
        "tpe",
        description="`tpe` (Tree-structured Parzen Estimator), `random`, or `grid` (every "
        "combination, for spaces of categorical, integer and stepped float parameters only).",
    )
    pruner: Literal["median", "none"] = Field(
        "median",
        description="`median`: stop a trial after a fold when its running mean is worse than "
        "the median of earlier trials at the same fold (after 5 complete trials); `none`.",
    )
    n_jobs: int = Field(
        1,
        ge=1,
        description="Trial workers running at the same time, sharing the study's storage.",
    )
    executor: Literal["processes", "dask"] = Field(
        "processes",
        description="Where workers run when `n_jobs` > 1: `processes` (local worker processes) "
        "or `dask` (the project's `executor.address`, else a LocalCluster of `n_jobs` workers).",
    )
    timeout: float | None = Field(
        None,
        gt=0,
        description="Start no trial after this many seconds (running trials finish); the best "
        "trial so far is refit.",
    )
    study: str | None = Field(
        None,
        min_length=1,
        description="The study's name in the storage. Default: the project, the stage and a "
        "hash of the spec's content, the training data's version, the metric, `cv` / "
        "`validation` and the sampler — a changed input starts a new study, the same inputs "
        "resume theirs.",
    )
    track: bool = _TRACK

    @field_validator("spec")
    @classmethod
    def _spec_has_a_search_space(cls, value: str, info: ValidationInfo) -> str:
        loaded = _check_spec(value, info)
        if loaded is not None and not loaded.search_space:
            raise ValueError(f"a model spec with a `search_space` to tune ({value} has none)")
        return value

    @field_validator("metric")
    @classmethod
    def _metric_is_known(cls, value: str | None, info: ValidationInfo) -> str | None:
        if value is None:
            return value
        loaded = _loaded(info)
        if loaded is None:
            check_metric_names([value])
            return value
        _check_metric(loaded, info.data["spec"], value)
        return value

    @field_validator("sampler")
    @classmethod
    def _grid_is_possible(cls, value: str, info: ValidationInfo) -> str:
        loaded = _loaded(info)
        if value == "grid" and loaded is not None:
            _grid_space(loaded, info.data["spec"])
        return value

    @model_validator(mode="after")
    def _cv_or_validation(self) -> Tune:
        if self.validation is not None and "cv" in self.model_fields_set:
            raise ValueError("either `cv` or `validation`, not both")
        return self


def _loaded(info: ValidationInfo) -> spec.ModelSpec | None:
    """The stage's spec when the pipeline is being checked and the spec is valid."""
    if "spec" not in info.data:
        return None
    try:
        return _check_spec(info.data["spec"], info)
    except ValueError:  # reported on `spec` already
        return None


def _check_metric(loaded: spec.ModelSpec, display: str, metric: str) -> None:
    """Raises ValueError (saying what was expected) when ``metric`` cannot score the spec's
    model."""
    known = list(spec.METRICS[loaded.task])
    if metric not in known:
        hint = did_you_mean(metric, known)
        raise ValueError(
            f"a metric of the {loaded.task} model of {display}: {', '.join(known)}"
            + (f" ({hint})" if hint else "")
        )
    if metric in spec.PROBABILITY_METRICS:
        cls = spec.estimator_class(loaded.estimator.class_path)
        if not hasattr(cls, "predict_proba"):
            raise ValueError(
                f"a metric the estimator of {display} can compute: '{metric}' needs "
                f"predicted probabilities and {cls.__name__} has no predict_proba"
            )


def _grid_space(loaded: spec.ModelSpec, display: str) -> dict[str, list[Any]]:
    """Every value of every parameter, for the grid sampler; ValueError when one is continuous."""
    grid: dict[str, list[Any]] = {}
    for name, p in loaded.search_space.items():
        if isinstance(p, spec.CategoricalChoice):
            grid[name] = list(p.choices)
        elif isinstance(p, spec.IntRange):
            grid[name] = list(range(p.low, p.high + 1, p.step or 1))
        elif p.step is not None:
            count = math.floor((p.high - p.low) / p.step + 1e-9) + 1
            grid[name] = [round(p.low + i * p.step, 12) for i in range(count)]
        else:
            raise ValueError(
                f"a search space with finitely many values for `sampler: grid`; parameter "
                f"'{name}' of {display} is a float range without `step`"
            )
    return grid


def _objective_metric(loaded: spec.ModelSpec, cfg: Tune) -> str:
    metric = cfg.metric or loaded.metric_names[0]
    try:
        _check_metric(loaded, cfg.spec, metric)
    except ValueError as exc:
        raise ValueError(f"metric '{metric}': expected {exc}") from None
    return metric


# -- what a trial worker is given --------------------------------------------------------------


@dataclass(frozen=True)
class TrackingInfo:
    """Where trial workers log their MLflow runs (plain data, for other processes)."""

    uri: str
    experiment: str
    artifact_root: str | None
    parent_run: str
    tags: dict[str, str]


@dataclass(frozen=True)
class TrialJob:
    """Everything a trial worker needs, as plain data (it travels to processes and Dask)."""

    root: str
    spec_text: str
    spec_display: str
    storage_url: str | None
    study: str
    metric: str
    names: tuple[str, ...]
    folds: int | None
    validation: float | None
    sampler: str
    prune: bool
    #: Trials the study should have (complete, pruned or running) before workers stop.
    target: int
    #: Number of the first trial of this run (trials before it were there already).
    first: int
    #: Workers stop after this many failed trials in this run.
    fail_budget: int
    deadline: float | None
    tracking: TrackingInfo | None = None
    grid: dict[str, list[Any]] | None = field(default=None)


def _storage(url: str | None, *, create: bool = True) -> Any:
    """The Optuna storage of ``url``; None gives an in-memory one.

    SQLite gets a 60 s busy timeout: trial workers in several processes write to the same file
    (one short transaction per trial event) and wait for each other instead of failing.
    """
    import optuna

    if url is None:
        return optuna.storages.InMemoryStorage()

    from tessera.tracking.client import sqlite_creation_lock

    kwargs: dict[str, Any] = {}
    if url.startswith("sqlite:"):
        kwargs["engine_kwargs"] = {"connect_args": {"timeout": 60}}
    with sqlite_creation_lock(url):  # two stages creating a new database's tables at once
        return optuna.storages.RDBStorage(url, skip_table_creation=not create, **kwargs)


def _sampler(job: TrialJob, seed: int, worker: int) -> Any:
    """The job's sampler, seeded from the spec's seed.

    A new study's first worker uses the seed as it is (it draws what ``TPESampler(seed=seed)``
    would), so the same spec and data give the same trials; a resumed run and the other workers
    derive theirs from (seed, first trial of the run, worker) instead of repeating those draws.
    """
    import numpy as np
    import optuna

    state = seed
    if job.first or worker:
        state = int(np.random.SeedSequence([seed, job.first, worker]).generate_state(1)[0])
    if job.sampler == "random":
        return optuna.samplers.RandomSampler(seed=state)
    if job.sampler == "grid":

        class Grid(optuna.samplers.GridSampler):
            def after_trial(self, *args: Any, **kwargs: Any) -> None:
                """Workers stop at the grid's size by themselves (``study.stop`` is for
                ``Study.optimize`` only)."""

        return Grid(job.grid or {}, seed=state)
    return optuna.samplers.TPESampler(seed=state)


def _pruner(job: TrialJob) -> Any:
    import optuna

    if job.prune:
        return optuna.pruners.MedianPruner(n_startup_trials=PRUNER_STARTUP_TRIALS)
    return optuna.pruners.NopPruner()


def _quiet_optuna() -> None:
    import warnings

    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    warnings.filterwarnings("ignore", category=optuna.exceptions.ExperimentalWarning)


def suggest(trial: optuna.Trial, space: Mapping[str, spec.SearchParam]) -> dict[str, Any]:
    """The trial's values of the search space's parameters."""
    params: dict[str, Any] = {}
    for name, p in space.items():
        if isinstance(p, spec.IntRange):
            params[name] = trial.suggest_int(name, p.low, p.high, step=p.step or 1, log=p.log)
        elif isinstance(p, spec.FloatRange):
            params[name] = trial.suggest_float(name, p.low, p.high, step=p.step, log=p.log)
        else:
            params[name] = trial.suggest_categorical(name, list(p.choices))
    return params


def fold_callback(
    trial: optuna.Trial, last_step: int, prune: bool, offset: int = 0
) -> evaluation.FoldCallback:
    """Reports each fold's running mean to the trial (at step ``offset + fold``); prunes it
    (before the last fold) when the pruner says so."""

    def on_fold(step: int, running_mean: float) -> None:
        import optuna

        trial.report(running_mean, offset + step)
        if prune and step < last_step and trial.should_prune():
            raise optuna.TrialPruned(f"pruned after fold {step + 1}")

    return on_fold


#: A boosting model is scored this many times while it trains on the first fold (at 10 %, 20 %
#: ... of its iterations): intermediate values at steps 0..BOOSTING_STEPS-1; the folds' running
#: means follow at steps BOOSTING_STEPS + fold.
BOOSTING_STEPS = 10


def boosting_fit(
    trial: optuna.Trial, loaded: spec.ModelSpec, metric: str, prune: bool
) -> evaluation.FoldFit | None:
    """For a LightGBM estimator: fit the first fold with a callback that scores the model on
    the held-out rows every tenth of its iterations, reports it to the trial and prunes a
    hopeless trial mid-training. None for other estimators (they are pruned between folds)."""
    if not (prune and loaded.estimator.class_path.startswith("lightgbm.")):
        return None

    def fit(model: Any, X: Any, y: Any, X_held: Any, y_held: Any, fold: int) -> Any:
        if fold != 0:
            return model.fit(X, y)
        import numpy as np
        import optuna

        preprocess, estimator = model[:-1], model[-1]
        X_fit = preprocess.fit_transform(X, y)
        X_eval = preprocess.transform(X_held)
        total = int(estimator.get_params().get("n_estimators") or 100)
        every = max(1, total // BOOSTING_STEPS)
        classes: Any = np.unique(y) if loaded.task == "classification" else []

        def callback(env: Any) -> None:
            done = env.iteration + 1
            step = done // every - 1
            if done % every or done > total or step >= BOOSTING_STEPS:
                return
            raw = env.model.predict(X_eval, num_iteration=done)
            proba = pred = raw
            if loaded.task == "classification":
                proba = np.column_stack([1 - raw, raw]) if np.ndim(raw) == 1 else raw
                pred = classes[np.argmax(proba, axis=1)]
            scored = metrics.encode(loaded.task, classes, y_held, pred, proba)
            value = metrics.score(scored, [metric], samples=0)[0].value
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(
                    f"pruned at {done} of {total} boosting iterations of fold 1"
                )

        estimator.fit(X_fit, y, callbacks=[callback])
        return model

    return fit


def _holdout(
    pipeline: Any,
    loaded: spec.ModelSpec,
    frame: pd.DataFrame,
    features: Sequence[str],
    names: Sequence[str],
    share: float,
    on_fold: evaluation.FoldCallback,
    fit: evaluation.FoldFit | None = None,
) -> dict[str, list[float]]:
    """Scores on ``share`` of the rows held out, after fitting on the rest."""
    from sklearn.base import clone
    from sklearn.model_selection import train_test_split

    y = frame[loaded.target]
    stratify = y if loaded.task == "classification" else None
    fit_rows, held_out = train_test_split(
        frame, test_size=share, random_state=loaded.seed, stratify=stratify
    )
    X, y_fit = fit_rows[list(features)], fit_rows[loaded.target].to_numpy()
    if fit is None:
        model = clone(pipeline).fit(X, y_fit)
    else:
        y_held = held_out[loaded.target].to_numpy()
        model = fit(clone(pipeline), X, y_fit, held_out[list(features)], y_held, 0)
    pred = evaluation.predictions(model, loaded.task, held_out, features, loaded.target, names)
    scores = {s.metric: [s.value] for s in metrics.score(pred, names, samples=0)}
    on_fold(0, scores[names[0]][0])
    return scores


# -- a trial worker -----------------------------------------------------------------------------


class _TrialLogger:
    """A trial's nested MLflow run: created when the trial starts, filled when it ends."""

    def __init__(self, tracker: Tracker | None, info: TrackingInfo | None) -> None:
        self.tracker, self.info = tracker, info

    def start(self, number: int, study: str) -> str | None:
        if self.tracker is None or self.info is None:
            return None
        from tessera.tracking.client import TAG_KIND

        tags = {**self.info.tags, TAG_KIND: "trial", TAG_STUDY: study, TAG_TRIAL: str(number)}
        try:
            return self.tracker.start_run(f"trial {number}", tags, parent=self.info.parent_run)
        except Exception as exc:
            print(f"warning: trial {number}: could not create its MLflow run: {exc}")
            return None

    def finish(
        self,
        run_id: str | None,
        number: int,
        state: str,
        params: Mapping[str, Any],
        metric: str,
        running: Sequence[float],
        scores: Mapping[str, Sequence[float]],
        error: str | None,
    ) -> None:
        if run_id is None or self.tracker is None:
            return
        from mlflow.entities import Metric, Param, RunTag

        now = int(time.time() * 1000)
        values = [Metric(metric, v, now, step) for step, v in enumerate(running)]
        if state == "complete":
            values += [Metric(f"cv_{n}", float(sum(v) / len(v)), now, 0) for n, v in scores.items()]
        values = [m for m in values if math.isfinite(m.value)]
        tags = [RunTag(TAG_TRIAL_STATE, state)]
        if error:
            tags.append(RunTag("tessera.trial_error", error[:5000]))
        try:
            self.tracker.client.log_batch(
                run_id,
                metrics=values,
                params=[Param(k, _text(v)) for k, v in params.items()],
                tags=tags,
            )
            self.tracker.end_run(run_id, "FAILED" if state == "failed" else "FINISHED")
        except Exception as exc:
            print(f"warning: trial {number}: could not log it to MLflow: {exc}")


def _text(value: Any) -> str:
    return value if isinstance(value, str) else repr(value)


def run_trial(
    study: optuna.Study,
    trial: optuna.Trial,
    job: TrialJob,
    loaded: spec.ModelSpec,
    frame: pd.DataFrame,
    features: list[str],
    logger: _TrialLogger,
    worker: int = 0,
) -> optuna.trial.FrozenTrial:
    """Score one trial and tell the study; returns the finished trial.

    A trial that raises is told as failed, its error kept in the trial's ``error`` attribute.
    """
    import optuna
    from optuna.trial import TrialState

    run_id = logger.start(trial.number, job.study)
    params: dict[str, Any] = {}
    scores: dict[str, list[float]] = {}
    running: list[float] = []
    error: str | None = None
    value: float | None = None
    last_step = (job.folds or 1) - 1
    fit = boosting_fit(trial, loaded, job.metric, job.prune)
    report = fold_callback(trial, last_step, job.prune, BOOSTING_STEPS if fit else 0)

    def on_fold(step: int, mean: float) -> None:
        running.append(mean)
        report(step, mean)

    try:
        params = suggest(trial, loaded.search_space)
        pipeline, _ = build.build_pipeline(loaded, features, frame[features], params)
        if job.validation is not None:
            scores = _holdout(
                pipeline, loaded, frame, features, job.names, job.validation, on_fold, fit
            )
        else:
            scores = evaluation.cross_validate(
                pipeline,
                loaded.task,
                frame,
                features,
                loaded.target,
                job.names,
                folds=job.folds or 3,
                seed=loaded.seed,
                on_fold=on_fold,
                fit=fit,
            )
        folds = scores[job.metric]
        value = float(sum(folds) / len(folds))
        if not math.isfinite(value):
            raise ValueError(f"{job.metric} is not a number on these folds: {folds}")
        state = TrialState.COMPLETE
    except optuna.TrialPruned as exc:
        state = TrialState.PRUNED
        trial.set_user_attr("pruned", str(exc))
    except Exception as exc:
        state, error = TrialState.FAIL, f"{type(exc).__name__}: {exc}"
    trial.set_user_attr("worker", worker)
    if scores:
        trial.set_user_attr("cv", scores)
    if error:
        trial.set_user_attr("error", error)
    finished = study.tell(trial, value if state == TrialState.COMPLETE else None, state=state)
    name = {TrialState.COMPLETE: "complete", TrialState.PRUNED: "pruned"}.get(state, "failed")
    logger.finish(run_id, trial.number, name, params, job.metric, running, scores, error)
    return finished


def optimize(
    job: TrialJob,
    frame: pd.DataFrame,
    worker: int,
    lock: contextlib.AbstractContextManager[Any],
    *,
    study: optuna.Study | None = None,
    tracker: Tracker | None = None,
    on_trial: Callable[[optuna.trial.FrozenTrial], None] | None = None,
) -> int:
    """Run trials until the study has ``job.target`` of them (or the deadline, or the failure
    budget); returns how many this worker ran.

    Workers take the lock to count the study's trials and create the next one, so that several
    workers never start more trials than the study needs.
    """
    import optuna

    from tessera.tracking import Tracker as TrackerClass

    _quiet_optuna()
    loaded = spec.parse_spec(job.spec_text, job.spec_display)
    features = build.resolve_features(loaded, [str(c) for c in frame.columns])
    if study is None:
        study = optuna.load_study(
            study_name=job.study,
            storage=_storage(job.storage_url, create=False),
            sampler=_sampler(job, loaded.seed, worker),
            pruner=_pruner(job),
        )
    if tracker is None and job.tracking is not None:
        info = job.tracking
        root = Path(info.artifact_root) if info.artifact_root else None
        tracker = TrackerClass(info.uri, info.experiment, root)
    logger = _TrialLogger(tracker, job.tracking)
    ran = 0
    while job.deadline is None or time.time() < job.deadline:
        with lock:
            trials = study.get_trials(deepcopy=False)
            taken = sum(t.state.name in _TAKEN for t in trials)
            failed = sum(t.state.name == "FAIL" and t.number >= job.first for t in trials)
            if taken >= job.target or failed >= job.fail_budget:
                break
            trial = study.ask()
        finished = run_trial(study, trial, job, loaded, frame, features, logger, worker)
        ran += 1
        if on_trial is not None:
            on_trial(finished)
    return ran


_PROCESS_LOCK: Any = None


def init_worker(lock: Any) -> None:
    """Initializer of trial worker processes: the lock they share (inherited at start-up)."""
    global _PROCESS_LOCK
    _PROCESS_LOCK = lock


def trial_worker(job: TrialJob, data: bytes, worker: int, lock: str) -> dict[str, Any]:
    """A trial worker in another process or on a Dask worker: runs :func:`optimize`.

    Args:
        job: the study and what to score.
        data: the training table as Parquet.
        worker: the worker's number (seeds its sampler).
        lock: ``process`` (the lock inherited from the parent) or ``dask:NAME`` (a Dask
            distributed lock).

    Returns:
        ``{"ran": trials run, "output": what it printed}``.
    """
    import pandas as pd

    if os.path.isdir(job.root) and os.getcwd() != job.root:
        os.chdir(job.root)
    if lock.startswith("dask:"):  # a Dask worker's output goes to its own log
        from distributed import Lock

        shared = Lock(lock.removeprefix("dask:"))
        ran = optimize(job, pd.read_parquet(io.BytesIO(data)), worker, shared)
        return {"ran": ran, "output": ""}
    with _output() as output:
        ran = optimize(job, pd.read_parquet(io.BytesIO(data)), worker, _PROCESS_LOCK)
    return {"ran": ran, "output": output()}


@contextlib.contextmanager
def _output() -> Iterator[Callable[[], str]]:
    """Capture what the block prints, at the file-descriptor level (C libraries too); for a
    worker process of our own only (it changes the whole process's output)."""
    import sys

    with tempfile.TemporaryFile("w+", encoding="utf-8", errors="replace") as sink:
        sys.stdout.flush()
        sys.stderr.flush()
        saved = [os.dup(1), os.dup(2)]
        old = sys.stdout, sys.stderr
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        sys.stdout = sys.stderr = sink
        text: list[str] = []
        try:
            yield lambda: "".join(text)
        finally:
            sys.stdout, sys.stderr = old
            sink.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            for fd in saved:
                os.close(fd)
            sink.seek(0)
            text.append(sink.read())


# -- the stage ------------------------------------------------------------------------------------


class _Progress:
    """Prints a line for each trial of this run as it finishes: told by the worker in this
    process, polled from the storage for workers elsewhere."""

    def __init__(self, study: optuna.Study, first: int, metric: str) -> None:
        self.study, self.first, self.metric = study, first, metric
        self.seen: set[int] = set()

    def poll(self) -> None:
        for t in sorted(self.study.get_trials(deepcopy=False), key=lambda t: t.number):
            if t.number >= self.first and t.state.is_finished():
                self.show(t)

    def show(self, t: optuna.trial.FrozenTrial) -> None:
        if t.number in self.seen:
            return
        self.seen.add(t.number)
        params = ", ".join(f"{k}={v!r}" for k, v in t.params.items())
        if t.state.name == "COMPLETE":
            print(f"trial {t.number}: {self.metric} {t.value:.4f} ({params})", flush=True)
        elif t.state.name == "PRUNED":
            step = max(t.intermediate_values, default=0)
            why = t.user_attrs.get("pruned") or f"pruned at step {step}"
            print(f"trial {t.number}: {why} ({params})", flush=True)
        else:
            error = t.user_attrs.get("error", "interrupted")
            print(f"trial {t.number}: failed: {error} ({params})", flush=True)


def _study_name(context: StageContext | None, spec_text: str, metric: str, cfg: Tune) -> str:
    """Project, stage and a hash of what the trials' values depend on (not ``trials``)."""
    if context is None:
        return "tessera-tune"
    data = next(iter(context.inputs.values()), "")
    key = {
        "spec": spec_text,
        "data": data,
        "metric": metric,
        "cv": None if cfg.validation is not None else cfg.cv,
        "validation": cfg.validation,
        "sampler": cfg.sampler,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return f"{context.project.name}.{context.stage}.{digest}"


def _check_data(loaded: spec.ModelSpec, frame: pd.DataFrame, cfg: Tune) -> list[str]:
    """The features; ValueError for what would make every trial fail."""

    features = build.resolve_features(loaded, [str(c) for c in frame.columns])
    build.assign_columns(loaded, features, frame[features])
    build.check_target(loaded, frame)
    if loaded.task == "classification":
        counts = frame[loaded.target].astype(str).value_counts()
        if cfg.validation is None and counts.min() < cfg.cv:
            raise ValueError(
                f"cross-validation with {cfg.cv} folds needs at least {cfg.cv} rows of every "
                f"class; the smallest class of '{loaded.target}' has {int(counts.min())}"
            )
    elif cfg.validation is None and len(frame) < cfg.cv:
        raise ValueError(f"cross-validation with {cfg.cv} folds needs at least {cfg.cv} rows")
    return features


def _fail_stale(study: optuna.Study, storage: Any) -> int:
    """Mark trials left running by an interrupted run as failed; returns how many.

    The project's run lock guarantees no other run of this project is working on the study.
    """
    from optuna.trial import TrialState

    study_id = storage.get_study_id_from_name(study.study_name)
    stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
    for t in stale:
        trial_id = storage.get_trial_id_from_study_id_trial_number(study_id, t.number)
        storage.set_trial_user_attr(
            trial_id, "error", "interrupted (left running by a stopped run)"
        )
        storage.set_trial_state_values(trial_id, TrialState.FAIL)
    return len(stale)


@dataclass
class _Counts:
    complete: int = 0
    pruned: int = 0
    failed: int = 0

    @classmethod
    def of(cls, study: optuna.Study, since: int = 0) -> _Counts:
        counts = cls()
        for t in study.get_trials(deepcopy=False):
            if t.number < since:
                continue
            name = t.state.name
            if name == "COMPLETE":
                counts.complete += 1
            elif name == "PRUNED":
                counts.pruned += 1
            elif name == "FAIL":
                counts.failed += 1
        return counts

    @property
    def done(self) -> int:
        return self.complete + self.pruned


@transformation(name="tune", libraries=LIBRARIES)
def tune_model(train: pd.DataFrame, cfg: Tune) -> pa.Table:
    """Tune a spec's estimator with Optuna; output the best parameters' model as `train` does.

    Each trial draws estimator parameters from the spec's `search_space` (over its
    `estimator.params`), builds the spec's pipeline and scores it by `cv`-fold cross-validation
    on the training table (or on a `validation` share held out). Trials that fall behind the
    median of earlier trials after a fold are pruned, and LightGBM trials also while they
    train (every tenth of their boosting iterations on the first fold). The best parameters
    are then refit on the whole table: the output is the same one-row model table as
    `train`'s, so `evaluate`, `predict` and `register` work unchanged.

    The study is kept in the project's Optuna storage (`.tessera/optuna.db` by default) under a
    name derived from the spec, the training data's version and the objective: running again
    with more `trials`, or after an interruption, continues it. `n_jobs` workers (processes or
    Dask workers) share it. With `track`, the stage's MLflow run holds the refit model, the
    study summary (`study/best_params.json`, `study/trials.csv`, `study/param_importance.json`)
    and one nested run per trial.

    Example:
        ```yaml
        model:
          uses: tune
          inputs: [split.train]
          with:
            spec: models/churn.yaml
            trials: 30
            metric: roc_auc
            cv: 3
            n_jobs: 2
        ```

    Args:
        train: the training rows: the spec's features and target.
        cfg: the spec, the budget, the objective and where trials run.

    Returns:
        The one-row model table of the best parameters, refit on all of `train`.
    """
    import optuna

    _quiet_optuna()
    started = time.perf_counter()
    spec_text = Path(cfg.spec).read_text(encoding="utf-8")
    loaded = spec.parse_spec(spec_text, cfg.spec)
    if not loaded.search_space:
        raise ValueError(f"{cfg.spec} has no `search_space`: there is nothing to tune")
    metric = _objective_metric(loaded, cfg)
    grid = _grid_space(loaded, cfg.spec) if cfg.sampler == "grid" else None
    _check_data(loaded, train, cfg)
    context = current()
    name = cfg.study or _study_name(context, spec_text, metric, cfg)
    direction: Literal["maximize", "minimize"] = (
        "maximize" if evaluation.higher_is_better(metric) else "minimize"
    )
    target = cfg.trials
    if grid is not None:
        target = min(target, math.prod(len(v) for v in grid.values()))

    with tempfile.TemporaryDirectory(prefix="tessera-tune-") as tmp:
        url = context.project.studies_url if context is not None else None
        if url is None and cfg.n_jobs > 1:  # workers in other processes need a shared storage
            url = f"sqlite:///{Path(tmp) / 'optuna.db'}"
        storage = _storage(url)
        study = optuna.create_study(
            storage=storage, study_name=name, direction=direction, load_if_exists=True
        )
        if study.direction.name.lower() != direction:
            raise ValueError(
                f"study '{name}' {study.direction.name.lower()}s its objective, but {metric} "
                f"is to {direction}; choose another `study` name"
            )
        stale = _fail_stale(study, storage)
        before = _Counts.of(study)
        first = len(study.get_trials(deepcopy=False))
        remaining = max(0, target - before.done)
        names = (metric, *(m for m in loaded.metric_names if m != metric))
        workers = min(cfg.n_jobs, remaining)
        pool = None
        if workers > 1 and cfg.executor == "processes" and _can_start_processes():
            pool = _Pool(workers, _warm_up_modules(loaded, cfg.track and context is not None))
        try:
            tracking = track.tracker() if cfg.track else None
            parent = _start_parent(tracking, name) if tracking is not None else None
        except BaseException:
            if pool is not None:
                pool.close(cancel=True)
            raise
        job = TrialJob(
            root=str(context.project.root) if context is not None else os.getcwd(),
            spec_text=spec_text,
            spec_display=cfg.spec,
            storage_url=url,
            study=name,
            metric=metric,
            names=names,
            folds=None if cfg.validation is not None else cfg.cv,
            validation=cfg.validation,
            sampler=cfg.sampler,
            prune=cfg.pruner == "median",  # a hold-out has one "fold": only boosting prunes
            target=target,
            first=first,
            fail_budget=max(remaining, 1),
            deadline=time.time() + cfg.timeout if cfg.timeout else None,
            tracking=_tracking_info(tracking, parent, name) if parent is not None else None,
            grid=grid,
        )
        print(
            f"study {name}: {before.done} of {target} trials there already"
            + (f", {stale} interrupted trial(s) marked failed" if stale else "")
            + f"; running {remaining} with {workers or 1} worker(s)"
        )
        try:
            if remaining:
                _run_workers(job, train, cfg, study, storage, tracking, pool)
            if pool is not None:
                pool.close()
                pool = None
            table = _finish(study, job, loaded, train, before, started, tracking, parent, cfg)
        except BaseException:
            if pool is not None:
                pool.close(cancel=True)
            if tracking is not None and parent is not None:
                tracking[0].end_run(parent, "FAILED")
            raise
    return table


def _can_start_processes() -> bool:
    """False in a daemonic process (a Dask worker running this stage), which cannot."""
    import multiprocessing

    return not multiprocessing.current_process().daemon


def _start_parent(tracking: tuple[Tracker, StageContext], study: str) -> str:
    from sqlalchemy.exc import OperationalError

    from tessera.tracking import lineage_tags
    from tessera.tracking.client import TAG_KIND

    tracker, context = tracking
    tags = {**lineage_tags(context), TAG_KIND: "tune", TAG_STUDY: study}
    for attempt in range(8):
        try:
            return tracker.start_run(context.stage, tags)
        except OperationalError:  # two stages creating a new MLflow database's tables at once
            if attempt == 7:
                raise
            time.sleep(0.25 * (attempt + 1))
    raise AssertionError("unreachable")


def _tracking_info(
    tracking: tuple[Tracker, StageContext] | None, parent: str, study: str
) -> TrackingInfo | None:
    if tracking is None:
        return None
    from tessera.tracking import lineage_tags

    tracker, context = tracking
    return TrackingInfo(
        uri=tracker.uri,
        experiment=tracker.experiment,
        artifact_root=str(tracker.artifact_root) if tracker.artifact_root else None,
        parent_run=parent,
        tags=lineage_tags(context),
    )


def _run_workers(
    job: TrialJob,
    train: pd.DataFrame,
    cfg: Tune,
    study: optuna.Study,
    storage: Any,
    tracking: tuple[Tracker, StageContext] | None,
    pool: _Pool | None,
) -> None:
    """Run the trials: here (one worker), here and in worker processes, or on Dask workers.

    With ``executor: processes`` this process is worker 0 and ``n_jobs - 1`` worker processes
    join it: it has imported everything already and would otherwise only wait.
    """
    import optuna

    progress = _Progress(study, job.first, job.metric)
    workers = min(cfg.n_jobs, job.target - _Counts.of(study).done)
    seed = spec.parse_spec(job.spec_text, job.spec_display).seed
    here = optuna.study.Study(
        study.study_name, storage, sampler=_sampler(job, seed, 0), pruner=_pruner(job)
    )
    tracker = tracking[0] if tracking is not None else None

    def run_here(lock: Any, on_trial: Callable[[optuna.trial.FrozenTrial], None]) -> None:
        optimize(job, train, 0, lock, study=here, tracker=tracker, on_trial=on_trial)

    if workers <= 1:
        run_here(threading.Lock(), progress.show)
        return
    if cfg.executor == "processes" and pool is None:
        # A daemonic process (a Dask worker running this stage) cannot start processes.
        print(f"running {workers} workers as threads: this process cannot start processes")
        _in_threads(job, train, workers, progress)
        return
    buffer = io.BytesIO()
    train.to_parquet(buffer)
    data = buffer.getvalue()
    if pool is not None:
        results = _in_processes(job, data, workers, progress, run_here, pool)
    else:
        results = _on_dask(job, data, workers, progress)
    for i, result in results:
        if result["output"].strip():
            print(f"--- output of trial worker {i} ---\n{result['output'].rstrip()}")


def _in_threads(job: TrialJob, train: pd.DataFrame, workers: int, progress: _Progress) -> None:
    from concurrent.futures import ThreadPoolExecutor

    lock = threading.Lock()
    with ThreadPoolExecutor(workers) as pool:
        futures = [pool.submit(optimize, job, train, i, lock) for i in range(workers)]
        _wait(futures, progress, _wait_local)


def _wait_local(futures: list[Any]) -> bool:
    from concurrent.futures import wait

    done, _ = wait(futures, timeout=_POLL_SECONDS)
    return len(done) == len(futures)


def _wait(
    futures: list[Any], progress: _Progress, wait_some: Callable[[list[Any]], bool]
) -> list[Any]:
    """Wait for every future, printing progress meanwhile; results in order."""
    while not wait_some(futures):
        progress.poll()
    progress.poll()
    return [f.result() for f in futures]


class _Pool:
    """Worker processes 1..n-1 (``spawn``) and the lock they share with worker 0, this process.

    Started before this process sets up MLflow, with a warm-up task each, so that the workers'
    imports overlap that set-up instead of delaying their first trial.
    """

    def __init__(self, workers: int, warm_up: tuple[str, ...]) -> None:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor

        ctx = multiprocessing.get_context("spawn")
        self.lock = ctx.Lock()
        self.executor = ProcessPoolExecutor(
            workers - 1, mp_context=ctx, initializer=init_worker, initargs=(self.lock,)
        )
        self.warming = [self.executor.submit(_import, warm_up) for _ in range(workers - 1)]

    def close(self, *, cancel: bool = False) -> None:
        """Stop the pool: its processes exit in the background (their results are in), or,
        with ``cancel`` (this process failed), are terminated in the middle of their trials
        (which the next run marks as interrupted)."""
        processes = list((getattr(self.executor, "_processes", None) or {}).values())
        self.executor.shutdown(wait=False, cancel_futures=cancel)
        if cancel:
            for process in processes:
                process.terminate()


def _import(modules: tuple[str, ...]) -> None:
    """Warm-up task of a worker process: import what trials need."""
    import importlib

    for name in modules:
        importlib.import_module(name)


def _warm_up_modules(loaded: spec.ModelSpec, track: bool) -> tuple[str, ...]:
    estimator = loaded.estimator.class_path.rpartition(".")[0]
    modules = ("pandas", "pyarrow.parquet", "optuna", "sklearn.pipeline", "sklearn.compose")
    return (*modules, estimator, *(("mlflow",) if track else ()))


def _in_processes(
    job: TrialJob,
    data: bytes,
    workers: int,
    progress: _Progress,
    run_here: Callable[[Any, Callable[[Any], None]], None],
    pool: _Pool,
) -> list[tuple[int, dict[str, Any]]]:
    """Workers 1.. in the pool's processes, worker 0 here, all sharing the pool's lock."""
    executor = pool.executor
    futures = [executor.submit(trial_worker, job, data, i, "process") for i in range(1, workers)]
    run_here(pool.lock, lambda _: progress.poll())
    return list(enumerate(_wait(futures, progress, _wait_local), 1))


def _on_dask(
    job: TrialJob, data: bytes, workers: int, progress: _Progress
) -> list[tuple[int, dict[str, Any]]]:
    """Submit the workers to Dask: the cluster this stage runs on, the project's scheduler
    (``executor.address``) or a LocalCluster of ``workers`` processes started for the study."""
    import logging
    import signal

    try:
        from distributed import Client, LocalCluster, get_worker, worker_client
    except ImportError:
        raise ImportError("`executor: dask` needs Dask: pip install 'tessera[dask]'") from None

    def run(client: Any) -> list[tuple[int, dict[str, Any]]]:
        shared = client.scatter(data, broadcast=True)
        lock = f"dask:tessera-tune-{job.study}"
        futures = [
            client.submit(
                trial_worker, job, shared, i, lock, pure=False, key=f"tune-{job.study}-{i}"
            )
            for i in range(workers)
        ]
        return list(enumerate(_wait(futures, progress, _wait_dask)))

    try:
        get_worker()
        on_worker = True
    except ValueError:
        on_worker = False
    if on_worker:
        with worker_client() as client:
            return run(client)
    context = current()
    address = context.project.dask_address if context is not None else None
    if address:
        with Client(address, timeout="10s") as client:
            return run(client)
    try:  # Ctrl-C is for this process: workers started ignoring it keep ignoring it
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    except ValueError:  # not the main thread
        previous = None
    try:
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=1,
            processes=True,
            dashboard_address=None,
            silence_logs=logging.ERROR,
        )
    finally:
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
    with cluster, Client(cluster) as client:
        return run(client)


def _wait_dask(futures: list[Any]) -> bool:
    from distributed import wait

    try:
        wait(futures, timeout=_POLL_SECONDS)
    except TimeoutError:
        return False
    return True


def _finish(
    study: optuna.Study,
    job: TrialJob,
    loaded: spec.ModelSpec,
    train: pd.DataFrame,
    before: _Counts,
    started: float,
    tracking: tuple[Tracker, StageContext] | None,
    parent: str | None,
    cfg: Tune,
) -> pa.Table:
    """Refit the best trial's parameters on the whole table; log the study; the model table."""
    total = _Counts.of(study)
    new = _Counts.of(study, job.first)
    print(
        f"ran {new.complete + new.pruned + new.failed} trial(s) in "
        f"{time.perf_counter() - started:.1f}s: {new.complete} complete, {new.pruned} pruned, "
        f"{new.failed} failed; the study has {total.done} ({before.done} resumed)"
    )
    if total.complete == 0:
        errors = [
            t.user_attrs["error"]
            for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number)
            if "error" in t.user_attrs
        ]
        if errors:
            raise ValueError(f"every trial failed; the first: {errors[0]}")
        raise ValueError("no trial completed (the timeout came first?)")
    if new.failed and new.done == 0 and job.target > before.done:
        print("warning: every trial of this run failed; refitting the best earlier trial")
    best = study.best_trial
    params = dict(best.params)
    print(f"best {job.metric} {best.value:.4f} (trial {best.number}): {params}")
    refit = time.perf_counter()
    fitted = build.fit(loaded, train, params)
    table = model_table(loaded, fitted, len(train))
    print(f"refit on {len(train)} rows in {time.perf_counter() - refit:.2f}s")
    if tracking is not None and parent is not None:
        cv = best.user_attrs.get("cv")
        tune_params = {f"best_{k}": v for k, v in params.items()}
        tune_params.update(
            tune_metric=job.metric,
            tune_trials=job.target,
            tune_cv=job.folds if job.folds is not None else f"validation {job.validation}",
            tune_sampler=job.sampler,
            tune_pruner=cfg.pruner,
        )
        track.log_fit(
            tracking,
            loaded,
            fitted,
            train,
            table,
            kind="tune",
            cv=cv,
            params=tune_params,
            run_id=parent,
        )
        tracker = tracking[0]
        tracker.log(
            parent,
            metrics={
                f"best_cv_{job.metric}": float(best.value or math.nan),
                "n_trials_complete": total.complete,
                "n_trials_pruned": total.pruned,
                "n_trials_failed": total.failed,
                "n_trials_resumed": before.done,
            },
        )
        with tempfile.TemporaryDirectory(prefix="tessera-study-") as tmp:
            study_summary(study, job, Path(tmp))
            tracker.log_artifacts(parent, Path(tmp), "study")
        tracker.end_run(parent)
        print(f"logged MLflow run {parent} with {new.complete + new.pruned + new.failed} trials")
    return table


def study_summary(study: optuna.Study, job: TrialJob, out_dir: Path) -> list[Path]:
    """Write ``best_params.json``, ``trials.csv`` and (with two or more complete trials of two
    or more parameters) ``param_importance.json``; returns the files written."""
    import pandas as pd

    out_dir.mkdir(parents=True, exist_ok=True)
    best = study.best_trial
    counts = _Counts.of(study)
    written = [out_dir / "best_params.json"]
    written[0].write_text(
        json.dumps(
            {
                "study": study.study_name,
                "metric": job.metric,
                "direction": study.direction.name.lower(),
                "best_value": best.value,
                "best_trial": best.number,
                "params": best.params,
                "cv": best.user_attrs.get("cv"),
                "trials": {
                    "complete": counts.complete,
                    "pruned": counts.pruned,
                    "failed": counts.failed,
                },
            },
            indent=2,
            default=str,
        )
        + "\n"
    )
    names = sorted({k for t in study.get_trials(deepcopy=False) for k in t.params})
    rows = []
    for t in study.get_trials(deepcopy=False):
        duration = t.duration.total_seconds() if t.duration is not None else None
        rows.append(
            {
                "number": t.number,
                "state": t.state.name.lower(),
                "value": t.value,
                "duration_s": duration,
                "worker": t.user_attrs.get("worker"),
                **{f"param_{n}": t.params.get(n) for n in names},
                "error": t.user_attrs.get("error"),
            }
        )
    pd.DataFrame(rows).to_csv(out_dir / "trials.csv", index=False)
    written.append(out_dir / "trials.csv")
    complete = [t for t in study.get_trials(deepcopy=False) if t.state.name == "COMPLETE"]
    varied = {
        k for t in complete for k in t.params if len({repr(c.params[k]) for c in complete}) > 1
    }
    if len(complete) >= 2 and len(varied) >= 2:
        import optuna

        try:
            importances = optuna.importance.get_param_importances(study)
        except Exception as exc:  # too few distinct trials for the evaluator
            print(f"parameter importance skipped: {exc}")
        else:
            path = out_dir / "param_importance.json"
            path.write_text(json.dumps(importances, indent=2) + "\n")
            written.append(path)
    return written
