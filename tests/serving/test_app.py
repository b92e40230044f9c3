"""The serving app over a really registered model: routes, errors, and `tessera serve` itself."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support import CANCER_PIPELINE as PIPELINE
from support import CANCER_SPEC as SPEC
from support import (
    Project,
    ServerThread,
    cancer_project,
    free_port,
    required_tool,
    until,
)


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A project with the registered model `cancer`, its downloaded directory and pipeline."""
    from tessera.examples.breast_cancer_data import load_table
    from tessera.registry.models import project_registry

    project = cancer_project(tmp_path_factory.mktemp("serving") / "proj")
    registry = project_registry(project.root)
    info, model_dir = registry.download("cancer@champion", project.root / "served")
    _, pipeline = registry.load("cancer@champion")
    features = [str(c) for c in pipeline.feature_names_in_]
    yield {
        "root": project.root,
        "info": info.to_dict(),
        "model_dir": model_dir,
        "pipeline": pipeline,
        "frame": load_table()[features].head(40),
    }


def _client(served: dict[str, Any], **limits: int) -> ServerThread:
    from tessera.serving.app import create_app
    from tessera.serving.config import ServedModel, ServingConfig

    config = ServingConfig(models=[ServedModel(name="cancer")], **limits)
    initial = {"cancer": (served["info"], served["model_dir"])}
    return ServerThread(create_app(served["root"], config, initial))


def test_routes_and_predictions(served: dict[str, Any]) -> None:
    frame = served["frame"]
    pipeline = served["pipeline"]
    expected = pipeline.predict(frame).tolist()
    with _client(served) as client:
        assert client.get("/health").status_code == 200
        client.wait_ready()
        assert client.get("/ready").json()["models"] == {
            "cancer": {"name": "cancer", "version": "1", "scoring": "compiled"}
        }

        records = json.loads(frame.to_json(orient="records"))
        native = client.post("/predict", json={"inputs": records})
        assert native.status_code == 200, native.text
        body = native.json()
        assert body["predictions"] == expected
        assert body["probabilities"] == pytest.approx(pipeline.predict_proba(frame)[:, 1])
        assert body["model"] == {"name": "cancer", "version": "1", "variant": "champion"}
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
        client.wait_ready()
        bad = client.post("/predict", json={"inputs": records})
        assert bad.status_code == 422
        body = bad.json()
        assert body["error_code"] == "INVALID_PARAMETER_VALUE"
        fields = {p["field"] for p in body["problems"]}
        assert fields == {"texture_error", "inputs[2].mean_radius", "inputs[4].mean_area"}
        assert "inputs[2].mean_radius: expected number (double), got 'wide'" in body["message"]

        twice = json.loads(served["frame"].head(1).to_json(orient="split", index=False))
        twice["columns"].append(twice["columns"][0])
        twice["data"][0].append(twice["data"][0][0])
        for body in (twice, {"dataframe_split": twice}):
            duplicate = client.post("/predict" if "columns" in body else "/invocations", json=body)
            assert duplicate.status_code == 422, duplicate.text
            assert duplicate.json()["problems"] == [
                {"field": twice["columns"][0], "problem": "2 columns of this name"}
            ]
        deep = b'{"inputs": ' + b"[" * 5000 + b"]" * 5000 + b"}"
        nested = client.post("/predict", data=deep, headers={"content-type": "application/json"})
        assert nested.status_code == 400, nested.text

        # 1e400 is a valid JSON number, infinite as a double: the model refuses it, and the
        # answer names where it is
        split = json.loads(served["frame"].head(2).to_json(orient="split", index=False))
        split["data"][1][3] = "INFINITE"
        text = json.dumps(split).replace('"INFINITE"', "1e400")
        infinite = client.post("/predict", data=text, headers={"content-type": "application/json"})
        assert infinite.status_code == 422, infinite.text
        assert infinite.json()["problems"] == [
            {"field": f"rows[1].{split['columns'][3]}", "problem": "infinite value (inf)"}
        ]

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


def _serve_command() -> list[str]:
    """`tessera serve` once the command is registered, else the command module alone."""
    from tessera.cli.main import app

    names = {c.name or (c.callback.__name__ if c.callback else "") for c in app.registered_commands}
    if "serve" in names:
        return [str(Path(sys.executable).parent / "tessera"), "serve"]
    return [sys.executable, "-m", "tessera.cli.serve_cmds"]


@contextlib.contextmanager
def _process(command: list[str], cwd: Path) -> Iterator[subprocess.Popen[str]]:
    process = subprocess.Popen(
        command,
        cwd=cwd,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={  # mlflow models serve runs `uvicorn` from PATH
            **os.environ,
            "PYTHONUNBUFFERED": "1",
            "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
        },
        start_new_session=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.communicate()


def test_mlflow_clients_get_what_mlflow_models_serve_answers(served: dict[str, Any]) -> None:
    """MLflow's own scoring client against `tessera serve`, and `mlflow models serve` on the same
    model directory side by side: the same predictions for every format."""
    import requests
    from mlflow.pyfunc.scoring_server.client import ScoringServerClient

    frame = served["frame"]
    ours, theirs = free_port(), free_port()
    mlflow_serve = [
        str(Path(sys.executable).parent / "mlflow"),
        "models",
        "serve",
        "-m",
        str(served["model_dir"]),
        "-p",
        str(theirs),
        "--env-manager",
        "local",
    ]
    with (
        _process([*_serve_command(), "--port", str(ours)], served["root"]) as server,
        _process(mlflow_serve, served["root"]) as peer,
    ):
        client = ScoringServerClient("127.0.0.1", ours)
        client.wait_server_ready(timeout=60, scoring_server_proc=server)
        answer = client.invoke(frame)
        expected = served["pipeline"].predict(frame).tolist()
        assert answer["predictions"] == expected  # a PredictionsResponse: a dict
        ScoringServerClient("127.0.0.1", theirs).wait_server_ready(
            timeout=120, scoring_server_proc=peer
        )
        records = json.loads(frame.to_json(orient="records"))
        for payload in (
            {"dataframe_split": json.loads(frame.to_json(orient="split", index=False))},
            {"dataframe_records": records},
            {"instances": records},
            {"inputs": records},
        ):
            mine = requests.post(f"http://127.0.0.1:{ours}/invocations", json=payload, timeout=10)
            peer_answer = requests.post(
                f"http://127.0.0.1:{theirs}/invocations", json=payload, timeout=30
            )
            assert peer_answer.status_code == mine.status_code == 200, peer_answer.text
            assert mine.json() == peer_answer.json()
        csv = frame.to_csv(index=False).encode()
        headers = {"content-type": "text/csv"}
        mine = requests.post(f"http://127.0.0.1:{ours}/invocations", data=csv, headers=headers)
        peer_csv = requests.post(
            f"http://127.0.0.1:{theirs}/invocations", data=csv, headers=headers
        )
        assert mine.json() == peer_csv.json()
        metrics = requests.get(f"http://127.0.0.1:{ours}/metrics", timeout=10).text
        promtool = required_tool("promtool", "Debian: apt-get install prometheus")
        lint = subprocess.run(
            [promtool, "check", "metrics"], input=metrics, capture_output=True, text=True
        )
        assert lint.returncode == 0, lint.stdout + lint.stderr
        os.killpg(server.pid, signal.SIGTERM)
        out, err = server.communicate(timeout=30)
    assert server.returncode == 0, err
    assert "Traceback" not in err
    assert f"http://127.0.0.1:{ours}" in out


def test_serve_refuses_what_it_cannot_serve_safely(tmp_path: Path, tessera) -> None:
    """No model to serve, a bad serving.yaml, files that do not match the registered hash: a
    clear error and a non-zero exit, never a server."""

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
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        busy = tessera("serve", "--port", port, cwd=project.root)
    assert busy.code == 2, busy.err
    beyond = tessera("serve", "--port", "99999", cwd=project.root)
    assert beyond.code == 2 and "Traceback" not in beyond.err and "65535" in beyond.err
    assert f"cannot listen on 127.0.0.1:{port}: Address already in use" in busy.err
    (skops_file,) = (project.root / ".tessera" / "mlartifacts").rglob("model.skops")
    data = bytearray(skops_file.read_bytes())
    data[len(data) // 2] ^= 0xFF
    skops_file.write_bytes(bytes(data))
    tampered = tessera("serve", "--port", "0", cwd=project.root)
    assert tampered.code == 1 and "refusing to load it" in tampered.err


def test_a_model_that_cannot_load_is_answered_503_and_counted(
    served: dict[str, Any], tmp_path: Path
) -> None:
    from tessera.serving.app import create_app
    from tessera.serving.config import ServedModel, ServingConfig

    broken = tmp_path / "broken"
    broken.mkdir()  # no model files in it
    config = ServingConfig(models=[ServedModel(name="cancer")])
    app = create_app(served["root"], config, {"cancer": (served["info"], broken)})
    with ServerThread(app) as client:
        until(lambda: client.get("/ready").json()["status"] == "failed", 30, "the failure")
        row = json.loads(served["frame"].head(1).to_json(orient="split", index=False))
        for _ in range(2):
            answer = client.post("/predict", json=row)
            assert answer.status_code == 503
            assert answer.json()["message"].startswith("cannot load cancer/1")
        metrics = client.get("/metrics").text
    assert (
        'tessera_http_requests_total{code="503",model="cancer",route="predict",'
        'variant="champion",version=""} 2.0' in metrics
    ), metrics


@pytest.mark.parametrize("inline", [True, False], ids=["on the event loop", "on a thread"])
def test_concurrent_requests_are_scored_in_batches_with_the_same_answers(
    served: dict[str, Any], inline: bool
) -> None:
    """Micro-batching: concurrent small requests share model calls, every request gets exactly
    its own rows' answers, and a request the model cannot score fails alone; both for fast
    models (scored on the event loop) and slow ones (on a worker thread)."""
    import asyncio

    from tessera.serving.runtime import LoadedModel

    model = LoadedModel(served["model_dir"], served["info"])
    model.batcher.inline = inline
    frame = served["frame"]
    calls: list[int] = []
    real = model.predict

    def counted(batch: Any) -> Any:
        calls.append(len(batch))
        if batch["mean_radius"].lt(0).any():
            raise ValueError("negative radius")
        return real(batch)

    model.predict = counted  # type: ignore[method-assign]
    bad = frame.head(1).assign(mean_radius=-1.0)

    async def main(extra: list[Any]) -> list[Any]:
        requests = [*(frame.iloc[i : i + 1] for i in range(len(frame))), *extra]
        return await asyncio.gather(
            *(model.batcher.predict(r) for r in requests), return_exceptions=True
        )

    expected = served["pipeline"].predict(frame)
    for extra in ([], [bad]):
        calls.clear()
        results = asyncio.run(main(extra))
        for i, (predictions, probabilities) in enumerate(results[: len(frame)]):
            assert predictions.tolist() == [expected[i]]
            assert len(probabilities) == 1
        if extra:  # the batch failed: each request alone, and only the bad one fails
            assert isinstance(results[-1], ValueError)
            assert calls[1:] == [1] * (len(frame) + 1)
        else:
            assert len(calls) < len(frame) and max(calls) > 1  # batched


def test_loading_a_model_leaves_mlflows_environment_variables_alone(
    served: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """MLflow's set_tracking_uri writes MLFLOW_TRACKING_URI: left behind, every process started
    afterwards (a server, `mlflow models serve`) would open another, empty store."""
    from tessera.registry.models import project_registry

    for name in ("MLFLOW_TRACKING_URI", "MLFLOW_REGISTRY_URI"):
        monkeypatch.delenv(name, raising=False)
    project_registry(served["root"]).load("cancer@champion")
    assert "MLFLOW_TRACKING_URI" not in os.environ
    assert "MLFLOW_REGISTRY_URI" not in os.environ


def test_scikit_learns_thread_race_warning_is_dropped_and_no_other(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import warnings

    from tessera.serving.runtime import quiet_sklearn_thread_warning

    shown: list[str] = []
    monkeypatch.setattr(warnings, "showwarning", lambda message, *_: shown.append(str(message)))
    quiet_sklearn_thread_warning()
    quiet_sklearn_thread_warning()  # once is enough: not wrapped twice
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.warn("`sklearn.utils.parallel.delayed` should be used with", stacklevel=1)
        warnings.warn("something that matters", stacklevel=1)
    assert shown == ["something that matters"]
