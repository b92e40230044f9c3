"""Fixtures of the tracking tests: training projects on disk, an in-process CLI runner that
module-scoped fixtures can use, and a real ``mlflow server`` on loopback."""

from __future__ import annotations

import contextlib
import io
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import pytest

from support import Project, Result

#: The default model spec: a small random forest on the breast-cancer table.
SPEC = """
task: classification
target: target
estimator:
  class: sklearn.ensemble.RandomForestClassifier
  params: {n_estimators: 20, max_depth: 4}
preprocessing:
  measurements: {type: numeric, impute: median, scale: none}
metrics: [roc_auc, accuracy, f1]
seed: 3
"""

#: The stages of the clinic project, by name (``make_clinic(stages=...)`` picks some).
STAGES = {
    "raw": "{uses: read_table, with: {path: data/cancer.csv}}",
    "split": "{uses: train_test_split, inputs: [raw], "
    "with: {strategy: stratified, target: target, test_size: 0.25}}",
    "model": "{uses: train, inputs: [split.train], with: {spec: models/cancer.yaml, cv: 3}}",
    "scores": "{uses: evaluate, inputs: [model, split.test], with: {bootstrap: {samples: 50}}}",
    "registered": "{uses: register, inputs: [model, split.test], "
    "with: {name: cancer, gate: {min: {roc_auc: 0.8}}}}",
}

#: The MLflow state a tracked stage leaves in the process (set_tracking_uri exports both).
_MLFLOW_ENV = ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI")


def clinic(
    root: Path,
    *,
    tracking: str | None = None,
    name: str = "clinic",
    stages: Sequence[str] = tuple(STAGES),
    spec: str = SPEC,
) -> Project:
    """A project on the breast-cancer table (``data/cancer.csv``) with some of :data:`STAGES`
    and a model spec (``models/cancer.yaml``); ``tracking`` goes to ``stores.tracking``."""
    from tessera.examples.breast_cancer_data import write_table

    p = Project(root)
    config = f"name: {name}\n"
    if tracking is not None:
        config += f"stores: {{tracking: '{tracking}'}}\n"
    p.write("tessera.yaml", config)
    p.write("pipeline.yaml", "stages:\n" + "".join(f"  {s}: {STAGES[s]}\n" for s in stages))
    p.write("models/cancer.yaml", spec)
    p.write(".gitignore", ".tessera/\n")
    write_table(root / "data" / "cancer.csv")
    return p


@pytest.fixture(scope="session")
def make_clinic() -> Callable[..., Project]:
    """``make_clinic(root, tracking=..., name=..., stages=[...], spec=...)``: see :func:`clinic`."""
    return clinic


def cli(*args: str, cwd: Path) -> Result:
    """Run the ``tessera`` CLI in this process, like the ``tessera`` fixture, but usable from
    module-scoped fixtures (no function-scoped monkeypatch or capsys)."""
    from tessera.cli.main import main

    out, err = io.StringIO(), io.StringIO()
    code = 0
    with (
        pytest.MonkeyPatch.context() as mp,
        contextlib.redirect_stdout(out),
        contextlib.redirect_stderr(err),
    ):
        mp.chdir(cwd)
        mp.setattr(sys, "argv", ["tessera", *args])
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
    return Result(code, out.getvalue(), err.getvalue())


@pytest.fixture(scope="session")
def tessera_cli() -> Callable[..., Result]:
    """``tessera_cli("run", cwd=path)``: the in-process CLI for module-scoped fixtures."""
    return cli


@contextlib.contextmanager
def mlflow_state_restored() -> Iterator[None]:
    """Undo what tracking leaves behind in the process: MLflow's global tracking and registry
    URIs (``Tracker`` sets them) and the environment variables ``mlflow.set_tracking_uri``
    exports for subprocesses."""
    saved_env = {name: os.environ.get(name) for name in _MLFLOW_ENV}
    try:
        yield
    finally:
        for name, value in saved_env.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        if "mlflow" in sys.modules:
            from mlflow.tracking._model_registry import utils as registry_utils
            from mlflow.tracking._tracking_service import utils as tracking_utils

            tracking_utils._tracking_uri = None
            registry_utils._registry_uri = None


@pytest.fixture(scope="module", autouse=True)
def _mlflow_state_per_module() -> Iterator[None]:
    with mlflow_state_restored():
        yield


@pytest.fixture(autouse=True)
def _mlflow_state_per_test() -> Iterator[None]:
    with mlflow_state_restored():
        yield


def free_port() -> int:
    """A loopback port nothing listens on (now)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def closed_port() -> int:
    return free_port()


@dataclass
class MlflowServer:
    """A running ``mlflow server``: its URL and where it keeps its data."""

    url: str
    root: Path

    @property
    def artifacts(self) -> Path:
        return self.root / "artifacts"


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """Terminate the server's process group (the CLI and its uvicorn worker); kill what is
    left of it after 10 s."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(10)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)  # stragglers; the group is the server's own
    proc.wait(5)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[MlflowServer]:
    """A real MLflow tracking server (SQLite backend, proxied artifacts) on a free loopback
    port, for the whole module; its process group is terminated at the end."""
    root = tmp_path_factory.mktemp("mlflow-server")
    port = free_port()
    mlflow = Path(sys.executable).parent / "mlflow"
    command = [
        str(mlflow),
        "server",
        "--backend-store-uri",
        f"sqlite:///{root / 'server.db'}",
        "--artifacts-destination",
        str(root / "artifacts"),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
    ]
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    # No job runner: its half a dozen Huey consumer processes double the start-up time and
    # slow the shutdown, for features (online scoring, trace archival) no test here uses.
    env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
    log = (root / "server.log").open("wb")
    proc = subprocess.Popen(
        command, cwd=root, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if proc.poll() is not None:
                pytest.fail(
                    f"mlflow server exited with {proc.returncode}:\n"
                    + (root / "server.log").read_text(errors="replace")[-4000:]
                )
            try:
                with urllib.request.urlopen(f"{url}/health", timeout=2) as answer:
                    if answer.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(
                    "mlflow server did not answer /health within 60 s:\n"
                    + (root / "server.log").read_text(errors="replace")[-4000:]
                )
            time.sleep(0.25)
        yield MlflowServer(url, root)
    finally:
        _stop(proc)
        log.close()
