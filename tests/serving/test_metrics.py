"""Prometheus metrics of `tessera serve`: values, worker processes summed, `promtool` lint, a real
Prometheus server scraping them, and the Grafana dashboard's queries."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
import timeit
import urllib.parse
import urllib.request
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tessera.serving.metrics import (
    CONTENT_TYPE,
    ENV_VAR,
    MetricsError,
    ServingMetrics,
    enable_multiprocess,
    mark_process_dead,
)

from support import free_port, required_tool

DASHBOARD = Path(__file__).resolve().parents[2] / "deploy" / "grafana" / "tessera-serving.json"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def _tool(name: str) -> str:
    return required_tool(name, "Debian: apt-get install prometheus")


@pytest.fixture
def promtool() -> str:
    return _tool("promtool")


@pytest.fixture
def prometheus() -> str:
    return _tool("prometheus")


@pytest.fixture
def multiprocess_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Multiprocess mode for this test (PROMETHEUS_MULTIPROC_DIR restored afterwards)."""
    directory = tmp_path / "metrics"
    monkeypatch.setenv(ENV_VAR, str(directory))  # remembered by monkeypatch, then replaced
    enable_multiprocess(directory)
    return directory


def samples(body: bytes) -> Samples:
    """(sample name, labels) -> value of a rendered text exposition."""
    out: Samples = {}
    for family in text_string_to_metric_families(body.decode()):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


def series(found: Samples, name: str, *labels: str) -> dict[tuple[str, ...], float]:
    """The samples called ``name``, keyed by the values of ``labels``."""
    return {
        tuple(dict(key)[label] for label in labels): v
        for (sample, key), v in found.items()
        if sample == name
    }


def exercise(metrics: ServingMetrics) -> None:
    """One call of every kind, so that every metric has samples."""
    metrics.request("iris", "3", "champion", "/predict", 200, 0.0012)
    metrics.request("iris", "4", "candidate", "/predict", 500, 0.3)
    with metrics.in_flight():
        pass
    metrics.predictions(
        "iris", "3", "champion", "classification", np.array([0, 1, 1]), np.array([0.2, 0.7, 0.9])
    )
    metrics.predictions("house", "1", "champion", "regression", np.array([12.5]), None)
    metrics.feedback("iris", "3", "champion", 2)
    metrics.quality("iris", "3", "champion", "accuracy", 0.95)
    metrics.rollout("iris", "canary", "running", 1, 5.0)
    metrics.log_rows("predictions", written=4, dropped=1)
    metrics.log_rows("feedback", written=2)
    metrics.model_info("iris", "3", "champion")


# -- values and names ---------------------------------------------------------------------------
def test_values_names_and_content_type() -> None:
    metrics = ServingMetrics()
    assert not metrics.multiprocess
    exercise(metrics)
    body, content_type = metrics.render()
    assert content_type == CONTENT_TYPE == "text/plain; version=0.0.4; charset=utf-8"
    found = samples(body)
    champion = {"model": "iris", "version": "3", "variant": "champion"}
    assert value(found, "tessera_http_requests_total", **champion, route="/predict", code="200")
    assert (
        value(
            found,
            "tessera_http_request_duration_seconds_bucket",
            model="iris",
            variant="candidate",
            route="/predict",
            le="0.25",
        )
        == 0
    )
    assert value(found, "tessera_http_requests_in_flight") == 0
    assert value(found, "tessera_predictions_total", **champion, **{"class": "1"}) == 2
    assert value(found, "tessera_prediction_probability_count", **champion) == 3
    assert value(found, "tessera_prediction_probability_bucket", **champion, le="0.7") == 2
    house = {"model": "house", "version": "1", "variant": "champion"}
    assert value(found, "tessera_prediction_value_bucket", **house, le="10.0") == 0
    assert value(found, "tessera_prediction_value_bucket", **house, le="25.0") == 1
    assert value(found, "tessera_feedback_total", **champion) == 2
    assert value(found, "tessera_online_quality", **champion, metric="accuracy") == 0.95
    assert value(found, "tessera_rollout_state", model="iris", strategy="canary", state="running")
    assert value(found, "tessera_rollout_step", model="iris") == 1
    assert value(found, "tessera_rollout_candidate_traffic_ratio", model="iris") == 0.05
    assert value(found, "tessera_prediction_log_rows_written_total", kind="predictions") == 4
    assert value(found, "tessera_prediction_log_rows_dropped_total", kind="predictions") == 1
    info = [k for k in found if k[0] == "tessera_model_info"]
    assert len(info) == 1 and dict(info[0][1])["loaded_at"].endswith("Z")
    names = {name for name, _ in found}
    assert all(n.startswith("tessera_") for n in names)
    assert not any(n.endswith("_created") for n in names)  # as in multiprocess mode


def test_instances_do_not_share_values() -> None:
    first, second = ServingMetrics(), ServingMetrics()
    first.request("iris", "3", "champion", "/predict", 200, 0.001)
    second.request("iris", "3", "champion", "/predict", 200, 0.001)
    second.request("iris", "3", "champion", "/predict", 200, 0.001)
    labels = {"model": "iris", "version": "3", "variant": "champion", "route": "/predict"}
    for metrics, expected in ((first, 1), (second, 2)):
        found = samples(metrics.render()[0])
        assert value(found, "tessera_http_requests_total", **labels, code="200") == expected


def test_classes_beyond_the_cap_count_as_other() -> None:
    metrics = ServingMetrics(max_classes=2)
    metrics.predictions(
        "m", "1", "champion", "classification", np.array(["a", "b", "c", "d", "a"]), None
    )
    metrics.predictions("m", "2", "candidate", "classification", np.array(["e"]), None)
    metrics.predictions("flag", "1", "champion", "classification", np.array([True, False]), None)
    found = samples(metrics.render()[0])
    classes = series(found, "tessera_predictions_total", "model", "version", "class")
    assert classes == {
        ("m", "1", "a"): 2,
        ("m", "1", "b"): 1,
        ("m", "1", "other"): 2,  # the cap is per model: version 2 gets no new class either
        ("m", "2", "other"): 1,
        ("flag", "1", "true"): 1,  # written as the feedback log writes labels
        ("flag", "1", "false"): 1,
    }


def test_batches_count_like_single_rows() -> None:
    rng = np.random.default_rng(7)
    probabilities = np.concatenate([rng.random(300), [0.0, 0.05, 0.5, 1.0, np.nan]])
    classes = rng.integers(0, 3, probabilities.size)
    values = np.concatenate([rng.normal(0, 300, 300), [-1e4, 0.0, 1.0, 1e5, 1e9, np.inf, np.nan]])
    batch, single = ServingMetrics(), ServingMetrics()
    batch.predictions("c", "1", "champion", "classification", classes, probabilities)
    batch.predictions("r", "1", "champion", "regression", values, None)
    for cls, probability in zip(classes, probabilities, strict=True):
        two_columns = np.array([[1 - probability, probability]])  # predict_proba's shape
        single.predictions("c", "1", "champion", "classification", np.array([cls]), two_columns)
    for v in values:
        single.predictions("r", "1", "champion", "regression", np.array([v]), None)
    a, b = samples(batch.render()[0]), samples(single.render()[0])
    assert a.keys() == b.keys()
    for key, v in a.items():
        if key[0].endswith("_sum"):
            assert v == pytest.approx(b[key])
        else:
            assert v == b[key], key


def test_rollout_state_and_model_info_follow_changes() -> None:
    metrics = ServingMetrics()
    metrics.rollout("iris", "canary", "running", 1, 5.0)
    metrics.rollout("iris", "canary", "promoted", 4, 100.0)
    found = samples(metrics.render()[0])
    state = series(found, "tessera_rollout_state", "strategy", "state")
    assert {pair for pair, v in state.items() if v} == {("canary", "promoted")}
    assert state[("canary", "running")] == 0
    assert value(found, "tessera_rollout_step", model="iris") == 4
    assert value(found, "tessera_rollout_candidate_traffic_ratio", model="iris") == 1.0
    metrics.rollout("iris", None, "none", 0, 0.0)
    metrics.rollout("iris", "ab", "paused", 0, 50.0)  # a state this module does not know
    state = series(samples(metrics.render()[0]), "tessera_rollout_state", "strategy", "state")
    assert {pair for pair, v in state.items() if v} == {("ab", "paused")}
    assert state[("none", "none")] == 0
    with pytest.raises(ValueError, match="percentage"):
        metrics.rollout("iris", "ab", "running", 0, 150.0)

    metrics.model_info("iris", "3", "champion")
    metrics.model_info("iris", "3", "champion")  # the same version: nothing changes
    metrics.model_info("iris", "5", "challenger")
    metrics.model_info("iris", "4", "champion")
    info = series(samples(metrics.render()[0]), "tessera_model_info", "version", "alias")
    assert info == {("3", "champion"): 0, ("4", "champion"): 1, ("5", "challenger"): 1}
    metrics.model_unloaded("iris", "challenger")  # the rollout ended
    metrics.model_unloaded("iris", "challenger")
    info = series(samples(metrics.render()[0]), "tessera_model_info", "version", "alias")
    assert info == {("3", "champion"): 0, ("4", "champion"): 1, ("5", "challenger"): 0}


# -- multiprocess mode --------------------------------------------------------------------------
def test_enable_multiprocess_cleans_only_metric_files(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "metrics"
    directory.mkdir()
    for name in ("counter_12.db", "gauge_livesum_12.db", "histogram_7.db", "notes.txt"):
        (directory / name).write_text("x")
    monkeypatch.setenv(ENV_VAR, "")
    enable_multiprocess(directory)
    assert os.environ[ENV_VAR] == str(directory.resolve())
    assert sorted(p.name for p in directory.iterdir()) == ["notes.txt"]
    assert ServingMetrics().multiprocess

    monkeypatch.setenv(ENV_VAR, str(tmp_path / "missing"))
    with pytest.raises(MetricsError, match="not a directory"):
        ServingMetrics()
    (tmp_path / "file").write_text("")
    with pytest.raises(MetricsError, match="cannot prepare the metrics directory"):
        enable_multiprocess(tmp_path / "file" / "metrics")


_WORKER = """
import contextlib, sys
import numpy as np
from tessera.serving.metrics import ServingMetrics

index = int(sys.argv[1])
metrics = ServingMetrics()
assert metrics.multiprocess
for _ in range(10 * (index + 1)):
    metrics.request("iris", "3", "champion", "/predict", 200, 0.001)
metrics.request("iris", "4", "candidate", "/predict", 500, 0.2)
metrics.predictions(
    "iris", "3", "champion", "classification", np.array([0, 1, 1]), np.array([0.1, 0.6, 0.9])
)
metrics.feedback("iris", "3", "champion", index + 1)
metrics.quality("iris", "3", "champion", "accuracy", 0.9)
metrics.rollout("iris", "canary", "running", 1, 5.0)
metrics.log_rows("predictions", written=100, dropped=index)
metrics.model_info("iris", "3", "champion")
with contextlib.ExitStack() as stack:
    for _ in range(index + 1):
        stack.enter_context(metrics.in_flight())
    print("ready", flush=True)
    sys.stdin.readline()
"""


def test_worker_processes_are_summed_exactly(multiprocess_dir: Path) -> None:
    """Three worker processes and the parent record into one directory; the parent's render
    reports their totals, the most recent quality and rollout state, and forgets the live
    gauges of workers that exited."""
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, str(i)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(3)
    ]
    try:
        for worker in workers:
            assert worker.stdout is not None
            if worker.stdout.readline().strip() != "ready":
                worker.kill()
                pytest.fail(f"a worker failed: {worker.communicate(timeout=10)[1]}")
        parent = ServingMetrics()  # prometheus_client was imported before the variable was set
        assert parent.multiprocess
        parent.request("iris", "3", "champion", "/predict", 200, 0.001)
        parent.quality("iris", "3", "champion", "accuracy", 0.5)  # newer than the workers' 0.9
        parent.rollout("iris", "canary", "promoted", 4, 100.0)
        with parent.in_flight():
            found = samples(parent.render()[0])
        champion = {"model": "iris", "version": "3", "variant": "champion"}
        ok = {**champion, "route": "/predict", "code": "200"}
        assert value(found, "tessera_http_requests_total", **ok) == 10 + 20 + 30 + 1
        failed = {"model": "iris", "version": "4", "variant": "candidate", "route": "/predict"}
        assert value(found, "tessera_http_requests_total", **failed, code="500") == 3
        latency = {"model": "iris", "route": "/predict"}
        fast = "tessera_http_request_duration_seconds_bucket"
        assert value(found, fast, **latency, variant="champion", le="0.001") == 61
        assert value(found, fast, **latency, variant="candidate", le="0.1") == 0
        assert value(found, fast, **latency, variant="candidate", le="0.25") == 3
        count = "tessera_http_request_duration_seconds_count"
        assert value(found, count, **latency, variant="champion") == 61
        assert value(found, "tessera_http_requests_in_flight") == 1 + 2 + 3 + 1
        assert value(found, "tessera_predictions_total", **champion, **{"class": "1"}) == 6
        assert value(found, "tessera_prediction_probability_count", **champion) == 9
        assert value(found, "tessera_feedback_total", **champion) == 6
        assert value(found, "tessera_online_quality", **champion, metric="accuracy") == 0.5
        state = series(found, "tessera_rollout_state", "strategy", "state")
        assert {pair for pair, v in state.items() if v} == {("canary", "promoted")}
        assert value(found, "tessera_rollout_step", model="iris") == 4
        assert value(found, "tessera_prediction_log_rows_written_total", kind="predictions") == 300
        assert value(found, "tessera_prediction_log_rows_dropped_total", kind="predictions") == 3
        info = series(found, "tessera_model_info", "version", "alias")
        assert info == {("3", "champion"): 1}

        for worker in workers:
            assert worker.stdin is not None
            worker.stdin.write("\n")
            worker.stdin.flush()
            assert worker.wait(30) == 0
        mark_process_dead(workers[0].pid)  # the others: forgotten by render itself
        assert not list(multiprocess_dir.glob(f"gauge_live*_{workers[0].pid}.db"))
        found = samples(parent.render()[0])
        assert value(found, "tessera_http_requests_in_flight") == 0
        assert value(found, "tessera_http_requests_total", **ok) == 61  # counters stay
        assert series(found, "tessera_model_info", "version") == {}
        assert value(found, "tessera_online_quality", **champion, metric="accuracy") == 0.5
        assert series(found, "tessera_rollout_step", "model") == {("iris",): 4}
    finally:
        for worker in workers:
            if worker.poll() is None:
                worker.kill()
            worker.communicate(timeout=10)


def test_both_modes_expose_the_same_series(multiprocess_dir: Path) -> None:
    multi = ServingMetrics()
    os.environ.pop(ENV_VAR)  # restored by the fixture's monkeypatch
    exercise(multi)  # still into its own directory
    assert {p.name.split("_")[0] for p in multiprocess_dir.iterdir()} == {
        "counter",
        "histogram",
        "gauge",
    }
    single = ServingMetrics()
    exercise(single)
    assert multi.multiprocess and not single.multiprocess

    def series_of(metrics: ServingMetrics) -> set[tuple[str, frozenset[tuple[str, str]]]]:
        return {
            (name, frozenset((k, v) for k, v in labels if k != "loaded_at"))
            for name, labels in samples(metrics.render()[0])
        }

    assert series_of(multi) == series_of(single)
    # predictions may be negative: no _sum (OpenMetrics), in either mode
    assert not any(name == "tessera_prediction_value_sum" for name, _ in series_of(multi))


@pytest.mark.parametrize("mode", ["single", "multi"])
def test_promtool_finds_no_problems(
    mode: str, promtool: str, request: pytest.FixtureRequest
) -> None:
    if mode == "multi":
        request.getfixturevalue("multiprocess_dir")
    metrics = ServingMetrics()
    assert metrics.multiprocess == (mode == "multi")
    exercise(metrics)
    body = metrics.render()[0]
    result = subprocess.run(
        [promtool, "check", "metrics"], input=body, capture_output=True, timeout=30
    )
    assert result.returncode == 0, (result.stdout + result.stderr).decode()
    assert not (result.stdout + result.stderr).strip(), (result.stdout + result.stderr).decode()


@pytest.mark.parametrize(("mode", "budget_us"), [("single", 15.0), ("multi", 40.0)])
def test_the_request_path_is_cheap(
    mode: str, budget_us: float, request: pytest.FixtureRequest
) -> None:
    """request() + predictions() of a 1-row request, best of 5 runs of 20,000."""
    if mode == "multi":
        request.getfixturevalue("multiprocess_dir")
    metrics = ServingMetrics()
    predictions, probabilities = np.array([1]), np.array([0.73])

    def one_request() -> None:
        metrics.request("iris", "3", "champion", "/predict", 200, 0.0012)
        metrics.predictions("iris", "3", "champion", "classification", predictions, probabilities)

    one_request()
    cost = min(timeit.repeat(one_request, number=20_000, repeat=5)) / 20_000 * 1e6
    print(f"{mode}-process request() + predictions(): {cost:.1f} us")
    assert cost < budget_us


# -- a real Prometheus server -------------------------------------------------------------------
class _Exporter:
    """``GET /metrics`` of a ServingMetrics, served by http.server on a loopback port."""

    def __init__(self, metrics: ServingMetrics) -> None:
        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                body, content_type = metrics.render()
                self.send_response(200 if self.path == "/metrics" else 404)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.address = f"127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> _Exporter:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def prometheus_server(prometheus: str, tmp_path: Path) -> Iterator[tuple[str, Path, Any]]:
    """A factory starting Prometheus (own port and storage, 1 s scrapes) on given targets."""
    started: list[subprocess.Popen[bytes]] = []

    def start(target: str) -> str:
        config = tmp_path / "prometheus.yml"
        config.write_text(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: tessera\n"
            f"    static_configs:\n      - targets: ['{target}']\n"
        )
        port = free_port()
        log = (tmp_path / "prometheus.log").open("wb")
        started.append(
            subprocess.Popen(
                [
                    prometheus,
                    f"--config.file={config}",
                    f"--storage.tsdb.path={tmp_path / 'data'}",
                    f"--web.listen-address=127.0.0.1:{port}",
                    "--log.level=warn",
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        )
        return f"http://127.0.0.1:{port}"

    try:
        yield start, tmp_path / "prometheus.log", started
    finally:
        for process in started:
            process.terminate()
            try:
                process.wait(10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(10)


def _query(base: str, promql: str) -> float | None:
    """The single value of an instant query, or None when it has none yet."""
    url = f"{base}/api/v1/query?{urllib.parse.urlencode({'query': promql})}"
    with urllib.request.urlopen(url, timeout=5) as response:
        answer = json.load(response)
    result = answer["data"]["result"]
    return float(result[0]["value"][1]) if len(result) == 1 else None


def test_a_real_prometheus_scrapes_the_metrics(
    prometheus_server: tuple[Any, Path, list[subprocess.Popen[bytes]]],
) -> None:
    start, log, processes = prometheus_server
    metrics = ServingMetrics()
    for _ in range(7):
        metrics.request("iris", "3", "champion", "/predict", 200, 0.002)
    total = 'sum(tessera_http_requests_total{model="iris", code="200"})'
    with _Exporter(metrics) as exporter:
        base = start(exporter.address)
        deadline = time.monotonic() + 30
        expected, seen = 7.0, None
        while True:
            if processes[0].poll() is not None:
                pytest.fail(f"prometheus exited: {log.read_text()}")
            try:
                up = _query(base, 'up{job="tessera"}')
                seen = _query(base, total)
            except OSError:  # not listening yet
                up = None
            if up == 1 and seen == expected:
                if expected == 10:
                    break
                for _ in range(3):  # later requests show up at the next scrapes
                    metrics.request("iris", "3", "champion", "/predict", 200, 0.002)
                expected = 10.0
            if time.monotonic() > deadline:
                pytest.fail(f"after 30 s: up={up}, {total}={seen} (expected {expected})")
            time.sleep(0.2)
        quantile = _query(
            base,
            "histogram_quantile(0.5, sum by (le) (tessera_http_request_duration_seconds_bucket))",
        )
        assert quantile is not None and 0.0015 < quantile <= 0.002


# -- the Grafana dashboard ----------------------------------------------------------------------
def _dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text()))


def _exprs(dashboard: dict[str, Any]) -> list[str]:
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for variable in dashboard["templating"]["list"]:
        if variable["type"] == "query":
            exprs.append(variable["definition"])
    return exprs


def test_dashboard_is_a_grafana_dashboard_on_a_templated_prometheus() -> None:
    dashboard = _dashboard()
    assert dashboard["uid"] and dashboard["title"] and isinstance(dashboard["schemaVersion"], int)
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    datasource = {"type": "prometheus", "uid": "${datasource}"}
    assert variables["model"]["datasource"] == datasource
    ids, cells = set(), set()
    for panel in dashboard["panels"]:
        assert panel["id"] not in ids
        ids.add(panel["id"])
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24
        x, y, w, h = grid["x"], grid["y"], grid["w"], grid["h"]
        area = {(column, row) for column in range(x, x + w) for row in range(y, y + h)}
        assert not area & cells, f"panel {panel['title']!r} overlaps another"
        cells |= area
        if panel["type"] == "row":
            continue
        assert panel["title"] and panel["targets"], panel
        assert panel["datasource"] == datasource, panel["title"]
        refs = [t["refId"] for t in panel["targets"]]
        assert len(refs) == len(set(refs))
        for target in panel["targets"]:
            assert target["datasource"] == datasource and target["expr"].strip()
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    topics = "request rate, error ratio, p99, in flight, class, probability, quality, rollout state"
    for topic in [*topics.split(", "), "canary step", "traffic", "dropped"]:
        assert topic in titles, topic


def test_dashboard_queries_name_existing_metrics() -> None:
    metrics = ServingMetrics()
    exercise(metrics)
    found = samples(metrics.render()[0])
    sample_names = {name for name, _ in found}
    used = {n for expr in _exprs(_dashboard()) for n in re.findall(r"\btessera_\w+", expr)}
    assert used and used <= sample_names, used - sample_names
    families = {f.name for f in text_string_to_metric_families(metrics.render()[0].decode())}
    unused = {f for f in families if not any(n.startswith(f) for n in used)}
    assert not unused, f"metrics without a panel: {unused}"


def test_dashboard_queries_are_valid_promql(promtool: str, tmp_path: Path) -> None:
    grafana = {"$__rate_interval": "1m", "$__range": "1h", "$model": ".*"}
    rules = []
    for i, expr in enumerate(_exprs(_dashboard())):
        if expr.startswith("label_values("):
            continue
        for variable, replacement in grafana.items():
            expr = expr.replace(variable, replacement)
        assert "$" not in expr, expr
        rules.append({"record": f"dashboard:query_{i}", "expr": expr})
    path = tmp_path / "rules.yml"  # YAML is a superset of JSON
    path.write_text(json.dumps({"groups": [{"name": "dashboard", "rules": rules}]}))
    result = subprocess.run(
        [promtool, "check", "rules", str(path)], capture_output=True, text=True, timeout=30
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_deploy_readme_lists_every_metric() -> None:
    metrics = ServingMetrics()
    exercise(metrics)
    families = text_string_to_metric_families(metrics.render()[0].decode())
    names = {f.name + ("_total" if f.type == "counter" else "") for f in families}
    readme = (DASHBOARD.parents[1] / "README.md").read_text()
    assert set(re.findall(r"^\| `(tessera_\w+)` \|", readme, re.MULTILINE)) == names
