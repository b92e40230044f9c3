"""Tracking and the model registry against a real MLflow tracking server (``stores.tracking``).

One ``mlflow server`` (SQLite backend, artifacts proxied by the server) runs for the module; the
clinic project runs once against it and the tests read what it left there.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import yaml

from support import Project, Result, statuses

pytestmark = pytest.mark.slow


@dataclass
class Served:
    """The clinic project after one `tessera run` against the server."""

    project: Project
    url: str
    server_root: Path
    result: Result
    run_id: str
    outputs: dict[str, dict[str, str]]

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def client(self) -> Any:
        import mlflow

        return mlflow.MlflowClient(tracking_uri=self.url, registry_uri=self.url)

    def train_run(self) -> Any:
        client = self.client
        experiment = client.get_experiment_by_name("clinic")
        assert experiment is not None
        runs = client.search_runs([experiment.experiment_id])
        assert [r.data.tags["tessera.stage"] for r in runs] == ["model"]
        return runs[0]


@pytest.fixture(scope="module")
def served(
    tmp_path_factory: pytest.TempPathFactory,
    make_clinic: Callable[..., Project],
    tessera_cli: Callable[..., Result],
    mlflow_server: Any,
) -> Served:
    project = make_clinic(tmp_path_factory.mktemp("served") / "clinic", tracking=mlflow_server.url)
    result = tessera_cli("run", "--json", cwd=project.root)
    assert result.code == 0, result.out + result.err
    assert set(statuses(result).values()) == {"done"}
    data = result.json()
    outputs = {s["stage"]: s["outputs"] for s in data["stages"]}
    return Served(project, mlflow_server.url, mlflow_server.root, result, data["run_id"], outputs)


def artifact_paths(client: Any, run_id: str, path: str | None = None) -> set[str]:
    found: set[str] = set()
    for item in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, item.path) if item.is_dir else {item.path}
    return found


def model_table(root: Path, tessera: Callable[..., Result]) -> Any:
    import pyarrow.parquet as pq

    out = root.parent / f"{root.name}-model.parquet"
    done = tessera("data", "checkout", "model", "--out", str(out), "--force", cwd=root)
    assert done.code == 0, done.err
    return pq.read_table(out)


def test_a_pipeline_run_logs_to_the_server(served: Served) -> None:
    experiment = served.client.get_experiment_by_name("clinic")
    assert experiment.artifact_location.startswith("mlflow-artifacts:/")  # the server decides
    run = served.train_run()
    assert run.info.status == "FINISHED"
    tags = run.data.tags
    assert tags["tessera.pipeline_run"] == served.run_id
    assert tags["tessera.stage"] == "model" and tags["tessera.code_hash"]
    assert tags["tessera.input.split.train"] == served.outputs["split"]["train"]
    assert tags["tessera.model_version"] == served.outputs["model"]["out"]
    assert "tessera.git_commit" not in tags  # not a git repository
    assert run.data.params["estimator"] == "sklearn.ensemble.RandomForestClassifier"
    assert run.data.params["train_rows"] == "426"
    m = run.data.metrics
    assert {"train_roc_auc", "cv_roc_auc", "cv_roc_auc_std", "test_roc_auc"} <= set(m)
    assert m["test_roc_auc_ci_low"] <= m["test_roc_auc"] <= m["test_roc_auc_ci_high"]
    paths = artifact_paths(served.client, run.info.run_id)
    assert {
        "evaluation/test/confusion_matrix.png",
        "evaluation/test/roc_curve.png",
        "evaluation/test/pr_curve.png",
        "evaluation/test/feature_importance.csv",
        "model_card/cancer-v1.md",
        "model_card/cancer-v1.html",
    } <= paths
    # the files went through the server to its artifact destination...
    assert list((served.server_root / "artifacts").rglob("roc_curve.png"))
    assert list((served.server_root / "artifacts").rglob("model.skops"))
    # ...and nothing was tracked locally
    state = served.root / ".tessera"
    assert not (state / "mlflow.db").exists() and not (state / "mlartifacts").exists()
    assert not (served.root / "mlruns").exists() and not (served.root / "mlartifacts").exists()


def test_the_logged_model_downloads_through_the_server(
    served: Served, tmp_path: Path, tessera: Callable[..., Result]
) -> None:
    import mlflow

    from tessera.tracking import Tracker
    from tessera.training import load_model, model_info

    model_uri = served.train_run().data.tags["tessera.model_uri"]
    with Tracker(served.url, "clinic").global_uri():  # models:/ resolves via the global URI
        local = Path(mlflow.artifacts.download_artifacts(model_uri, dst_path=str(tmp_path)))
    mlmodel = yaml.safe_load((local / "MLmodel").read_text())
    assert mlmodel["flavors"]["sklearn"]["serialization_format"] == "skops"
    table = model_table(served.root, tessera)
    info = model_info(table)
    assert mlflow.models.Model.load(str(local)).signature.inputs.input_names() == info.features
    rows = pd.read_csv(served.root / "data" / "cancer.csv")[info.features]
    served_model = mlflow.pyfunc.load_model(str(local))
    assert (served_model.predict(rows) == load_model(table).predict(rows)).all()


def test_the_model_is_registered_on_the_server(
    served: Served, tessera: Callable[..., Result]
) -> None:
    from tessera.data.metadata import MetadataStore, default_url
    from tessera.registry.models import ModelRegistry
    from tessera.tracking import Tracker
    from tessera.training import load_model, model_info

    run = served.train_run()
    version = served.client.get_model_version_by_alias("cancer", "champion")
    assert str(version.version) == "1" and version.run_id == run.info.run_id
    assert version.tags["tessera.model_version"] == served.outputs["model"]["out"]
    assert version.tags["tessera.pipeline_run"] == served.run_id
    assert len(version.tags["tessera.sha256"]) == 64
    registry = ModelRegistry(
        Tracker(served.url, "clinic"), MetadataStore(default_url(served.root / ".tessera"))
    )
    info, fitted = registry.load("cancer@champion")  # downloaded through the server, checked
    assert info.version == "1" and info.aliases == ["champion"]
    table = model_table(served.root, tessera)
    rows = pd.read_csv(served.root / "data" / "cancer.csv")[model_info(table).features]
    assert (fitted.predict(rows) == load_model(table).predict(rows)).all()


def test_the_registry_commands_work_against_the_server(
    served: Served, tessera: Callable[..., Result]
) -> None:
    listed = tessera("models", "list", "--json", cwd=served.root)
    assert listed.code == 0, listed.err
    [row] = [m for m in listed.json()["models"] if m["name"] == "cancer"]
    assert row["versions"] == 1 and row["champion"] == "1" and row["latest"] == "1"

    shown = tessera("models", "show", "cancer@champion", "--json", cwd=served.root)
    assert shown.code == 0, shown.err
    version = shown.json()
    assert version["version"] == "1" and version["aliases"] == ["champion"]
    assert version["run_id"] == served.train_run().info.run_id
    assert version["model_version"] == served.outputs["model"]["out"]
    assert "test_roc_auc" in version["metrics"]  # read from the run on the server
    assert [e["action"] for e in version["events"]] == ["register", "promote"]

    lineage = tessera("lineage", "cancer@champion", "--json", cwd=served.root)
    assert lineage.code == 0, lineage.err
    walked = lineage.json()
    assert walked["model"]["version"] == "1"
    assert walked["lineage"]["version"] == served.outputs["model"]["out"]
    assert walked["lineage"]["stage"] == "model"
    [train] = walked["lineage"]["inputs"]
    assert train["version"] == served.outputs["split"]["train"]


def test_stores_tracking_expands_environment_variables(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_clinic: Callable[..., Project],
    tessera: Callable[..., Result],
    mlflow_server: Any,
) -> None:
    import mlflow

    p = make_clinic(
        tmp_path / "env",
        name="clinic-env",
        tracking="${TESSERA_TEST_TRACKING}",
        stages=["raw", "split", "model"],
    )
    p.edit("pipeline.yaml", ", cv: 3", "")
    unset = tessera("run", "--json", cwd=p.root)
    assert unset.code == 2
    assert "TESSERA_TEST_TRACKING" in unset.json()["error"]

    monkeypatch.setenv("TESSERA_TEST_TRACKING", mlflow_server.url)
    done = tessera("run", "--json", cwd=p.root)
    assert done.code == 0, done.out + done.err
    client = mlflow.MlflowClient(tracking_uri=mlflow_server.url)
    experiment = client.get_experiment_by_name("clinic-env")
    assert experiment is not None
    [run] = client.search_runs([experiment.experiment_id])
    assert run.data.tags["tessera.pipeline_run"] == done.json()["run_id"]
    assert not (p.root / ".tessera" / "mlflow.db").exists()


def test_an_unreachable_tracking_server_fails_the_train_stage(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    make_clinic: Callable[..., Project],
    tessera: Callable[..., Result],
    closed_port: int,
) -> None:
    # MLflow retries a refused connection 7 times with exponential backoff by default
    # (minutes); a test does not wait for that.
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_TIMEOUT", "5")
    url = f"http://127.0.0.1:{closed_port}"
    p = make_clinic(tmp_path / "offline", tracking=url)
    p.edit("pipeline.yaml", ", cv: 3", "")
    started = time.monotonic()
    failed = tessera("run", "--json", cwd=p.root)
    assert time.monotonic() - started < 60
    assert failed.code == 1, failed.out + failed.err
    assert statuses(failed) == {
        "raw": "done",
        "split": "done",
        "model": "failed",
        "scores": "skipped",
        "registered": "skipped",
    }
    [failure] = failed.json()["failures"]
    assert failure["stage"] == "model"
    assert url in failure["error"] and "Connection refused" in failure["error"]
    assert not (p.root / ".tessera" / "mlflow.db").exists()


def test_registering_a_logged_model_on_a_server(served: Served) -> None:
    from tessera.data.metadata import MetadataStore, default_url
    from tessera.registry.models import ModelRegistry
    from tessera.tracking import Tracker

    run = served.train_run()
    registry = ModelRegistry(
        Tracker(served.url, "clinic"), MetadataStore(default_url(served.root / ".tessera"))
    )
    version, created = registry.register(
        "cancer-direct",
        run_id=run.info.run_id,
        model_uri=run.data.tags["tessera.model_uri"],
        model_version=served.outputs["model"]["out"],
    )
    assert created and version.version == "1"
