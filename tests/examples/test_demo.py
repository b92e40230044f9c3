"""``tessera demo`` end to end: the churn pipeline, then the champion served, customers and
feedback sent, a challenger trained and rolled out by a canary to promotion; run again on the
same directory. Plus the demo's parts on their own: the server process, the customers, the
files added to older demo projects."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from tessera.cli.demo_serving import (
    SERVING_FILES,
    Customers,
    DemoError,
    DemoServer,
    add_missing_files,
)
from tessera.examples import scaffold

from support import cancer_project

TESSERA = str(Path(sys.executable).parent / "tessera")
TEMPLATE = Path(__file__).resolve().parents[2] / "src/tessera/examples/templates/churn"


def tessera(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [TESSERA, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=900
    )


def in_order(text: str, *expected: str) -> None:
    """Each of ``expected`` (``...`` stands for anything) appears in ``text``, in order."""
    position = 0
    for line in expected:
        pattern = ".*?".join(re.escape(part) for part in line.split("..."))
        found = re.compile(pattern).search(text, position)
        assert found, f"expected {line!r} (in order) in:\n{text[position:]}"
        position = found.end()


@pytest.fixture(scope="module")
def first_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any]]:
    """``tessera demo --json`` in a new directory."""
    root = tmp_path_factory.mktemp("demo") / "d"
    proc = tessera("demo", "--dir", str(root), "--json", cwd=root.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return root, json.loads(proc.stdout)  # nothing but the JSON on stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_serves_trains_a_challenger_and_promotes_it(
    first_run: tuple[Path, dict[str, Any]],
) -> None:
    from tessera.registry.models import project_registry

    root, data = first_run
    assert data["status"] == "success"
    assert {s["status"] for s in data["stages"]} == {"done"}
    assert data["model"]["version"] == "1"
    serving = data["serving"]

    assert serving["server"]["url"].startswith("http://127.0.0.1:")
    assert serving["server"]["ready_seconds"] > 0
    warm = serving["warm_up"]
    assert warm["versions"] == ["1"]
    assert warm["answers"] == warm["labelled"] > 0  # every answer's label was accepted
    assert warm["correct"] > 0.6 * warm["answers"]

    assert serving["challenger"]["version"] == "2"
    assert serving["challenger"]["ran"] == 3  # model, scores, registered: the rest is cached
    rollout = serving["rollout"]
    actions = [d["action"] for d in rollout["decisions"]]
    assert rollout["state"] == "promoted", json.dumps(rollout["decisions"], indent=1)
    assert actions == ["rollout_start", "rollout_step", "rollout_step", "rollout_promote"]
    last = rollout["decisions"][-1]
    assert last["reason"].startswith("all 3 steps passed")
    assert "accuracy" in last["reason"]  # the quality gate judged the candidate's feedback
    assert last["details"]["quality"]["drop"] is not None
    assert (rollout["champion_version"], rollout["candidate_version"]) == ("1", "2")

    assert serving["champion_after"] == "2"
    registry = project_registry(root)
    assert registry.alias("churn", "champion") == "2"
    assert registry.alias("churn", "challenger") is None  # cleared by the promotion

    traffic = serving["traffic"]
    assert traffic["errors"] == 0
    assert traffic["labelled"] == traffic["requests"] - traffic["refused"]
    assert serving["server"]["exit_code"] == 0
    quality = {(q["version"], q["variant"]): q for q in serving["prediction_log"]["quality"]}
    assert {("1", "champion"), ("2", "candidate"), ("2", "champion")} <= set(quality)
    assert sum(q["labelled"] for q in quality.values()) == traffic["labelled"]
    assert list((root / ".tessera/predictions/predictions/model=churn").glob("date=*/*.parquet"))

    # The printed DuckDB query works, from the project directory.
    query = subprocess.run(
        serving["prediction_log"]["query"], shell=True, cwd=root, capture_output=True, text=True
    )
    assert query.returncode == 0, query.stderr
    assert "candidate" in query.stdout and "champion" in query.stdout


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_demo_runs_again_on_its_directory(first_run: tuple[Path, dict[str, Any]]) -> None:
    """Everything cached; a rollout left running is aborted, the champion goes back to the
    pipeline's model, and the canary promotes the (cached) challenger again."""
    root, _ = first_run
    stale = tessera("rollout", "start", "--candidate", "1", "-m", "left running", cwd=root)
    assert stale.returncode == 0, stale.stderr

    proc = tessera("demo", "--dir", str(root), cwd=root.parent)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "Traceback" not in proc.stdout + proc.stderr
    in_order(
        proc.stdout,
        "Nothing to run: 24 stages up to date.",
        "split.train: 4,000 rows",
        "Model churn version 1 @champion",
        "Serving",
        "Aborted the rollout ... an earlier demo left running.",
        "churn@champion back to version 1, the pipeline's model (an earlier demo had made it "
        "version 2)",
        "tessera serve --port 0: churn version 1 (@champion) on http://127.0.0.1:",
        "150 customers of the test split ... answered by version 1, ... right; their true labels "
        "-> POST /feedback: ... accepted",
        "Challenger",
        "tessera run --env challenger: nothing to run (24 stages cached)",
        "churn version 2 @challenger; the champion stays version 1. On the test split: roc_auc",
        "Canary rollout of version 2 (serving.yaml: 20% -> 50% -> 100%)",
        "0.0 s  start: version 2 answers 20% of the customers",
        "s  step 1/3 (20%) passed: ... candidate requests, errors 0.0% (max 1%), p99 ",
        "s  step 2/3 (50%) passed: ",
        "s  promote: all 3 steps passed; step 3/3 (100%): ... accuracy ... vs champion ",
        "churn@champion -> version 2 (was 1), moved by the server.",
        "Hot reload: the server answers with version 2 as champion",
        "Shutdown",
        "exited with code 0.",
        "In all: ... requests",
        "0 failed",
        "Prediction log: ",
        "version 1 as champion",
        "version 2 as candidate",
        'python -c "import duckdb;',
        "Try next:",
        "rollout status churn",
    )


def test_the_template_has_a_challenger_and_a_demo_sized_canary(tmp_path: Path) -> None:
    from tessera.config import load_pipeline_spec, load_project
    from tessera.config.spec import load_overlay, stage_params
    from tessera.serving.config import load_serving_config

    root = tmp_path / "churn"
    scaffold(root, "churn")
    project = load_project(root)
    pipeline = load_pipeline_spec(project)
    overlay = load_overlay(project, pipeline, "challenger", [])
    model, _, problems = stage_params(project, pipeline, overlay, "model")
    assert problems == []
    assert model["spec"] == "models/churn_challenger.yaml" and model["trials"] < 12
    registered, _, problems = stage_params(project, pipeline, overlay, "registered")
    assert problems == []
    assert registered["name"] == "churn" and registered["promote"] is False

    config = load_serving_config(root)
    assert config is not None and [m.name for m in config.models] == ["churn"]
    canary = config.rollout.canary
    assert (config.rollout.strategy, config.rollout.candidate) == ("canary", "challenger")
    assert [s.traffic for s in canary.steps] == [20, 50, 100]
    assert sum(s.dwell_seconds for s in canary.steps) <= 10
    assert canary.min_feedback <= sum(s.min_requests for s in canary.steps)


def test_missing_serving_files_are_added(tmp_path: Path) -> None:
    root = tmp_path / "old"
    scaffold(root, "churn")
    for name in SERVING_FILES:
        assert (root / name).is_file()
    (root / "serving.yaml").write_text("models: [{name: churn}]\n")  # the user's own
    (root / "envs/challenger.yaml").unlink()
    (root / "models/churn_challenger.yaml").unlink()

    assert add_missing_files(root) == ["envs/challenger.yaml", "models/churn_challenger.yaml"]
    assert (root / "serving.yaml").read_text() == "models: [{name: churn}]\n"
    for name in SERVING_FILES[1:]:
        assert (root / name).read_bytes() == (TEMPLATE / name).read_bytes()
    assert add_missing_files(root) == []


@pytest.mark.slow
def test_a_server_that_cannot_start_is_reported_with_its_log(tmp_path: Path) -> None:
    scaffold(tmp_path / "empty")
    log = tmp_path / "serve.log"
    with DemoServer(tmp_path / "empty", log) as server, pytest.raises(DemoError) as info:
        server.start(timeout=120)
    assert "tessera serve exited with status 2" in str(info.value)
    assert "no model is registered" in str(info.value)  # the tail of its log
    assert log.is_file()


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_customers_predictions_feedback_and_refusals(tmp_path: Path) -> None:
    """The demo's server and customers against a small registered model."""
    project = cancer_project(tmp_path / "cancer")
    rows = pd.read_csv(project.root / "data" / "cancer.csv").head(30)
    features = [c for c in rows.columns if c != "target" and not c.startswith("worst_")]
    rows = rows.astype({features[0]: object})
    rows.loc[rows.index[-1], features[0]] = "abc"  # not a number: refused with a 422

    with DemoServer(project.root, tmp_path / "serve.log") as server:
        assert server.start(timeout=120) > 0
        assert server.banner.startswith("Serving cancer/1 (@champion) on http://127.0.0.1:")
        customers = Customers(server.host, server.port, rows, features, "target")
        answers = customers.send(20, rate=200) + customers.send(10, rate=200)
        customers.close()
        assert server.stop() == 0
    assert len(answers) == 29 and {(a.version, a.variant) for a in answers} == {("1", "champion")}
    assert sum(a.correct for a in answers) >= 25
    assert (customers.requests, customers.refused, customers.errors) == (30, 1, 0)
    assert customers.labelled == 29
    assert "422" in (customers.first_refusal or "")
    assert server.process is not None and server.process.returncode == 0
