"""What pipeline runs log to MLflow, with the embedded store (SQLite in ``.tessera/``)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from support import Project, Result, statuses

LGBM_SPEC = """
task: classification
target: target
estimator:
  class: lightgbm.LGBMClassifier
  params: {n_estimators: 20, num_leaves: 7, verbose: -1}
preprocessing:
  measurements: {type: numeric, impute: median, scale: none}
metrics: [roc_auc, accuracy, f1]
seed: 3
"""

REGRESSION_SPEC = """
task: regression
target: target
estimator:
  class: sklearn.ensemble.RandomForestRegressor
  params: {n_estimators: 20, max_depth: 4}
preprocessing:
  measurements: {type: numeric, impute: median, scale: none}
metrics: [rmse, mae, r2]
seed: 3
"""


def git_commit(root: Path) -> str:
    """Make ``root`` a git repository with everything in one commit; returns its id."""

    config = ["-c", "user.email=t@t", "-c", "user.name=t", "-c", "commit.gpgsign=false"]

    def git(*args: str) -> str:
        done = subprocess.run(
            ["git", *config, *args],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        )
        return done.stdout.strip()

    git("init", "-q")
    git("add", "-A")
    git("commit", "-qm", "init")
    return git("rev-parse", "HEAD")


def run_ids(result: Result) -> tuple[str, dict[str, dict[str, str]]]:
    """The pipeline run id and each stage's output version ids, from ``tessera run --json``."""
    data = result.json()
    return data["run_id"], {s["stage"]: s["outputs"] for s in data["stages"]}


def embedded_uri(root: Path) -> str:
    return f"sqlite:///{(root / '.tessera' / 'mlflow.db').resolve()}"


def client_of(root: Path) -> Any:
    import mlflow

    uri = embedded_uri(root)
    return mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)


def all_runs(client: Any, name: str) -> list[Any]:
    experiment = client.get_experiment_by_name(name)
    return [] if experiment is None else client.search_runs([experiment.experiment_id])


def artifact_paths(client: Any, run_id: str, path: str | None = None) -> set[str]:
    """Every file logged to a run, recursively."""
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def model_table(root: Path, tessera: Callable[..., Result], stage: str = "model") -> Any:
    """The model table of a stage, read back from the store through `tessera data checkout`."""
    import pyarrow.parquet as pq

    out = root.parent / f"{root.name}-{stage}.parquet"  # outside the project's work tree
    done = tessera("data", "checkout", stage, "--out", str(out), "--force", cwd=root)
    assert done.code == 0, done.err
    return pq.read_table(out)


@dataclass
class Tracked:
    """The clinic project after one `tessera run`, and what it reported."""

    project: Project
    commit: str
    result: Result
    run_id: str
    outputs: dict[str, dict[str, str]]

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def client(self) -> Any:
        return client_of(self.root)

    def runs(self) -> list[Any]:
        return all_runs(self.client, "clinic")


@pytest.fixture(scope="module")
def tracked(
    tmp_path_factory: pytest.TempPathFactory,
    make_clinic: Callable[..., Project],
    tessera_cli: Callable[..., Result],
) -> Tracked:
    """The clinic project, in a git repository, after one `tessera run` (shared: it trains)."""
    project = make_clinic(tmp_path_factory.mktemp("tracked") / "clinic")
    commit = git_commit(project.root)
    result = tessera_cli("run", "--json", cwd=project.root)
    assert result.code == 0, result.out + result.err
    assert set(statuses(result).values()) == {"done"}
    run_id, outputs = run_ids(result)
    return Tracked(project, commit, result, run_id, outputs)


def train_run(tracked: Tracked) -> Any:
    runs = tracked.runs()
    assert [r.data.tags["tessera.stage"] for r in runs] == ["model"]
    return runs[0]


def test_one_experiment_named_after_the_project(tracked: Tracked) -> None:
    client = tracked.client
    experiment = client.get_experiment_by_name("clinic")
    assert experiment is not None
    assert experiment.artifact_location == (tracked.root / ".tessera" / "mlartifacts").as_uri()
    assert [e.name for e in client.search_experiments() if e.name != "Default"] == ["clinic"]
    # evaluate and register log into the training run: one run in all, finished
    run = train_run(tracked)
    assert run.info.status == "FINISHED" and run.info.run_name == "model"


def test_the_train_run_has_params_and_metrics(tracked: Tracked) -> None:
    data = train_run(tracked).data
    params = data.params
    assert params["estimator"] == "sklearn.ensemble.RandomForestClassifier"
    assert params["n_estimators"] == "20" and params["max_depth"] == "4"
    assert params["train_rows"] == "426"  # 569 rows, a quarter held out
    assert params["features"] == "30" and params["seed"] == "3"
    m = data.metrics
    for name in ("roc_auc", "accuracy", "f1"):
        assert {f"train_{name}", f"cv_{name}", f"cv_{name}_std", f"test_{name}"} <= set(m)
        assert m[f"test_{name}_ci_low"] <= m[f"test_{name}"] <= m[f"test_{name}_ci_high"]
    assert 0.9 < m["cv_roc_auc"] <= 1 and 0 <= m["cv_roc_auc_std"] < 0.1
    assert 0.9 < m["test_roc_auc"] <= m["train_roc_auc"]


def test_the_train_run_is_tagged_with_its_lineage(
    tracked: Tracked, tessera: Callable[..., Result]
) -> None:
    tags = train_run(tracked).data.tags
    assert tags["tessera.project"] == "clinic"
    assert tags["tessera.pipeline_run"] == tracked.run_id
    assert tags["tessera.stage"] == "model" and tags["tessera.kind"] == "train"
    assert tags["tessera.input.split.train"] == tracked.outputs["split"]["train"]
    assert tags["tessera.model_version"] == tracked.outputs["model"]["out"]
    assert tags["tessera.git_commit"] == tracked.commit
    assert tags["mlflow.source.git.commit"] == tracked.commit
    assert tags["tessera.model_uri"].startswith("models:/")
    # the code hash and stage key are the ones the metadata store recorded for the version
    lineage = tessera("lineage", "model", "--json", cwd=tracked.root)
    assert lineage.code == 0, lineage.err
    walked = lineage.json()
    assert walked["version"] == tracked.outputs["model"]["out"]
    assert tags["tessera.code_hash"] == walked["code_hash"]
    assert walked["commit"] == tracked.commit
    assert len(tags["tessera.stage_key"]) == 32


def test_the_logged_model_is_skops_with_a_signature_and_an_example(
    tracked: Tracked, tessera: Callable[..., Result]
) -> None:
    import mlflow
    from mlflow.models import Model

    from tessera.training import load_model, model_info

    model_uri = train_run(tracked).data.tags["tessera.model_uri"]
    mlflow.set_tracking_uri(embedded_uri(tracked.root))
    local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    sk = mlmodel["flavors"]["sklearn"]
    assert sk["serialization_format"] == "skops" and sk["pickled_model"] == "model.skops"
    assert sk["skops_trusted_types"]  # the reviewed list, recorded with the model
    assert "python_function" in mlmodel["flavors"]

    table = model_table(tracked.root, tessera)
    info = model_info(table)
    described = Model.load(str(local))
    assert described.signature.inputs.input_names() == info.features
    example = described.load_input_example(str(local))
    assert list(example.columns) == info.features and len(example) == 5
    requirements = (local / "requirements.txt").read_text().splitlines()
    assert any(r.startswith("scikit-learn==") for r in requirements)
    assert any(r.startswith("skops==") for r in requirements)
    assert not any(r.startswith("lightgbm") for r in requirements)

    rows = pd.read_csv(tracked.root / "data" / "cancer.csv")[info.features]
    served = mlflow.pyfunc.load_model(model_uri)
    assert (served.predict(rows) == load_model(table).predict(rows)).all()


def test_evaluation_artifacts_and_the_model_card(tracked: Tracked) -> None:
    run = train_run(tracked)
    paths = artifact_paths(tracked.client, run.info.run_id)
    evaluation = {p.removeprefix("evaluation/test/") for p in paths if p.startswith("evaluation/")}
    assert {
        "confusion_matrix.png",
        "roc_curve.png",
        "pr_curve.png",
        "feature_importance.csv",
    } <= evaluation
    assert "residuals.png" not in evaluation
    assert {"model_card/cancer-v1.md", "model_card/cancer-v1.html"} <= paths
    assert "training/feature_importance.csv" in paths
    # the files are in the project's state directory, not in ./mlruns
    from mlflow.utils.file_utils import local_file_uri_to_path

    stored = Path(local_file_uri_to_path(run.info.artifact_uri))
    assert stored.is_relative_to(tracked.root / ".tessera" / "mlartifacts")
    assert (stored / "evaluation" / "test" / "roc_curve.png").is_file()
    assert not (tracked.root / "mlruns").exists()
    card = tracked.client.download_artifacts(run.info.run_id, "model_card/cancer-v1.md")
    text = Path(card).read_text()
    assert "cancer" in text and tracked.outputs["model"]["out"] in text


def test_the_model_is_registered_from_the_train_run(tracked: Tracked) -> None:
    run = train_run(tracked)
    version = tracked.client.get_model_version_by_alias("cancer", "champion")
    assert str(version.version) == "1" and version.run_id == run.info.run_id
    assert version.source == run.data.tags["tessera.model_uri"]
    assert version.tags["tessera.model_version"] == tracked.outputs["model"]["out"]
    assert version.tags["tessera.pipeline_run"] == tracked.run_id
    assert version.tags["tessera.input.split.test"] == tracked.outputs["split"]["test"]
    assert version.tags["tessera.git_commit"] == tracked.commit
    assert len(version.tags["tessera.sha256"]) == 64


def test_a_cached_run_logs_nothing_new(tracked: Tracked, tessera: Callable[..., Result]) -> None:
    client = tracked.client
    before = train_run(tracked)
    files = artifact_paths(client, before.info.run_id)
    again = tessera("run", "--json", cwd=tracked.root)
    assert again.code == 0, again.err
    assert set(statuses(again).values()) == {"cached"}
    after = train_run(tracked)  # still one run
    assert after.info.run_id == before.info.run_id
    assert after.data.metrics == before.data.metrics and after.data.tags == before.data.tags
    assert artifact_paths(client, after.info.run_id) == files
    assert len(client.search_model_versions("name = 'cancer'")) == 1
    experiment = client.get_experiment_by_name("clinic").experiment_id
    assert len(client.search_logged_models([experiment])) == 1


def test_track_false_logs_nothing(
    tmp_path: Path, make_clinic: Callable[..., Project], tessera: Callable[..., Result]
) -> None:
    p = make_clinic(tmp_path / "quiet", stages=["raw", "split", "model", "scores"])
    p.edit("pipeline.yaml", "cv: 3}", "track: false}")
    p.edit("pipeline.yaml", "samples: 50}}", "samples: 0}, track: false}")
    done = tessera("run", "--json", cwd=p.root)
    assert done.code == 0, done.out + done.err
    assert set(statuses(done).values()) == {"done"}
    db = p.root / ".tessera" / "mlflow.db"
    assert not db.exists() or all_runs(client_of(p.root), "clinic") == []
    assert not (p.root / ".tessera" / "mlartifacts").exists()


def test_a_regression_model_logs_residuals(
    tmp_path: Path, make_clinic: Callable[..., Project], tessera: Callable[..., Result]
) -> None:
    from sklearn.datasets import load_diabetes

    p = make_clinic(
        tmp_path / "diabetes", stages=["raw", "split", "model", "scores"], spec=REGRESSION_SPEC
    )
    p.edit("pipeline.yaml", "strategy: stratified", "strategy: random")
    p.edit("pipeline.yaml", ", cv: 3", "")
    load_diabetes(as_frame=True).frame.to_csv(p.root / "data" / "cancer.csv", index=False)
    done = tessera("run", "--json", cwd=p.root)
    assert done.code == 0, done.out + done.err
    client = client_of(p.root)
    [run] = all_runs(client, "clinic")
    assert run.data.params["estimator"] == "sklearn.ensemble.RandomForestRegressor"
    assert {"train_rmse", "test_rmse", "test_rmse_ci_low", "test_r2"} <= set(run.data.metrics)
    paths = artifact_paths(client, run.info.run_id)
    assert "evaluation/test/residuals.png" in paths
    assert "evaluation/test/roc_curve.png" not in paths


def test_a_lightgbm_model_logs_and_registers(
    tmp_path: Path, make_clinic: Callable[..., Project], tessera: Callable[..., Result]
) -> None:
    from tessera.data.metadata import MetadataStore, default_url
    from tessera.registry.models import ModelRegistry
    from tessera.tracking import Tracker
    from tessera.training import load_model, model_info

    p = make_clinic(
        tmp_path / "boosted", stages=["raw", "split", "model", "registered"], spec=LGBM_SPEC
    )
    p.edit("pipeline.yaml", ", cv: 3", "")
    done = tessera("run", "--json", cwd=p.root)
    assert done.code == 0, done.out + done.err
    _, outputs = run_ids(done)
    client = client_of(p.root)
    [run] = all_runs(client, "clinic")
    assert run.data.params["estimator"] == "lightgbm.LGBMClassifier"
    assert run.data.params["n_estimators"] == "20"
    assert "train_roc_auc" in run.data.metrics
    assert run.data.tags["tessera.model_version"] == outputs["model"]["out"]
    state = p.root / ".tessera"
    tracker = Tracker(embedded_uri(p.root), "clinic", state / "mlartifacts")
    model_dir = tracker.download_model(run.data.tags["tessera.model_uri"], tmp_path / "dl")
    requirements = (model_dir / "requirements.txt").read_text().splitlines()
    assert any(r.startswith("lightgbm==") for r in requirements)

    registry = ModelRegistry(tracker, MetadataStore(default_url(state)))
    info, fitted = registry.load("cancer@champion")
    assert info.version == "1" and info.model_version == outputs["model"]["out"]
    table = model_table(p.root, tessera)
    features = model_info(table).features
    rows = pd.read_csv(p.root / "data" / "cancer.csv")[features]
    assert (fitted.predict(rows) == load_model(table).predict(rows)).all()
    assert type(fitted.steps[-1][1]).__name__ == "LGBMClassifier"


def test_mlflow_clients_can_score_categories_and_integers(
    tmp_path: Path, tessera: Callable[..., Result]
) -> None:
    """The logged signature takes what a client has: strings for categorical columns, integers
    for integer columns (the table's own dtypes, categories as strings)."""
    import mlflow
    import numpy as np

    from tessera.tracking import Tracker

    rng = np.random.default_rng(0)
    n = 300
    frame = pd.DataFrame(
        {
            "plan": rng.choice(["basic", "premium"], n),
            "tickets": rng.integers(0, 5, n),
            "usage": rng.normal(size=n),
        }
    )
    frame["left"] = ((frame.plan == "basic") & (frame.tickets > 2)).astype(int)
    p = Project(tmp_path / "typed")
    p.write("tessera.yaml", "name: typed\n")
    (p.root / "data").mkdir()
    frame.to_csv(p.root / "data" / "t.csv", index=False)
    p.write(
        "models/m.yaml",
        "task: classification\ntarget: left\n"
        "estimator: {class: sklearn.tree.DecisionTreeClassifier}\n"
        "preprocessing:\n  cats: {type: categorical}\n  nums: {type: numeric}\n",
    )
    p.write(
        "pipeline.yaml",
        "stages:\n"
        "  raw: {uses: read_table, with: {path: data/t.csv}}\n"
        "  typed: {uses: cast_columns, inputs: [raw], with: {dtypes: {plan: category}}}\n"
        "  model: {uses: train, inputs: [typed], with: {spec: models/m.yaml}}\n",
    )
    assert tessera("run", cwd=p.root).code == 0
    [run] = all_runs(client_of(p.root), "typed")
    tracker = Tracker(embedded_uri(p.root), "typed")
    with tracker.global_uri():
        model = mlflow.pyfunc.load_model(run.data.tags["tessera.model_uri"])
    inputs = {i.name: i.type.name for i in model.metadata.get_input_schema().inputs}
    assert inputs == {"plan": "string", "tickets": "long", "usage": "double"}
    rows = frame.drop(columns="left").head(50)
    assert (model.predict(rows) == frame["left"].head(50)).mean() > 0.9
