"""The server with two registered versions: hot reload, rollouts (A/B, canary, shadow) through
the admin API, feedback, the prediction log, metrics, OpenAPI. Real registry, real metadata
store, real HTTP on loopback."""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest

from support import ServerThread, cancer_project, serving_app, until


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`cancer` version 1 (champion) and 2 (challenger), and rows to score."""
    from tessera.examples.breast_cancer_data import load_table
    from tessera.registry.models import project_registry

    project = cancer_project(tmp_path_factory.mktemp("rollouts") / "proj", versions=2)
    registry = project_registry(project.root)
    _, pipeline = registry.load("cancer/1")
    features = [str(c) for c in pipeline.feature_names_in_]
    table = load_table()
    yield {
        "root": project.root,
        "registry": registry,
        "records": json.loads(table[features].to_json(orient="records")),
        "labels": table["target"].tolist(),
    }


@pytest.fixture
def fresh(project: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The shared project with version 1 as champion and no rollout running, before and after."""
    registry = project["registry"]
    _reset(project)
    yield project
    _reset(project)
    registry.set_alias("cancer", "champion", "1")


def _reset(project: dict[str, Any]) -> None:
    import shutil

    from tessera.serving.rollout import RolloutError, abort_rollout

    registry = project["registry"]
    registry.set_alias("cancer", "champion", "1")
    registry.set_alias("cancer", "challenger", "2")
    with contextlib.suppress(RolloutError):  # nothing running
        abort_rollout(registry.records, "cancer", reason="test clean-up")
    shutil.rmtree(project["root"] / ".tessera" / "predictions", ignore_errors=True)


def _predict(client: ServerThread, record: dict[str, Any], key: str | None = None) -> Any:
    body: dict[str, Any] = {"inputs": [record]}
    if key is not None:
        body["key"] = key
    return client.post("/predict", json=body)


def _start(client: ServerThread, strategy: str) -> dict[str, Any]:
    answer = client.post("/admin/rollout/start", json={"strategy": strategy, "reason": "test"})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def _status(client: ServerThread) -> dict[str, Any]:
    answer = client.get("/admin/rollout")
    assert answer.status_code == 200, answer.text
    return dict(answer.json())


def _state(status: dict[str, Any]) -> str | None:
    rollout = status.get("rollout") or status
    return rollout.get("state") if isinstance(rollout, dict) else None


class _Load:
    """Requests from several threads until stopped; every status code and served version kept."""

    def __init__(self, client: ServerThread, records: list[dict[str, Any]], threads: int = 4):
        import requests

        self.statuses: Counter[int] = Counter()
        self.versions: Counter[str] = Counter()
        self.stop = threading.Event()
        self.lock = threading.Lock()

        def run(offset: int) -> None:
            session = requests.Session()
            i = offset
            while not self.stop.is_set():
                record = records[i % len(records)]
                i += threads
                answer = session.post(
                    client.url + "/predict", json={"inputs": [record], "key": str(i)}, timeout=10
                )
                with self.lock:
                    self.statuses[answer.status_code] += 1
                    if answer.status_code == 200:
                        self.versions[answer.json()["model"]["version"]] += 1

        self.threads = [
            threading.Thread(target=run, args=(n,), daemon=True) for n in range(threads)
        ]

    def __enter__(self) -> _Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(10)


def test_hot_reload_swaps_under_load_without_a_failed_request(fresh: dict[str, Any]) -> None:
    registry = fresh["registry"]
    with serving_app(fresh["root"]) as client:
        client.wait_ready()
        with _Load(client, fresh["records"]) as load:
            until(lambda: sum(load.statuses.values()) > 50, what="some traffic")
            registry.set_alias("cancer", "champion", "2")
            until(lambda: load.versions["2"] > 50, what="version 2 served")
        assert set(load.statuses) == {200}, load.statuses
        assert load.versions["1"] > 0 and load.versions["2"] > 0
        assert client.get("/ready").json()["models"]["cancer"]["version"] == "2"


def test_canary_promotes_through_its_steps(fresh: dict[str, Any]) -> None:
    registry = fresh["registry"]
    canary = {
        "steps": [
            {"traffic": 30, "min_requests": 15, "dwell_seconds": 0},
            {"traffic": 100, "min_requests": 15, "dwell_seconds": 0},
        ],
        "max_p99_ms": 5000,
    }
    with serving_app(fresh["root"], rollout={"canary": canary}) as client:
        client.wait_ready()
        _start(client, "canary")
        with _Load(client, fresh["records"]) as load:
            until(lambda: _state(_status(client)) == "promoted", 60, "the promotion")
            until(lambda: load.versions["2"] > 20, what="version 2 as champion")
        assert set(load.statuses) == {200}, load.statuses
    assert registry.alias("cancer", "champion") == "2"
    events = registry.records.model_events("cancer")
    actions = [e["action"] for e in events]
    assert "rollout_start" in actions and "rollout_promote" in actions
    decision = [e for e in events if e["action"] == "rollout_promote"]
    assert decision[-1]["details"], "a decision records the numbers behind it"


def test_faulty_canary_is_rolled_back_and_champion_traffic_unaffected(
    fresh: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The candidate fails on a third of the inputs (a fault injected into version 2's predict:
    the rollout machinery around it is real)."""
    from tessera.serving.runtime import LoadedModel

    registry = fresh["registry"]
    real = LoadedModel.predict

    def faulty(self: LoadedModel, frame: Any) -> Any:
        if self.version == "2" and float(frame.iloc[0, 0]) % 3 < 1:
            raise RuntimeError("candidate bug")
        return real(self, frame)

    monkeypatch.setattr(LoadedModel, "predict", faulty)
    canary = {"steps": [{"traffic": 50, "min_requests": 30, "dwell_seconds": 0}]}
    with serving_app(fresh["root"], rollout={"canary": canary}) as client:
        client.wait_ready()
        _start(client, "canary")
        started = time.monotonic()
        with _Load(client, fresh["records"]) as load:
            until(lambda: _state(_status(client)) == "rolled_back", 60, "the rollback")
            elapsed = time.monotonic() - started
        assert set(load.statuses) == {200}, load.statuses  # the champion answered for it
    assert elapsed < 30
    assert registry.alias("cancer", "champion") == "1"
    events = registry.records.model_events("cancer")
    (event,) = [e for e in events if e["action"] == "rollout_rollback"]
    assert "error" in (event["reason"] or "").lower()


def test_ab_split_is_sticky_by_key_across_servers(fresh: dict[str, Any]) -> None:
    with serving_app(fresh["root"]) as one, serving_app(fresh["root"]) as two:
        one.wait_ready()
        two.wait_ready()
        _start(one, "ab")
        record = fresh["records"][0]

        def variants(client: ServerThread) -> dict[str, str]:
            return {
                key: _predict(client, record, key).json()["model"]["variant"]
                for key in (f"customer-{n}" for n in range(60))
            }

        until(lambda: "candidate" in variants(one).values(), what="the candidate loaded")
        until(lambda: "candidate" in variants(two).values(), what="the candidate loaded")
        first, again, other = variants(one), variants(one), variants(two)
        assert first == again == other
        assert 10 < Counter(first.values())["candidate"] < 50


def test_shadow_answers_with_champion_and_logs_both(fresh: dict[str, Any]) -> None:
    from tessera.serving.predlog import read_predictions

    with serving_app(fresh["root"]) as client:
        client.wait_ready()
        rollout = _start(client, "shadow")
        until(lambda: client.get("/admin/models").json()["cancer"]["candidate"] == "2")
        ids = []
        deadline = time.monotonic() + 30
        while len(ids) < 30 and time.monotonic() < deadline:
            answer = _predict(client, fresh["records"][len(ids)])
            assert answer.json()["model"]["variant"] == "champion"
            ids.append(answer.json()["request_id"])
        log = fresh["root"] / ".tessera" / "predictions"

        def both() -> Any:
            frame = read_predictions(log, "cancer")
            seen = frame[frame["request_id"].isin(ids)]
            return set(seen["variant"]) == {"champion", "shadow"} and len(seen) >= 2 * len(ids) - 5

        until(both, what="champion and shadow predictions in the log")
        frame = read_predictions(log, "cancer")
        assert set(frame[frame["variant"] == "shadow"]["version"]) == {"2"}
        assert set(frame["rollout_id"].dropna()) == {rollout["id"]}


def test_feedback_joins_the_prediction_log(fresh: dict[str, Any]) -> None:
    from tessera.serving.predlog import online_quality

    records, labels = fresh["records"], fresh["labels"]
    with serving_app(fresh["root"]) as client:
        client.wait_ready()
        ids = [_predict(client, records[i]).json()["request_id"] for i in range(40)]
        single = client.post("/feedback", json={"request_id": ids[0], "label": labels[0]})
        assert single.status_code == 202, single.text
        batch = [{"request_id": ids[i], "label": labels[i]} for i in range(1, 40)]
        assert client.post("/feedback", json={"feedback": batch}).json() == {"accepted": 39}
        bad = client.post("/feedback", json={"feedback": [{"request_id": 5, "label": [1]}]})
        assert bad.status_code == 422
        assert {p["field"] for p in bad.json()["problems"]} == {"feedback[0].request_id"}
        # checked against what this worker answered: the row exists, the label is a class
        wrong = [
            {"request_id": ids[0], "label": 1, "row": 1},
            {"request_id": ids[1], "label": "yes"},
            {"request_id": ids[2], "label": "1"},  # "1" matches the class 1
        ]
        refused = client.post("/feedback", json={"feedback": wrong})
        assert refused.status_code == 422
        assert refused.json()["problems"] == [
            {"field": f"{ids[0]}[1]", "problem": f"request {ids[0]} had 1 row"},
            {"field": f"{ids[1]}[0]", "problem": "'yes' is none of the classes (0, 1)"},
        ]
        elsewhere = {"request_id": "f" * 32, "label": "yes"}  # another worker's: not checkable
        assert client.post("/feedback", json=elsewhere).status_code == 202
        log = fresh["root"] / ".tessera" / "predictions"

        def quality() -> Any:
            got = online_quality(
                log, "cancer", task="classification", classes=[0, 1], metric="accuracy"
            )
            stats = got.get(("1", "champion"))
            return stats if stats is not None and stats.n == 40 else None

        stats = until(quality, what="40 labelled predictions")
        assert 0.8 <= stats.value <= 1.0
        metrics = client.get("/metrics").text
        assert "tessera_feedback" in metrics


def test_admin_api_needs_its_token(fresh: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TESSERA_ADMIN_TOKEN", "s3cret")
    with serving_app(fresh["root"], admin={"allow_localhost": False}) as client:
        client.wait_ready()
        assert client.get("/admin/models").status_code == 401
        wrong = client.get("/admin/models", headers={"authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error_code"] == "UNAUTHENTICATED"
        ok = client.get("/admin/models", headers={"authorization": "Bearer s3cret"})
        assert ok.json()["cancer"]["champion"] == "1"
    monkeypatch.delenv("TESSERA_ADMIN_TOKEN")
    with serving_app(fresh["root"], admin={"allow_localhost": False}) as client:
        off = client.post("/admin/rollout/start", json={})
        assert off.status_code == 403 and "TESSERA_ADMIN_TOKEN" in off.json()["message"]
    (fresh["root"] / "admin.token").write_text("from-file\n")
    with serving_app(fresh["root"], admin={"token_file": "admin.token"}) as client:
        assert client.get("/admin/models").status_code == 401  # a token disables the loopback pass
        ok = client.get("/admin/models", headers={"authorization": "Bearer from-file"})
        assert ok.status_code == 200
        missing_reason = client.post(
            "/admin/rollout/abort", json={}, headers={"authorization": "Bearer from-file"}
        )
        assert missing_reason.status_code == 422


def test_openapi_schema_from_the_signature_and_metrics(fresh: dict[str, Any]) -> None:
    with serving_app(fresh["root"]) as client:
        client.wait_ready()
        document = client.get("/openapi.json").json()
        row = document["components"]["schemas"]["CancerRow"]
        assert set(row["required"]) == set(fresh["records"][0])
        assert row["additionalProperties"] is False
        assert "/predict" in document["paths"] and "/models/cancer/invocations" in document["paths"]
        page = client.get("/docs")
        assert page.status_code == 200 and "swagger" in page.text.lower()
        assert _predict(client, fresh["records"][0]).status_code == 200
        metrics = client.get("/metrics")
        assert metrics.status_code == 200
        assert 'variant="champion"' in metrics.text
        assert client.get("/nothing").json()["error_code"] == "ENDPOINT_NOT_FOUND"
        unknown = client.post("/models/other/predict", json={"inputs": []})
        assert unknown.status_code == 404
