"""Model bundles: layout, hashes, pinned requirements, Dockerfile checks, and the bundle run for
real in a fresh virtual environment holding only its ``requirements.txt`` (no Tessera, no
MLflow): batch predictions and the HTTP server must match the in-process model exactly.

Docker cannot build images on the machines these tests run on, so the Dockerfile is only
checked statically (:func:`check_dockerfile`), never built.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import re
import shutil
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import yaml

from tessera.registry.package import check_dockerfile, write_bundle

ROOT = Path(__file__).resolve().parents[2]
BASE = {"scikit-learn", "skops", "numpy", "pandas", "scipy", "joblib", "threadpoolctl"}
FEATURES = ["x", "size", "color"]
BASE_IMAGE = f"python:{sys.version_info[0]}.{sys.version_info[1]}-slim"


@dataclass
class Case:
    """A fitted pipeline, its MLflow directory, its bundle and rows to score."""

    kind: str
    pipeline: Any
    model_dir: Path
    bundle: Path
    rows: pd.DataFrame
    trusted: list[str]


def table(rows: int, seed: int) -> tuple[pd.DataFrame, np.ndarray]:
    """A numeric column with gaps, another numeric and a categorical one; a binary target."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    size = rng.normal(10, 3, size=rows)
    color = rng.choice(["red", "green", "blue"], size=rows)
    y = (x + (color == "red") * 1.5 + rng.normal(scale=0.5, size=rows) > 0.7).astype(int)
    x[rng.random(rows) < 0.1] = np.nan
    return pd.DataFrame({"x": x, "size": size, "color": color}), y


def fit(kind: str) -> Any:
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline, make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    if kind == "lightgbm":
        from lightgbm import LGBMClassifier

        estimator: Any = LGBMClassifier(n_estimators=8, num_leaves=7, verbose=-1, random_state=0)
    else:
        estimator = LogisticRegression()
    numeric = make_pipeline(SimpleImputer(strategy="median"), StandardScaler())
    pre = ColumnTransformer(
        [
            ("num", numeric, ["x", "size"]),
            ("cat", OneHotEncoder(handle_unknown="ignore"), ["color"]),
        ]
    )
    frame, y = table(300, seed=0)
    return Pipeline([("pre", pre), ("est", estimator)]).fit(frame, y)


def manifest(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "version": 3,
        "aliases": ["champion"],
        "task": "classification",
        "target": "churned",
        "classes": [0, 1],
        "features": FEATURES,
        "metrics": {"accuracy": 0.9123, "roc_auc": 0.95},
        "data_versions": {"raw": "v-1a2b"},
        "git_commit": "0123abcd",
    }


@pytest.fixture(scope="module", params=["logistic", "lightgbm"])
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Case:
    import mlflow.sklearn
    import skops.io as sio
    from mlflow.models import infer_signature

    kind = request.param
    pipeline = fit(kind)
    trusted = sio.get_untrusted_types(data=sio.dumps(pipeline))
    frame, _ = table(40, seed=1)
    frame.loc[1, "color"] = "purple"  # a category unseen in training
    frame.loc[2, "color"] = None
    root = tmp_path_factory.mktemp(kind)
    model_dir = root / "mlflow-model"
    mlflow.sklearn.save_model(
        pipeline,
        str(model_dir),
        serialization_format="skops",
        skops_trusted_types=trusted,
        signature=infer_signature(frame, pipeline.predict(frame)),
        input_example=frame.head(3),
        pip_requirements=["scikit-learn", "skops"],
    )
    bundle = write_bundle(
        model_dir,
        root / "bundle",
        name=f"churn-{kind}",
        version="3",
        manifest=manifest(f"churn-{kind}"),
        trusted_types=trusted,
    )
    return Case(kind, pipeline, model_dir, bundle, frame, trusted)


def split(rows: pd.DataFrame) -> dict[str, Any]:
    """MLflow's ``dataframe_split`` of a table, floats exact (pandas' to_json rounds them)."""
    data = rows.astype(object).where(rows.notna(), None).to_numpy().tolist()
    return {"columns": list(rows.columns), "data": data}


def records(rows: pd.DataFrame) -> list[dict[str, Any]]:
    body = split(rows)
    return [dict(zip(body["columns"], row, strict=True)) for row in body["data"]]


def requirements(bundle: Path) -> dict[str, str]:
    pins = {}
    for line in (bundle / "requirements.txt").read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            assert sep and re.fullmatch(r"[\w.+]+", version), f"not pinned: {line}"
            pins[name] = version
    return pins


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


# --- the bundle ------------------------------------------------------------------------------


def test_layout_and_manifest(case: Case) -> None:
    bundle = case.bundle
    top = sorted(p.name for p in bundle.iterdir())
    assert top == sorted(
        [
            ".dockerignore",
            "Dockerfile",
            "README.md",
            "manifest.json",
            "model",
            "requirements.txt",
            "serve.py",
            "serving.yaml",
            "trusted_types.json",
        ]
    )
    assert os.access(bundle / "serve.py", os.X_OK)
    info = json.loads((bundle / "manifest.json").read_text())
    for key, value in manifest(f"churn-{case.kind}").items():
        assert info[key] == (str(value) if key == "version" else value)
    model_files = sorted(
        p.relative_to(case.model_dir).as_posix() for p in case.model_dir.rglob("*") if p.is_file()
    )
    assert {"MLmodel", "model.skops", "requirements.txt"} <= set(model_files)
    assert sorted(info["files"]) == model_files
    for rel, digest in info["files"].items():
        assert digest == sha256(bundle / "model" / rel) == sha256(case.model_dir / rel)
    assert info["bundle"]["model_file"] == "model.skops"
    assert info["bundle"]["input_schema"] == [
        {"name": "x", "type": "double"},
        {"name": "size", "type": "double"},
        {"name": "color", "type": "string"},
    ]
    assert json.loads((bundle / "trusted_types.json").read_text()) == sorted(case.trusted)


def test_requirements_are_pinned_and_light(case: Case) -> None:
    pins = requirements(case.bundle)
    assert set(pins) >= BASE
    assert ("lightgbm" in pins) == (case.kind == "lightgbm")
    assert not {"mlflow", "mlflow-skinny", "tessera"} & {n.lower() for n in pins}
    for name, version in pins.items():
        assert importlib.metadata.version(name) == version
    dockerfile = (case.bundle / "Dockerfile").read_text()
    assert ("libgomp1" in dockerfile) == (case.kind == "lightgbm")


def test_serving_yaml_and_readme(case: Case) -> None:
    text = (case.bundle / "serving.yaml").read_text()
    config = yaml.safe_load(text)
    assert config["model"] == f"churn-{case.kind}"
    assert config["version"] == "3"
    assert config["alias"] == "champion"
    assert config["features"] == FEATURES
    assert config["task"] == "classification"
    assert config["port"] == 8080
    assert config["max_batch_rows"] > 0
    # serve.py reads it without PyYAML, to the same values.
    spec = importlib.util.spec_from_file_location("bundle_serve", case.bundle / "serve.py")
    assert spec is not None and spec.loader is not None
    serve = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(serve)
    assert serve.read_config(case.bundle / "serving.yaml") == config

    readme = (case.bundle / "README.md").read_text()
    for text in (f"churn-{case.kind}", "version 3", "| accuracy | 0.9123 |", "docker build"):
        assert text in readme
    assert "pip install -r requirements.txt" in readme
    assert "curl" in readme and "/invocations" in readme


def test_mlflow_users_can_load_the_model_directory(case: Case) -> None:
    import mlflow.pyfunc

    loaded = mlflow.pyfunc.load_model(str(case.bundle / "model"))
    assert loaded.predict(case.rows).tolist() == case.pipeline.predict(case.rows).tolist()


def test_write_bundle_refusals(case: Case, tmp_path: Path) -> None:
    args: dict[str, Any] = {
        "name": f"churn-{case.kind}",
        "version": "3",
        "manifest": manifest(f"churn-{case.kind}"),
        "trusted_types": case.trusted,
    }
    with pytest.raises(ValueError, match="not empty"):
        write_bundle(case.model_dir, case.bundle, **args)
    with pytest.raises(ValueError, match="version"):
        write_bundle(case.model_dir, tmp_path / "b1", **{**args, "version": "4"})
    wrong = {**args["manifest"], "features": ["color", "x", "size"]}
    with pytest.raises(ValueError, match="input columns"):
        write_bundle(case.model_dir, tmp_path / "b2", **{**args, "manifest": wrong})
    wrong = {**args["manifest"], "files": {"model.skops": "0" * 64}}
    with pytest.raises(ValueError, match="does not match"):
        write_bundle(case.model_dir, tmp_path / "b3", **{**args, "manifest": wrong})
    if case.kind == "lightgbm":
        with pytest.raises(ValueError, match=r"lightgbm\.basic\.Booster"):
            write_bundle(case.model_dir, tmp_path / "b4", **{**args, "trusted_types": []})
    pickled = tmp_path / "pickled"
    shutil.copytree(case.model_dir, pickled)
    mlmodel = pickled / "MLmodel"
    mlmodel.write_text(mlmodel.read_text().replace("format: skops", "format: cloudpickle"))
    with pytest.raises(ValueError, match="skops"):
        write_bundle(pickled, tmp_path / "b5", **args)
    # Nothing is left behind by a refusal; an existing empty directory is fine.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["pickled"]
    (tmp_path / "empty").mkdir()
    assert write_bundle(case.model_dir, tmp_path / "empty", **args) == tmp_path / "empty"
    assert (tmp_path / "empty" / "serve.py").is_file()


def test_registry_manifest_without_features(case: Case, tmp_path: Path) -> None:
    """What the CLI passes: the registry's version record (no features) and Tessera's whole
    reviewed type list. Features come from the fitted pipeline; only needed types are trusted."""
    from tessera.training.modelio import TRUSTED_TYPES

    record = {
        "name": "churn",
        "version": "7",
        "aliases": ["champion", "staging"],
        "run_id": "abc",
        "source": "models:/m-123",
        "created": 1_760_000_000.0,
        "description": "",
        "sha256": "f" * 64,
        "tags": {"tessera.sha256": "f" * 64},
        "metrics": {"test_accuracy": 0.9},
    }
    bundle = write_bundle(
        case.model_dir,
        tmp_path / "b",
        name="churn",
        version="7",
        manifest=record,
        trusted_types=list(TRUSTED_TYPES),
    )
    info = json.loads((bundle / "manifest.json").read_text())
    assert info["features"] == FEATURES
    assert info["sha256"] == "f" * 64  # the registry's own fields are kept
    assert json.loads((bundle / "trusted_types.json").read_text()) == sorted(case.trusted)
    assert yaml.safe_load((bundle / "serving.yaml").read_text())["alias"] == "champion"
    readme = (bundle / "README.md").read_text()
    assert "| Created | 2025-10-09 08:53 UTC |" in readme
    assert "| test_accuracy | 0.9 |" in readme


# --- Dockerfile checks (static: Docker cannot build images here) -----------------------------


def test_generated_dockerfile_passes(case: Case) -> None:
    assert check_dockerfile(case.bundle / "Dockerfile") == []
    text = (case.bundle / "Dockerfile").read_text()
    assert f"\nFROM {BASE_IMAGE}\n" in text
    assert "pip install --no-cache-dir -r requirements.txt" in text
    assert text.index("COPY requirements.txt") < text.index("COPY . .")
    assert 'CMD ["python", "serve.py", "serve", "--port", "8080"]' in text


@pytest.mark.parametrize(
    ("old", "new", "problem"),
    [
        (f"FROM {BASE_IMAGE}", "FROM python:latest", "`latest` tag"),
        (f"FROM {BASE_IMAGE}", "FROM python", "no tag"),
        ("COPY requirements.txt .", "COPY requirement.txt .", "requirement.txt does not exist"),
        ("COPY . .", "COPY ../secrets .", "outside the build context"),
        ("COPY . .", "ADD https://example.com/model.tgz .", "ADD of a URL"),
        ("USER 10001:10001", "USER root", "runs as root"),
        ("USER 10001:10001", "", "runs as root"),
        ('CMD ["python", "serve.py", "serve", "--port", "8080"]', "CMD python serve.py", "shell"),
        ("EXPOSE 8080", "", "no EXPOSE"),
        ("EXPOSE 8080", "EXPOSE 8080\nCOPYY . .", "unknown instruction 'COPYY'"),
        ("HEALTHCHECK --interval=30s", "HEALTHCHECK NONE\nLABEL a=b", "HEALTHCHECK NONE"),
    ],
)
def test_bad_dockerfiles_are_flagged(
    old: str, new: str, problem: str, small_bundle: Path, tmp_path: Path
) -> None:
    bundle = Path(shutil.copytree(small_bundle, tmp_path / "bundle"))
    dockerfile = bundle / "Dockerfile"
    text = dockerfile.read_text()
    assert old in text
    dockerfile.write_text(text.replace(old, new, 1))
    problems = check_dockerfile(dockerfile)
    assert problems and any(problem in p for p in problems), problems


def test_dockerfile_check_details(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("")
    (tmp_path / "secret.env").write_text("")
    (tmp_path / ".dockerignore").write_text("*.env\n")
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(
        "# syntax=docker/dockerfile:1\n"
        "ARG BASE=python:3.12-slim\n"
        "FROM ${BASE} AS build\n"
        "RUN pip wheel --no-deps -w /wheels \\\n"
        "    # a comment inside a continuation\n"
        "    numpy\n"
        "FROM python@sha256:" + "a" * 64 + "\n"
        "COPY --from=build /wheels /wheels\n"
        'COPY ["app.py", "/app/"]\n'
        "COPY secret.env /app/\n"
        "RUN <<EOF\n"
        "echo not an instruction\n"
        "EOF\n"
        "USER app\n"
        "EXPOSE 80\n"
        "HEALTHCHECK CMD python -c 'print(1)'\n"
        'CMD ["python", "/app/app.py"]\n'
    )
    assert check_dockerfile(dockerfile) == [
        "Dockerfile:10: COPY source secret.env is excluded by .dockerignore"
    ]


@pytest.fixture(scope="module")
def small_bundle(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bundle of a tiny model, for tests that only edit its text files."""
    import mlflow.sklearn
    from sklearn.linear_model import LogisticRegression

    tmp_path = tmp_path_factory.mktemp("small")
    frame = pd.DataFrame({"a": [0.0, 1.0, 2.0, 3.0]})
    model = LogisticRegression().fit(frame, [0, 0, 1, 1])
    mlflow.sklearn.save_model(
        model, str(tmp_path / "m"), serialization_format="skops", pip_requirements=["skops"]
    )
    return write_bundle(
        tmp_path / "m",
        tmp_path / "bundle",
        name="tiny",
        version="1",
        manifest={"features": ["a"]},
        trusted_types=[],
    )


# --- the bundle in a fresh environment -------------------------------------------------------


def uv() -> str:
    found = ROOT / ".tools" / "bin" / "uv"
    if found.exists():
        return str(found)
    on_path = shutil.which("uv")
    if on_path is None:
        pytest.skip("uv is not installed (make install bootstraps it into .tools/)")
    return on_path


def clean_env() -> dict[str, str]:
    """The environment without anything pointing Python at this project's packages."""
    drop = ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONDONTWRITEBYTECODE")  # cache the fresh env's .pyc
    env = {k: v for k, v in os.environ.items() if k not in drop}
    return {**env, "UV_PYTHON_DOWNLOADS": "never"}


def run(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(a) for a in args],
        cwd=cwd,
        env=clean_env(),
        capture_output=True,
        text=True,
        timeout=240,
    )


@pytest.fixture(scope="module")
def venv(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A new, empty virtual environment of this Python (shared by the bundles, see below)."""
    venv = tmp_path_factory.mktemp("fresh") / "venv"
    created = run(uv(), "venv", "--python", sys.executable, venv)
    assert created.returncode == 0, created.stderr
    return venv / "bin" / "python"


@pytest.fixture
def venv_python(case: Case, venv: Path) -> Path:
    """The fresh environment holding exactly the bundle's requirements, nothing else.

    ``uv pip sync`` installs the listed versions and removes anything unlisted, without
    resolving: offline first, from uv's cache (filled by ``uv sync`` with the same versions),
    then online. ``uv pip check`` then proves the pins are a complete set. One environment
    serves both bundles so Python's bytecode cache is shared.
    """
    reqs = case.bundle / "requirements.txt"
    synced = run(uv(), "pip", "sync", "--offline", "--python", venv, reqs)
    if synced.returncode != 0:
        synced = run(uv(), "pip", "sync", "--python", venv, reqs)
    assert synced.returncode == 0, synced.stderr
    checked = run(uv(), "pip", "check", "--python", venv)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    return venv


def expected(case: Case, rows: pd.DataFrame) -> tuple[list[Any], list[float]]:
    return (
        case.pipeline.predict(rows).tolist(),
        case.pipeline.predict_proba(rows)[:, 1].tolist(),
    )


@pytest.mark.slow
def test_verify_in_fresh_environment_without_tessera_or_mlflow(
    case: Case, venv_python: Path
) -> None:
    probe = (
        "import importlib.util as u; print([m for m in ('tessera', 'mlflow') if u.find_spec(m)])"
    )
    done = run(venv_python, "-c", probe)
    assert done.returncode == 0 and done.stdout.strip() == "[]", done.stdout + done.stderr
    # What the image build runs: hashes, trusted types, loading, the input example.
    done = run(venv_python, case.bundle / "serve.py", "verify")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"ok: churn-{case.kind} version 3")


@pytest.mark.slow
def test_predict_command_matches_in_process(case: Case, venv_python: Path, tmp_path: Path) -> None:
    rows = case.rows
    rows.to_csv(tmp_path / "input.csv", index=False)
    predictions, probabilities = expected(case, rows)
    done = run(venv_python, case.bundle / "serve.py", "predict", tmp_path / "input.csv")
    assert done.returncode == 0, done.stderr
    lines = [json.loads(line) for line in done.stdout.splitlines()]
    assert [line["prediction"] for line in lines] == predictions
    assert [line["probability"] for line in lines] == probabilities  # exactly


@pytest.mark.slow
@pytest.mark.parametrize("case", ["logistic"], indirect=True)
def test_predict_command_json_to_csv_and_bad_input(
    case: Case, venv_python: Path, tmp_path: Path
) -> None:
    rows = case.rows
    predictions, probabilities = expected(case, rows)
    (tmp_path / "input.json").write_text(json.dumps({"dataframe_split": split(rows)}))
    out = tmp_path / "out.csv"
    serve = case.bundle / "serve.py"
    done = run(venv_python, serve, "predict", tmp_path / "input.json", "--out", out)
    assert done.returncode == 0, done.stderr
    written = pd.read_csv(out)
    assert list(written.columns) == ["prediction", "probability"]
    assert written["prediction"].tolist() == predictions
    assert written["probability"].tolist() == probabilities

    rows.drop(columns=["color"]).to_csv(tmp_path / "bad.csv", index=False)
    done = run(venv_python, serve, "predict", tmp_path / "bad.csv")
    assert done.returncode == 1
    assert "missing columns: color" in done.stderr and "Traceback" not in done.stderr


@pytest.fixture
def server(case: Case, venv_python: Path, tmp_path: Path) -> Iterator[tuple[str, Any]]:
    """``serve.py serve`` from the fresh environment on a free port: (base URL, process)."""
    log = (tmp_path / "server.log").open("w")
    serve = case.bundle / "serve.py"
    proc = subprocess.Popen(
        [str(venv_python), str(serve), "serve", "--host", "127.0.0.1", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=log,
        text=True,
        env=clean_env(),
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # printed once listening
        found = re.search(r"http://127\.0\.0\.1:(\d+)", line)
        assert found, f"{line}{(tmp_path / 'server.log').read_text()}"
        yield f"http://127.0.0.1:{found.group(1)}", proc
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
        log.close()


def call(url: str, body: bytes | None = None, ctype: str = "application/json") -> tuple[int, Any]:
    request = urllib.request.Request(url, data=body, headers={"Content-Type": ctype})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        assert exc.headers["Content-Type"] == "application/json"
        return exc.code, json.loads(exc.read())


@pytest.mark.slow
def test_http_server_matches_in_process(case: Case, server: tuple[str, Any]) -> None:
    base, proc = server
    rows = case.rows
    predictions, probabilities = expected(case, rows)
    assert call(f"{base}/health") == (200, {"status": "ok"})
    status, ready = call(f"{base}/ready")
    assert status == 200 and ready["model"] == f"churn-{case.kind}" and ready["version"] == "3"

    status, body = call(
        f"{base}/invocations", json.dumps({"dataframe_split": split(rows)}).encode()
    )
    assert status == 200
    assert body["predictions"] == predictions
    assert body["probabilities"] == probabilities  # exactly
    assert body["positive_class"] == 1

    csv_body = rows.to_csv(index=False).encode()
    status, body = call(f"{base}/invocations", csv_body, "text/csv; charset=utf-8")
    assert status == 200 and body["predictions"] == predictions
    assert body["probabilities"] == probabilities

    request = {"dataframe_records": records(rows.head(5))}
    status, body = call(f"{base}/invocations", json.dumps(request).encode())
    assert status == 200 and body["predictions"] == predictions[:5]

    missing = {"dataframe_split": split(rows.drop(columns=["size"]))}
    status, body = call(f"{base}/invocations", json.dumps(missing).encode())
    assert status == 422
    assert "size" in body["message"] and body["error_code"] == "INVALID_PARAMETER_VALUE"
    status, body = call(f"{base}/invocations", b"{not json")
    assert status == 400 and "malformed JSON" in body["message"]
    status, body = call(f"{base}/invocations", b'{"records": []}')
    assert status == 400 and "dataframe_split" in body["message"]
    status, body = call(
        f"{base}/invocations", b'{"inputs": [{"x": "abc", "size": 1, "color": "red"}]}'
    )
    assert status == 422 and "'x' must be numeric" in body["message"]

    proc.terminate()  # SIGTERM: graceful stop
    assert proc.wait(timeout=20) == 0


# --- refusals of serve.py --------------------------------------------------------------------


def serve_py(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """serve.py with this interpreter: the checks refuse before any model code is imported."""
    return run(sys.executable, bundle / "serve.py", *args)


def test_tampered_model_is_refused(case: Case, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(case.bundle, tmp_path / "bundle"))
    model = bundle / "model" / "model.skops"
    data = bytearray(model.read_bytes())
    data[len(data) // 2] ^= 0x01
    model.write_bytes(bytes(data))
    for command in (["verify"], ["serve", "--port", "0"], ["predict", "x.csv"]):
        done = serve_py(bundle, *command)
        assert done.returncode == 2, done.stdout + done.stderr
        assert "refusing" in done.stderr and "model/model.skops: sha256" in done.stderr
        assert "Traceback" not in done.stderr


def test_missing_and_extra_files_are_refused(case: Case, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(case.bundle, tmp_path / "bundle"))
    (bundle / "model" / "input_example.json").unlink()
    (bundle / "model" / "extra.pkl").write_bytes(b"\x80\x04")
    done = serve_py(bundle, "verify")
    assert done.returncode == 2
    assert "model/input_example.json: missing" in done.stderr
    assert "model/extra.pkl: not listed in manifest.json" in done.stderr


@pytest.mark.parametrize("case", ["lightgbm"], indirect=True)
def test_untrusted_types_are_refused(case: Case, tmp_path: Path) -> None:
    bundle = Path(shutil.copytree(case.bundle, tmp_path / "bundle"))
    (bundle / "trusted_types.json").write_text("[]")
    done = serve_py(bundle, "verify")
    assert done.returncode == 2
    assert "outside trusted_types.json: " + ", ".join(sorted(case.trusted)) in done.stderr
