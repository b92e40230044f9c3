"""Test support: the standard test project and helpers (fixtures are in conftest.py)."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPS = '''
import pandas as pd
from pydantic import BaseModel, ConfigDict

from tessera import InputPath, transformation
from transforms._helpers import scale


class Load(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: InputPath


@transformation
def load(cfg: Load) -> pd.DataFrame:
    """Read a CSV file."""
    return pd.read_csv(cfg.path)


class Affine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str
    factor: float = 2.0
    shift: float = 0.0


@transformation
def affine(df: pd.DataFrame, cfg: Affine) -> pd.DataFrame:
    """Scale and shift one column."""
    out = df.copy()
    out[cfg.column] = scale(out[cfg.column], cfg.factor) + cfg.shift
    return out


@transformation
def untouched(df: pd.DataFrame) -> pd.DataFrame:
    """Return the input unchanged."""
    return df


@transformation(outputs=("left", "right"))
def halves(df: pd.DataFrame) -> dict:
    """Split rows into two halves."""
    n = len(df) // 2
    return {"left": df.iloc[:n], "right": df.iloc[n:]}


@transformation
def stack(*frames: pd.DataFrame) -> pd.DataFrame:
    """Concatenate tables."""
    return pd.concat(frames, ignore_index=True)


@transformation
def explode(df: pd.DataFrame) -> pd.DataFrame:
    """Always fails."""
    raise RuntimeError("boom: the data is wrong")
'''

HELPERS = """
def scale(series, factor):
    return series * factor


def unrelated():
    return 1
"""

PIPELINE = """
stages:
  raw:     {uses: load, with: {path: data/raw.csv}}
  a:       {uses: affine, inputs: [raw], with: {column: x}}
  b:       {uses: affine, inputs: [a], with: {column: y, factor: 3}}
  split:   {uses: halves, inputs: [b]}
  left:    {uses: affine, inputs: [split.left], with: {column: x, shift: 1}}
  right:   {uses: untouched, inputs: [split.right]}
  joined:  {uses: stack, inputs: [left, right]}
"""


@dataclass
class Project:
    """A project on disk, with helpers to edit it."""

    root: Path

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text()

    def edit(self, rel: str, old: str, new: str) -> None:
        text = self.read(rel)
        assert old in text, f"{old!r} not in {rel}"
        (self.root / rel).write_text(text.replace(old, new))


def write_raw(root: Path, rows: int = 200) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    (root / "data").mkdir(exist_ok=True)
    pd.DataFrame({"x": rng.normal(size=rows), "y": rng.integers(0, 9, rows)}).to_csv(
        root / "data" / "raw.csv", index=False
    )


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def statuses(result: Result) -> dict[str, str]:
    """Stage -> status from ``tessera run --json`` output."""
    return {s["stage"]: s["status"] for s in result.json()["stages"]}


#: A small model spec of the breast-cancer table, for tests that need a registered model.
CANCER_SPEC = """
task: classification
target: target
features: {exclude: [worst_*]}
estimator:
  class: sklearn.ensemble.RandomForestClassifier
  params: {n_estimators: 20, max_depth: 4}
preprocessing:
  numbers: {type: numeric, impute: median, scale: none}
metrics: [roc_auc, accuracy]
seed: 7
"""


# --- serving -----------------------------------------------------------------------------------

CANCER_PIPELINE = """
stages:
  raw:    {uses: read_table, with: {path: data/cancer.csv}}
  split:  {uses: train_test_split, inputs: [raw], with: {strategy: stratified, target: target}}
  model:  {uses: train, inputs: [split.train], with: {spec: models/cancer.yaml}}
  registered:
    uses: register
    inputs: [model, split.test]
    with:
      name: cancer
      gate: {min: {roc_auc: 0.8}}
      bootstrap: {samples: 0}
"""


def cancer_project(root: Path, versions: int = 1) -> Project:
    """A project whose registry holds ``versions`` versions of the model ``cancer``: version 1
    is the champion and, with two or more, the last is the challenger."""
    import subprocess
    import sys

    from tessera.examples.breast_cancer_data import load_table

    project = Project(root)
    project.write("tessera.yaml", f"name: {root.name}\n")
    project.write("pipeline.yaml", CANCER_PIPELINE)
    (project.root / "data").mkdir()
    load_table().to_csv(project.root / "data" / "cancer.csv", index=False)
    tessera = str(Path(sys.executable).parent / "tessera")
    for version in range(1, versions + 1):
        spec = CANCER_SPEC.replace("max_depth: 4", f"max_depth: {3 + version}")
        project.write("models/cancer.yaml", spec)
        run = subprocess.run([tessera, "run"], cwd=root, capture_output=True, text=True)
        assert run.returncode == 0, run.stdout + run.stderr
    if versions > 1:
        from tessera.registry.models import project_registry

        registry = project_registry(root)
        registry.set_alias("cancer", "champion", "1")
        registry.set_alias("cancer", "challenger", str(versions))
    return project


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ServerThread:
    """An ASGI app served by uvicorn in a thread on a free loopback port, spoken to with
    requests (httpx, which Starlette's TestClient needs, is not a dependency)."""

    def __init__(self, app: Any) -> None:
        import threading

        import uvicorn

        port = free_port()
        self.url = f"http://127.0.0.1:{port}"
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.app = app

    def __enter__(self) -> ServerThread:
        import time

        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(30)

    def get(self, path: str, **kwargs: Any) -> Any:
        import requests

        return requests.get(self.url + path, timeout=10, **kwargs)

    def post(self, path: str, **kwargs: Any) -> Any:
        import requests

        return requests.post(self.url + path, timeout=10, **kwargs)

    def wait_ready(self, timeout: float = 60) -> None:
        wait_ready(self.get, timeout)


def serving_app(root: Path, **overrides: Any) -> ServerThread:
    """``tessera serve``'s app for the project at ``root`` in a thread, with fast ticks, reloads
    and log flushes, and the admin API open to loopback; ``overrides`` merge into sections."""
    from tessera.serving.app import create_app
    from tessera.serving.config import ServingConfig

    config: dict[str, Any] = {
        "models": [{"name": "cancer"}],
        "reload_seconds": 0.3,
        "rollout": {"tick_seconds": 0.2},
        "prediction_log": {"flush_seconds": 0.2},
        "admin": {"allow_localhost": True},
    }
    for key, value in overrides.items():
        if isinstance(value, dict) and isinstance(config.get(key), dict):
            config[key] = {**config[key], **value}
        else:
            config[key] = value
    return ServerThread(create_app(root, ServingConfig.model_validate(config)))


def until(check: Any, timeout: float = 30, what: str = "") -> Any:
    """Poll ``check()`` until it returns something true, and return that."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.05)
    raise AssertionError(f"timed out waiting for {what or check}")


def wait_ready(get: Any, timeout: float = 60) -> None:
    """Poll ``/ready`` until it answers 200."""
    import time

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if get("/ready").status_code == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("the server never became ready")


def required_tool(name: str, install: str) -> str:
    """The path of an external program a test needs; the test is skipped when it is missing,
    unless TESSERA_REQUIRE_SERVICES=1 (as in CI), which makes it fail instead."""
    import os
    import shutil

    import pytest

    path = shutil.which(name)
    if path is None:
        message = f"`{name}` is not installed ({install})"
        if os.environ.get("TESSERA_REQUIRE_SERVICES") == "1":
            pytest.fail(f"{message}, but TESSERA_REQUIRE_SERVICES=1 requires it")
        pytest.skip(message)
    return path
