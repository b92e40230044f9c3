"""The serving app over a really registered model: routes, errors, and `tessera serve` itself."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import CANCER_SPEC as SPEC
from support import Project

PIPELINE = """
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


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A project with the registered model `cancer`, its downloaded directory and pipeline."""
    from tessera.examples.breast_cancer_data import load_table

    project = Project(tmp_path_factory.mktemp("serving") / "proj")
    project.write("tessera.yaml", "name: serving\n")
    project.write("models/cancer.yaml", SPEC)
    project.write("pipeline.yaml", PIPELINE)
    table = load_table()
    (project.root / "data").mkdir()
    table.to_csv(project.root / "data" / "cancer.csv", index=False)
    run = subprocess.run(
        [str(Path(sys.executable).parent / "tessera"), "run"],
        cwd=project.root,
        capture_output=True,
        text=True,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(project.root)
        from tessera.cli.model_cmds import open_registry

        registry = open_registry()
        info, model_dir = registry.download("cancer@champion", project.root / "served")
        _, pipeline = registry.load("cancer@champion")
    features = [str(c) for c in pipeline.feature_names_in_]
    yield {
        "root": project.root,
        "info": info.to_dict(),
        "model_dir": model_dir,
        "pipeline": pipeline,
        "frame": table[features].head(40),
    }


class _Client:
    """The app served by uvicorn in a thread on a free loopback port, spoken to with requests."""

    def __init__(self, app: Any) -> None:
        import uvicorn

        self.url = f"http://127.0.0.1:{_free_port()}"
        port = int(self.url.rsplit(":", 1)[1])
        config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def __enter__(self) -> _Client:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started and time.monotonic() < deadline:
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.should_exit = True
        self.thread.join(10)

    def get(self, path: str) -> Any:
        import requests

        return requests.get(self.url + path, timeout=10)

    def post(self, path: str, **kwargs: Any) -> Any:
        import requests

        return requests.post(self.url + path, timeout=10, **kwargs)


def _client(served: dict[str, Any], **limits: int) -> _Client:
    from tessera.serving.app import create_app
    from tessera.serving.config import ServedModel, ServingConfig

    config = ServingConfig(models=[ServedModel(name="cancer")], **limits)
    return _Client(create_app(served["model_dir"], served["info"], config))


def _wait_ready(get: Any) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if get("/ready").status_code == 200:
                return
        except OSError:
            pass
        time.sleep(0.05)
    raise AssertionError("the server never became ready")


def test_routes_and_predictions(served: dict[str, Any]) -> None:
    frame = served["frame"]
    pipeline = served["pipeline"]
    expected = pipeline.predict(frame).tolist()
    with _client(served) as client:
        assert client.get("/health").status_code == 200
        _wait_ready(client.get)
        assert client.get("/ready").json()["model"] == {"name": "cancer", "version": "1"}

        records = json.loads(frame.to_json(orient="records"))
        native = client.post("/predict", json={"inputs": records})
        assert native.status_code == 200, native.text
        body = native.json()
        assert body["predictions"] == expected
        assert body["probabilities"] == pytest.approx(pipeline.predict_proba(frame)[:, 1])
        assert body["model"] == {"name": "cancer", "version": "1"}
        assert len(body["request_id"]) == 32
        split = json.loads(frame.to_json(orient="split", index=False))
        assert client.post("/predict", json=split).json()["predictions"] == expected

        for payload in (
            {"dataframe_split": json.loads(frame.to_json(orient="split"))},
            {"dataframe_records": records},
            {"instances": records},
            {"inputs": records},
        ):
            answer = client.post("/invocations", json=payload)
            assert answer.status_code == 200, answer.text
            assert answer.json() == {"predictions": expected}
        csv = client.post(
            "/invocations",
            data=frame.to_csv(index=False).encode(),
            headers={"content-type": "text/csv"},
        )
        assert csv.json() == {"predictions": expected}


def test_bad_requests_are_answered_never_with_500(served: dict[str, Any]) -> None:
    frame = served["frame"].head(5)
    records = json.loads(frame.to_json(orient="records"))
    records[2]["mean_radius"] = "wide"
    records[4]["mean_area"] = [1, 2]
    del records[0]["mean_texture"]
    for r in records:
        r.pop("texture_error")
    with _client(served, max_batch_rows=10, max_body_bytes=200_000) as client:
        _wait_ready(client.get)
        bad = client.post("/predict", json={"inputs": records})
        assert bad.status_code == 422
        body = bad.json()
        assert body["error_code"] == "INVALID_PARAMETER_VALUE"
        fields = {p["field"] for p in body["problems"]}
        assert fields == {"texture_error", "inputs[2].mean_radius", "inputs[4].mean_area"}
        assert "inputs[2].mean_radius: expected number (double), got 'wide'" in body["message"]

        many = json.loads(served["frame"].head(11).to_json(orient="split", index=False))
        assert client.post("/predict", json=many).status_code == 413
        huge = client.post("/invocations", data=b"[" + b" " * 300_000 + b"]")
        chunked = client.post("/invocations", data=iter([b"[" + b" " * 150_000] * 2))
        assert chunked.status_code == 413
        assert huge.status_code == 413
        assert huge.json()["error_code"] == "RESOURCE_LIMIT_EXCEEDED"
        xml = client.post("/predict", data=b"<a/>", headers={"content-type": "text/xml"})
        assert xml.status_code == 415
        broken = client.post(
            "/invocations", data=b'{"inputs": [', headers={"content-type": "application/json"}
        )
        assert broken.status_code == 400
        assert client.post("/invocations", json={"nothing": 1}).status_code == 422
        assert client.post("/predict", json=[1, 2]).status_code == 422
        assert client.get("/predict").status_code == 405


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _serve_command() -> list[str]:
    """`tessera serve` once the command is registered, else the command module alone."""
    from tessera.cli.main import app

    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    if "serve" in names:
        return [str(Path(sys.executable).parent / "tessera"), "serve"]
    return [sys.executable, "-m", "tessera.cli.serve_cmds"]


def test_tessera_serve_answers_like_mlflow(served: dict[str, Any]) -> None:
    import mlflow.pyfunc
    import requests

    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [*_serve_command(), "--port", str(port)],
        cwd=served["root"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        _wait_ready(lambda path: requests.get(url + path, timeout=2))
        frame = served["frame"]
        answer = requests.post(
            url + "/invocations",
            json={"dataframe_split": frame.to_dict(orient="split")},
            timeout=10,
        )
        assert answer.status_code == 200, answer.text
        expected = mlflow.pyfunc.load_model(str(served["model_dir"])).predict(frame)
        assert answer.json() == {"predictions": expected.tolist()}
    finally:
        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=20)
    assert server.returncode == 0, err
    assert "Traceback" not in err
    assert f"http://127.0.0.1:{port}" in out


def test_serve_refuses_what_it_cannot_serve_safely(tmp_path: Path, tessera) -> None:
    """No model to serve, a bad serving.yaml, files that do not match the registered hash: a
    clear error and a non-zero exit, never a server."""
    from support import Project

    empty = Project(tmp_path / "empty")
    empty.write("tessera.yaml", "name: empty\n")
    none = tessera("serve", cwd=empty.root)
    assert none.code == 2 and "no model is registered" in none.err

    project = Project(tmp_path / "p")
    project.write("tessera.yaml", "name: p\n")
    from tessera.examples.breast_cancer_data import load_table

    (project.root / "data").mkdir()
    load_table().to_csv(project.root / "data" / "cancer.csv", index=False)
    project.write("models/cancer.yaml", SPEC)
    project.write("pipeline.yaml", PIPELINE)
    assert tessera("run", cwd=project.root).code == 0
    project.write("serving.yaml", "models: [{name: cancer, alis: champion}]\n")
    typo = tessera("serve", cwd=project.root)
    assert typo.code == 2 and "serving.yaml:1" in typo.err and "did you mean 'alias'" in typo.err
    project.write("serving.yaml", "models: [{name: cancer}]\n")
    (skops_file,) = (project.root / ".tessera" / "mlartifacts").rglob("model.skops")
    data = bytearray(skops_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    skops_file.write_bytes(bytes(data))
    tampered = tessera("serve", "--port", "0", cwd=project.root)
    assert tampered.code == 1 and "refusing to load it" in tampered.err
