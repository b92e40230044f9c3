"""``tune``: Optuna studies that resume, prune, run trials in parallel and log to MLflow."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tessera.pipeline.registry import discover
from tessera.training import load_model, model_info
from tessera.training.tune import Tune, fold_callback, tune_model

from support import Project, statuses

SPEC = """
task: classification
target: target
features: {exclude: [worst_*]}
estimator:
  class: sklearn.ensemble.RandomForestClassifier
  params: {n_estimators: 10}
preprocessing:
  numbers: {type: numeric, impute: median, scale: none}
metrics: [roc_auc, accuracy]
seed: 7
search_space:
  n_estimators: {type: int, low: 5, high: 20}
  max_depth: {type: categorical, choices: [2, 4, null]}
"""

#: Tiny C makes logistic regression predict the majority class: trials a pruner should stop.
LOGISTIC = """
task: classification
target: target
features: {exclude: [worst_*]}
estimator:
  class: sklearn.linear_model.LogisticRegression
  params: {max_iter: 200}
preprocessing:
  numbers: {type: numeric, impute: median, scale: standard}
metrics: [accuracy]
seed: 3
search_space:
  C: {type: float, low: 0.000001, high: 10.0, log: true}
  fit_intercept: {type: categorical, choices: [true, false]}
"""

#: A tiny learning rate leaves LightGBM near the prior after its first iterations: trials a
#: pruner should stop while they train.
BOOSTING = """
task: classification
target: target
features: {exclude: [worst_*]}
estimator:
  class: lightgbm.LGBMClassifier
  params: {n_estimators: 40, n_jobs: 1, verbose: -1}
preprocessing:
  numbers: {type: numeric, impute: median, scale: none}
metrics: [log_loss]
seed: 5
search_space:
  learning_rate: {type: float, low: 0.00001, high: 0.5, log: true}
"""

PIPELINE = """
stages:
  raw:    {uses: read_table, with: {path: data/cancer.csv}}
  split:  {uses: train_test_split, inputs: [raw], with: {strategy: stratified, target: target}}
  model:  {uses: tune, inputs: [split.train], with: {spec: models/tune.yaml, WITH}}
"""

EVALUATE = (
    "  scores: {uses: evaluate, inputs: [model, split.test], with: {bootstrap: {samples: 0}}}\n"
)


@pytest.fixture(autouse=True)
def _restore_mlflow_state() -> Iterator[None]:
    """Tracking sets MLflow's process-wide URIs (and their environment variables): undo it."""
    names = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")
    saved = {name: os.environ.get(name) for name in names}
    yield
    for name, value in saved.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value
    if "mlflow" in sys.modules:
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        tracking_utils._tracking_uri = None
        registry_utils._registry_uri = None


def tune_project(project: Project, cancer: pd.DataFrame, with_: str, spec: str = SPEC) -> Project:
    (project.root / "data").mkdir(exist_ok=True)
    cancer.to_csv(project.root / "data" / "cancer.csv", index=False)
    project.write("models/tune.yaml", spec)
    project.write("pipeline.yaml", PIPELINE.replace("WITH", with_))
    return project


def study_of(root: Path) -> Any:
    """The only study in the project's Optuna storage."""
    import optuna

    url = f"sqlite:///{root / '.tessera' / 'optuna.db'}"
    names = optuna.study.get_all_study_names(url)
    assert len(names) == 1, names
    return optuna.load_study(study_name=names[0], storage=url)


def states(study: Any) -> list[str]:
    return [t.state.name for t in sorted(study.trials, key=lambda t: t.number)]


def stage_log(root: Path, stage: str = "model") -> str:
    logs = sorted((root / ".tessera" / "logs").glob(f"*/{stage}.log"), key=os.path.getmtime)
    return logs[-1].read_text()


def mlflow_client(root: Path) -> Any:
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{root / '.tessera' / 'mlflow.db'}")


def tune_runs(root: Path) -> tuple[Any, Any, list[Any]]:
    """The client, the (only) tune run and its nested trial runs."""
    client = mlflow_client(root)
    experiment = client.get_experiment_by_name("test")
    parents = client.search_runs(
        [experiment.experiment_id], filter_string="tags.`tessera.kind` = 'tune'"
    )
    assert len(parents) == 1
    parent = parents[0]
    children = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`mlflow.parentRunId` = '{parent.info.run_id}'",
        max_results=1000,
    )
    return client, parent, children


def model_of(root: Path, result: Any) -> Any:
    from tessera.data.store import ArtifactStore

    version = next(s for s in result.json()["stages"] if s["stage"] == "model")["outputs"]["out"]
    return ArtifactStore(root / ".tessera" / "cache").get_table(version)


# -- registration and configuration -----------------------------------------------------------


def test_the_stage_is_registered_and_importing_it_is_light() -> None:
    found = discover(None).transformations["tune"]
    assert found.inputs == ("train",) and found.config_model is Tune
    assert {"scikit-learn", "optuna", "mlflow"} <= set(found.libraries)
    code = (
        "import sys, tessera.training.tune;"
        "heavy = {'sklearn', 'lightgbm', 'optuna', 'mlflow', 'pandas', 'numpy', 'distributed'};"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_bad_configs_are_reported_before_anything_runs(
    project: Project, cancer: pd.DataFrame, tessera
) -> None:
    tune_project(project, cancer, "metric: rmse")
    result = tessera("run", cwd=project.root)
    assert result.code == 2
    assert "a metric of the classification model of models/tune.yaml" in result.err
    assert "got 'rmse'" in result.err
    project.edit("pipeline.yaml", "metric: rmse", "metric: acuracy")
    result = tessera("run", cwd=project.root)
    assert result.code == 2 and "(did you mean 'accuracy'?)" in result.err
    project.edit("pipeline.yaml", "metric: acuracy", "trials: 3")
    project.write("models/tune.yaml", SPEC.split("search_space:")[0])
    result = tessera("run", cwd=project.root)
    assert result.code == 2
    assert "a model spec with a `search_space` to tune (models/tune.yaml has none)" in result.err
    project.write("models/tune.yaml", SPEC)
    project.edit("pipeline.yaml", "trials: 3", "sampler: grid, validation: 0.2, cv: 4")
    result = tessera("run", cwd=project.root)
    assert result.code == 2 and "either `cv` or `validation`, not both" in result.err
    assert not (project.root / ".tessera" / "optuna.db").exists()


# -- in a pipeline --------------------------------------------------------------------------------


def test_tune_in_a_pipeline_logs_the_study_to_mlflow(
    project: Project, cancer: pd.DataFrame, tessera
) -> None:
    tune_project(project, cancer, "trials: 6, cv: 3, metric: roc_auc")
    project.write("pipeline.yaml", project.read("pipeline.yaml") + EVALUATE)
    result = tessera("run", "--json", cwd=project.root)
    assert result.code == 0, result.err + result.out
    assert set(statuses(result).values()) == {"done"}

    table = model_of(project.root, result)
    info = model_info(table)
    pipeline = load_model(table)
    assert info.estimator == "sklearn.ensemble.RandomForestClassifier" and info.train_rows == 455
    assert pipeline.predict(cancer[info.features].head()).shape == (5,)

    study = study_of(project.root)
    assert study.study_name.startswith("test.model.")
    assert len(study.trials) == 6 and set(states(study)) <= {"COMPLETE", "PRUNED"}
    best = study.best_trial
    assert {k: info.params[k] for k in best.params} == best.params  # the best, refit
    log = stage_log(project.root)
    assert "0 of 6 trials there already; running 6 with 1 worker(s)" in log
    assert f"best roc_auc {best.value:.4f} (trial {best.number})" in log

    client, parent, children = tune_runs(project.root)
    assert parent.info.run_name == "model" and parent.info.status == "FINISHED"
    assert len(children) == 6
    assert {c.data.tags["tessera.kind"] for c in children} == {"trial"}
    by_number = {int(c.data.tags["tessera.trial"]): c for c in children}
    first = by_number[0]
    assert set(first.data.params) == {"n_estimators", "max_depth"}
    assert first.data.tags["tessera.trial_state"] in {"complete", "pruned"}
    history = client.get_metric_history(first.info.run_id, "roc_auc")
    assert [m.step for m in history] == list(range(len(history))) and len(history) >= 1
    winner = by_number[best.number].data
    assert winner.metrics["cv_roc_auc"] == pytest.approx(best.value)

    data = parent.data
    assert data.metrics["best_cv_roc_auc"] == pytest.approx(best.value)
    assert data.metrics["n_trials_complete"] + data.metrics["n_trials_pruned"] == 6
    assert data.metrics["cv_roc_auc"] == pytest.approx(best.value)
    assert "test_roc_auc" in data.metrics  # `evaluate` found the tune run by the model version
    assert data.params["best_n_estimators"] == str(best.params["n_estimators"])
    assert data.tags["tessera.stage"] == "model" and "tessera.model_version" in data.tags
    artifacts = {a.path for a in client.list_artifacts(parent.info.run_id, "study")}
    assert {"study/best_params.json", "study/trials.csv"} <= artifacts
    import json

    local = client.download_artifacts(parent.info.run_id, "study", str(project.root / "dl"))
    best_params = json.loads((Path(local) / "best_params.json").read_text())
    assert best_params["best_trial"] == best.number and best_params["direction"] == "maximize"
    assert best_params["metric"] == "roc_auc" and best_params["params"] == best.params
    trials = pd.read_csv(Path(local) / "trials.csv")
    assert trials["number"].tolist() == list(range(6))
    assert {"state", "value", "duration_s", "param_n_estimators", "param_max_depth"} <= set(
        trials.columns
    )
    models = client.search_logged_models(
        [parent.info.experiment_id], filter_string=f"source_run_id = '{parent.info.run_id}'"
    )
    assert len(models) == 1


def test_more_trials_resume_the_study(project: Project, cancer: pd.DataFrame, tessera) -> None:
    tune_project(project, cancer, "trials: 4, track: false")
    assert tessera("run", cwd=project.root).code == 0
    before = study_of(project.root)
    first_params = [t.params for t in before.trials]
    assert len(before.trials) == 4

    project.edit("pipeline.yaml", "trials: 4", "trials: 7")
    result = tessera("run", "--json", cwd=project.root)
    assert result.code == 0, result.err
    assert statuses(result)["model"] == "done"  # the config changed: the stage runs again
    after = study_of(project.root)  # ... on the same study
    assert after.study_name == before.study_name and len(after.trials) == 7
    assert [t.params for t in after.trials[:4]] == first_params
    log = stage_log(project.root)
    assert "4 of 7 trials there already; running 3" in log and "(4 resumed)" in log

    forced = tessera("run", "model", "--force", "--json", cwd=project.root)
    assert forced.code == 0 and len(study_of(project.root).trials) == 7  # nothing left to run
    assert "7 of 7 trials there already; running 0" in stage_log(project.root)

    project.edit("models/tune.yaml", "seed: 7", "seed: 8")  # another spec: another study
    assert tessera("run", cwd=project.root).code == 0
    import optuna

    url = f"sqlite:///{project.root / '.tessera' / 'optuna.db'}"
    assert len(optuna.study.get_all_study_names(url)) == 2


def test_an_interrupted_study_continues(project: Project, cancer: pd.DataFrame, tessera) -> None:
    tune_project(project, cancer, "trials: 3, track: false")
    assert tessera("run", cwd=project.root).code == 0
    study = study_of(project.root)
    # A worker killed in the middle of a trial leaves it RUNNING in the storage.
    killed = study.ask()
    killed.suggest_int("n_estimators", 5, 20)
    project.edit("pipeline.yaml", "trials: 3", "trials: 5")
    result = tessera("run", "--json", cwd=project.root)
    assert result.code == 0, result.err
    study = study_of(project.root)
    assert states(study) == ["COMPLETE"] * 3 + ["FAIL"] + ["COMPLETE"] * 2
    assert study.trials[3].user_attrs["error"].startswith("interrupted")
    assert "1 interrupted trial(s) marked failed" in stage_log(project.root)


def test_hopeless_trials_are_pruned(project: Project, cancer: pd.DataFrame, tessera) -> None:
    tune_project(project, cancer, "trials: 14, metric: accuracy, track: false", LOGISTIC)
    result = tessera("run", cwd=project.root)
    assert result.code == 0, result.err
    study = study_of(project.root)
    pruned = [t for t in study.trials if t.state.name == "PRUNED"]
    assert pruned, states(study)
    assert all(len(t.intermediate_values) < 3 for t in pruned)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    assert all(len(t.intermediate_values) == 3 for t in complete)
    assert "pruned after fold" in stage_log(project.root)


def test_boosting_trials_are_pruned_while_they_train(
    project: Project, cancer: pd.DataFrame, tessera
) -> None:
    from tessera.training.tune import BOOSTING_STEPS

    tune_project(project, cancer, "trials: 14, track: false", BOOSTING)
    result = tessera("run", cwd=project.root)
    assert result.code == 0, result.err
    study = study_of(project.root)
    complete = [t for t in study.trials if t.state.name == "COMPLETE"]
    # Ten values while the first fold trains (log loss falling), then the folds' running means.
    steps = sorted(complete[0].intermediate_values)
    assert steps == [*range(BOOSTING_STEPS), BOOSTING_STEPS, BOOSTING_STEPS + 1, BOOSTING_STEPS + 2]
    first = [complete[0].intermediate_values[i] for i in range(BOOSTING_STEPS)]
    assert first[-1] <= first[0]
    mid_training = [
        t
        for t in study.trials
        if t.state.name == "PRUNED" and max(t.intermediate_values) < BOOSTING_STEPS
    ]
    assert mid_training, states(study)
    assert "boosting iterations of fold 1" in stage_log(project.root)


def test_the_fold_callback_reports_and_prunes_before_the_last_fold() -> None:
    import optuna

    class Trial:
        def __init__(self, prune: bool) -> None:
            self.reported: list[tuple[float, int]] = []
            self.prune = prune

        def report(self, value: float, step: int) -> None:
            self.reported.append((value, step))

        def should_prune(self) -> bool:
            return self.prune

    keep = Trial(prune=False)
    callback = fold_callback(keep, 2, prune=True)  # type: ignore[arg-type]
    for step in range(3):
        callback(step, 0.5 + step)
    assert keep.reported == [(0.5, 0), (1.5, 1), (2.5, 2)]
    stop = Trial(prune=True)
    with pytest.raises(optuna.TrialPruned):
        fold_callback(stop, 2, prune=True)(0, 0.1)  # type: ignore[arg-type]
    fold_callback(stop, 2, prune=True)(2, 0.1)  # type: ignore[arg-type]  (last: never pruned)
    fold_callback(stop, 2, prune=False)(0, 0.1)  # type: ignore[arg-type]  (pruner: none)


@pytest.mark.slow
def test_trials_in_worker_processes_share_one_study(
    project: Project, cancer: pd.DataFrame, tessera
) -> None:
    tune_project(project, cancer, "trials: 6, n_jobs: 2, executor: processes, track: false")
    result = tessera("run", cwd=project.root)
    assert result.code == 0, result.err + result.out
    study = study_of(project.root)
    assert len(study.trials) == 6 and set(states(study)) <= {"COMPLETE", "PRUNED"}
    assert {t.user_attrs["worker"] for t in study.trials} <= {0, 1}
    assert "running 6 with 2 worker(s)" in stage_log(project.root)


@pytest.mark.slow
def test_a_worker_process_logs_its_trials_as_nested_runs(
    tmp_path: Path, cancer: pd.DataFrame
) -> None:
    """What a spawned worker does, without the race of a pipeline run (where the stage's own
    process, worker 0, may finish quick trials before the other worker has started)."""
    import io
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    import optuna

    from tessera.tracking import Tracker
    from tessera.training import tune

    url = f"sqlite:///{tmp_path / 'optuna.db'}"
    optuna.create_study(study_name="s", storage=url, direction="maximize")
    tracker = Tracker(f"sqlite:///{tmp_path / 'mlflow.db'}", "exp", tmp_path / "mlartifacts")
    parent = tracker.start_run("model")
    job = tune.TrialJob(
        root=str(tmp_path),
        spec_text=SPEC,
        spec_display="models/tune.yaml",
        storage_url=url,
        study="s",
        metric="roc_auc",
        names=("roc_auc", "accuracy"),
        folds=3,
        validation=None,
        sampler="tpe",
        prune=True,
        target=3,
        first=0,
        fail_budget=3,
        deadline=None,
        tracking=tune.TrackingInfo(
            uri=tracker.uri,
            experiment="exp",
            artifact_root=str(tmp_path / "mlartifacts"),
            parent_run=parent,
            tags={"tessera.stage": "model"},
        ),
    )
    buffer = io.BytesIO()
    cancer.to_parquet(buffer)
    spawn = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(
        1, mp_context=spawn, initializer=tune.init_worker, initargs=(spawn.Lock(),)
    ) as pool:
        result = pool.submit(tune.trial_worker, job, buffer.getvalue(), 1, "process").result()
    assert result["ran"] == 3
    study = optuna.load_study(study_name="s", storage=url)
    assert [t.user_attrs["worker"] for t in study.trials] == [1, 1, 1]
    children = tracker.client.search_runs(
        [tracker.experiment_id], filter_string=f"tags.`mlflow.parentRunId` = '{parent}'"
    )
    assert sorted(c.data.tags["tessera.trial"] for c in children) == ["0", "1", "2"]
    assert {c.data.tags["tessera.stage"] for c in children} == {"model"}
    assert all(c.info.status == "FINISHED" for c in children)


@pytest.mark.slow
def test_trials_on_a_dask_local_cluster(project: Project, cancer: pd.DataFrame, tessera) -> None:
    tune_project(project, cancer, "trials: 6, n_jobs: 2, executor: dask, track: false")
    result = tessera("run", cwd=project.root)
    assert result.code == 0, result.err + result.out
    study = study_of(project.root)
    assert len(study.trials) == 6 and set(states(study)) <= {"COMPLETE", "PRUNED"}


@pytest.mark.slow
def test_tune_stages_running_on_dask_workers(
    project: Project, cancer: pd.DataFrame, tessera
) -> None:
    """With ``--executor dask`` the stage itself runs on a Dask worker: `executor: dask` trials
    go to that cluster, and `processes` (a Dask worker cannot start processes) become threads.
    The two stages also create the project's new Optuna database at the same time."""
    tune_project(project, cancer, "trials: 4, n_jobs: 2, executor: dask, track: false")
    project.write(
        "pipeline.yaml",
        project.read("pipeline.yaml") + "  other: {uses: tune, inputs: [split.train], "
        "with: {spec: models/tune.yaml, trials: 3, n_jobs: 2, track: false}}\n",
    )
    result = tessera("run", "--executor", "dask", "-j", "2", cwd=project.root)
    assert result.code == 0, result.err + result.out
    import optuna

    url = f"sqlite:///{project.root / '.tessera' / 'optuna.db'}"
    sizes = {
        name.split(".")[1]: len(optuna.load_study(study_name=name, storage=url).trials)
        for name in optuna.study.get_all_study_names(url)
    }
    assert sizes == {"model": 4, "other": 3}
    assert "running 2 workers as threads" in stage_log(project.root, "other")


# -- called directly ------------------------------------------------------------------------------


def test_outside_a_pipeline_the_study_is_in_memory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cancer: pd.DataFrame, capsys
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text(
        SPEC.replace(
            "n_estimators: {type: int, low: 5, high: 20}",
            "criterion: {type: categorical, choices: [gini, entropy]}",
        )
    )
    table = tune_model(cancer, Tune(spec="m.yaml", sampler="grid", trials=50, validation=0.3))
    out = capsys.readouterr().out
    assert "0 of 6 trials there already" in out  # the grid has 2 x 3 points
    assert "6 complete, 0 pruned, 0 failed" in out
    assert model_info(table).params["criterion"] in {"gini", "entropy"}
    assert not list(tmp_path.glob("*.db"))
    again = tune_model(cancer, Tune(spec="m.yaml", sampler="grid", trials=50, validation=0.3))
    assert again.equals(table)  # seeded: the same trials, the same model


def test_when_every_trial_fails_the_first_error_is_raised(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, cancer: pd.DataFrame
) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text(
        SPEC.replace("{type: int, low: 5, high: 20}", "{type: int, low: -5, high: -1}")
    )
    with pytest.raises(ValueError, match=r"every trial failed; the first: .*n_estimators"):
        tune_model(cancer, Tune(spec="m.yaml", trials=3))
