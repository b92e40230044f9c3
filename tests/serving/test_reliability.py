"""Reliability of ``tessera serve`` (issue 5, point 9), with real processes and real HTTP on
loopback: a minute of load at concurrency 32 on two workers with a canary routing and the
prediction log on (no error, flat memory, nothing lost on SIGTERM, metrics summed over the
workers); the API fuzzed from its own OpenAPI document (no 5xx, answers as documented); a slow
candidate in a canary rolled back by its p99 gate while the champion's latency stays low; and
a canary that bad client inputs cannot roll back, but the candidate's own failures do."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest

from support import (
    cancer_project,
    free_port,
    required_tool,
    serving_app,
    until,
    wait_ready,
)

#: The load: seconds of /predict at this many connections, then a quiet tail (slow /health
#: requests only) long enough for every /predict in flight to be answered before wrk stops.
LOAD_SECONDS = 60
CONNECTIONS = 32
TAIL_SECONDS = 15
#: RSS samples are compared from this point of the load on (start-up allocations are done).
SETTLED_SECONDS = 20
#: Most a worker's RSS may grow from the settled sample to the end of the load. Per request a
#: worker keeps only bounded state: the ids of its recent answers (for feedback metrics; at most
#: 100,000 of about 240 bytes each, so at most 24 MB even from empty, a few MB at this rate) and
#: the log rows waiting for the next flush (every 0.5 s here). Measured here: about 1 MB. A leak
#: of the request, the frame, the answer or the model's arrays, or log buffers that keep growing,
#: go far beyond it within 40 s of this load.
MAX_RSS_GROWTH_MB = 30


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """`cancer` version 1 (champion) and 2 (challenger), and rows to score; this module's own
    (the fuzzer promotes and aborts rollouts)."""
    from tessera.examples.breast_cancer_data import load_table
    from tessera.registry.models import project_registry

    project = cancer_project(tmp_path_factory.mktemp("reliability") / "proj", versions=2)
    registry = project_registry(project.root)
    _, pipeline = registry.load("cancer/1")
    features = [str(c) for c in pipeline.feature_names_in_]
    table = load_table()
    yield {
        "root": project.root,
        "registry": registry,
        "records": json.loads(table[features].to_json(orient="records")),
    }


@pytest.fixture
def fresh(project: dict[str, Any]) -> Iterator[dict[str, Any]]:
    """The project with version 1 as champion, 2 as challenger, no rollout, no log."""
    _reset(project)
    yield project
    _reset(project)


def _reset(project: dict[str, Any]) -> None:
    import shutil

    from tessera.serving.rollout import RolloutError, abort_rollout

    registry = project["registry"]
    registry.set_alias("cancer", "champion", "1")
    registry.set_alias("cancer", "challenger", "2")
    with contextlib.suppress(RolloutError):  # nothing running
        abort_rollout(registry.records, "cancer", reason="test clean-up")
    for log in ("predictions", "load-log"):
        shutil.rmtree(project["root"] / ".tessera" / log, ignore_errors=True)
    (project["root"] / "serving.yaml").unlink(missing_ok=True)


# --- load ----------------------------------------------------------------------------------------

SERVING_YAML = """
models: [{name: cancer}]
reload_seconds: 1
rollout:
  strategy: canary
  tick_seconds: 0.5
  canary:
    # one step that cannot finish during the test: the candidate answers half the traffic
    steps: [{traffic: 50, min_requests: 100000000, dwell_seconds: 86400}]
    max_p99_ms: 60000
prediction_log: {dir: .tessera/load-log, flush_seconds: 0.5}
"""

WRK_SCRIPT = """
local threads = {}
local bodies = {
%(bodies)s
}
local headers = {["Content-Type"] = "application/json"}

function setup(thread)
  -- wrk calls request() of the first thread once more, to check the request it builds
  thread:set("checked", #threads == 0 and 1 or 0)
  table.insert(threads, thread)
end

function init(args)
  sent, ok, health, health_ok, other, index, started = -checked, 0, 0, 0, 0, 0, os.time()
end

function request()
  if os.time() - started < %(seconds)d then
    index = index + 1
    sent = sent + 1
    return wrk.format("POST", "/predict", headers, bodies[index %% #bodies + 1])
  end
  health = health + 1
  return wrk.format("GET", "/health")
end

function delay()
  if os.time() - started < %(seconds)d then
    return 0
  end
  return 200
end

function response(status, headers, body)
  if status == 200 and headers["x-request-id"] ~= nil then
    ok = ok + 1
  elseif status == 200 and headers["content-length"] == "15" then
    health_ok = health_ok + 1
  else
    other = other + 1
  end
end

function done(summary, latency, requests)
  local sent, ok, health, health_ok, other = 0, 0, 0, 0, 0
  for _, thread in ipairs(threads) do
    sent = sent + thread:get("sent")
    ok = ok + thread:get("ok")
    health = health + thread:get("health")
    health_ok = health_ok + thread:get("health_ok")
    other = other + thread:get("other")
  end
  local e = summary.errors
  local file = io.open("%(out)s", "w")
  file:write(string.format(
    '{"requests": %%d, "connect": %%d, "read": %%d, "write": %%d, "status": %%d, ' ..
    '"timeout": %%d, "predict_sent": %%d, "predict_ok": %%d, "health_sent": %%d, ' ..
    '"health_ok": %%d, "other": %%d, ' ..
    '"p50_ms": %%.3f, "p99_ms": %%.3f}',
    summary.requests, e.connect, e.read, e.write, e.status, e.timeout, sent, ok, health,
    health_ok, other,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
  file:close()
end
"""


def _wrk_script(path: Path, records: list[dict[str, Any]], out: Path) -> Path:
    """A wrk script: ``LOAD_SECONDS`` of /predict (cycling through ``records``), then slow
    /health requests; it counts the /predict requests sent and answered with 200 (those carry
    an ``x-request-id``) and writes the totals to ``out`` as JSON."""
    bodies = ",\n".join(
        "[==[" + json.dumps({"inputs": [record]}) + "]==]" for record in records[:50]
    )
    path.write_text(WRK_SCRIPT % {"bodies": bodies, "seconds": LOAD_SECONDS, "out": out.as_posix()})
    return path


def _workers(pid: int) -> list[int]:
    """The uvicorn worker processes of the server ``pid`` (not multiprocessing's resource
    tracker)."""
    children: list[int] = []
    with contextlib.suppress(OSError):  # the server is gone
        for task in Path(f"/proc/{pid}/task").iterdir():
            with contextlib.suppress(OSError):
                children += [int(c) for c in (task / "children").read_text().split()]
    workers = []
    for child in children:
        with contextlib.suppress(OSError):
            if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
                workers.append(child)
    return sorted(workers)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for process {pid}")


class _RssSampler:
    """Samples the RSS of the worker processes of a server every ``every`` seconds."""

    def __init__(self, server: int, every: float = 2.0) -> None:
        self.server = server
        self.every = every
        self.samples: list[tuple[float, dict[int, float]]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        started = time.monotonic()
        while not self.stop.is_set():
            sample = {}
            for pid in _workers(self.server):
                with contextlib.suppress(OSError):
                    sample[pid] = _rss_mb(pid)
            self.samples.append((time.monotonic() - started, sample))
            self.stop.wait(self.every)

    def __enter__(self) -> _RssSampler:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)

    def trace(self) -> str:
        return "\n".join(
            f"{t:5.1f} s: " + ", ".join(f"[{pid}] {mb:.1f} MB" for pid, mb in sample.items())
            for t, sample in self.samples
        )


def _predict_counts(metrics_text: str) -> dict[str, float]:
    """``tessera_http_requests_total`` of route ``predict``, summed per status code."""
    from prometheus_client.parser import text_string_to_metric_families

    counts: dict[str, float] = {}
    for family in text_string_to_metric_families(metrics_text):
        for sample in family.samples:
            if sample.name == "tessera_http_requests_total" and (
                sample.labels.get("route") == "predict"
            ):
                code = sample.labels.get("code") or sample.labels.get("status", "")
                counts[code] = counts.get(code, 0) + sample.value
    return counts


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_a_minute_of_load_on_two_workers_no_error_flat_memory_nothing_lost(
    fresh: dict[str, Any], tmp_path: Path
) -> None:
    """`tessera serve --workers 2` with a canary routing half the traffic and the prediction
    log on, under wrk at concurrency 32 for a minute; then SIGTERM."""
    import requests

    from tessera.serving.predlog import read_predictions

    wrk = required_tool("wrk", "Debian package `wrk`")
    root: Path = fresh["root"]
    (root / "serving.yaml").write_text(SERVING_YAML.lstrip())
    tessera = str(Path(sys.executable).parent / "tessera")
    started = subprocess.run(
        [tessera, "rollout", "start", "--strategy", "canary", "--json", "-m", "load test"],
        cwd=root,
        capture_output=True,
        text=True,
    )
    assert started.returncode == 0, started.stdout + started.stderr
    rollout_id = json.loads(started.stdout)["id"]

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    out, err = tmp_path / "serve.out", tmp_path / "serve.err"
    env = {k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"}
    with out.open("wb") as stdout, err.open("wb") as stderr:
        server = subprocess.Popen(
            [tessera, "serve", "--workers", "2", "--port", str(port)],
            cwd=root,
            stdout=stdout,
            stderr=stderr,
            env=env,
            start_new_session=True,
        )
    try:
        session = requests.Session()
        wait_ready(lambda path: session.get(url + path, timeout=10), timeout=240)
        workers = until(lambda: w if len(w := _workers(server.pid)) == 2 else None, 60)
        # Both variants answer before the load starts (each worker loads the candidate when it
        # sees the rollout, within a tick of starting).
        warm_up, variants = 0, set()
        deadline = time.monotonic() + 120
        while variants != {"champion", "candidate"} or warm_up < 40:
            assert time.monotonic() < deadline, f"only {variants} answered"
            body = {"inputs": [fresh["records"][warm_up % 50]]}
            answer = session.post(url + "/predict", json=body, timeout=30)
            assert answer.status_code == 200, answer.text
            variants.add(answer.json()["model"]["variant"])
            warm_up += 1

        result = tmp_path / "wrk.json"
        script = _wrk_script(tmp_path / "load.lua", fresh["records"], result)
        command = [wrk, "-t", "2", "-c", str(CONNECTIONS), "-d", f"{LOAD_SECONDS + TAIL_SECONDS}s"]
        command += ["--timeout", "30s", "-s", str(script), url + "/"]
        with _RssSampler(server.pid) as rss:
            run = subprocess.run(command, capture_output=True, text=True, timeout=300)
        assert run.returncode == 0, run.stdout + run.stderr
        load = json.loads(result.read_text())
        metrics = session.get(url + "/metrics", timeout=30).text
        status = subprocess.run(
            [tessera, "rollout", "status", "--json"], cwd=root, capture_output=True, text=True
        )
    finally:
        if server.poll() is None:
            server.send_signal(signal.SIGTERM)
        try:
            code = server.wait(90)
        except subprocess.TimeoutExpired:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(30)
            raise AssertionError("the server did not stop within 90 s of SIGTERM") from None
    errors = err.read_text()
    assert code == 0, errors[-5000:]
    assert "Traceback" not in errors, errors[:5000]
    report = f"{load}\n{run.stdout}"
    print(report, f"metrics: {_predict_counts(metrics)}", rss.trace(), sep="\n")  # on failure

    # The same two workers all along: none hung, died or was replaced (uvicorn's supervisor
    # kills a worker that does not answer its health check within 5 s and starts another).
    assert all(list(sample) == workers for _, sample in rss.samples), rss.trace()

    # Zero errors: no socket error, no non-2xx answer, every /predict sent answered with 200.
    for kind in ("connect", "read", "write", "timeout", "status", "other"):
        assert load[kind] == 0, f"{kind} errors: {report}"
    assert load["predict_sent"] > 1000, report
    assert load["predict_ok"] == load["predict_sent"], report

    # Flat memory: each worker grows by less than MAX_RSS_GROWTH_MB once settled.
    settled = next(sample for t, sample in rss.samples if t >= SETTLED_SECONDS)
    last = [sample for t, sample in rss.samples if t <= LOAD_SECONDS][-1]
    for pid in workers:
        grown = last[pid] - settled[pid]
        assert grown < MAX_RSS_GROWTH_MB, f"worker {pid} grew {grown:.1f} MB:\n{rss.trace()}"

    # The metrics of both workers add up to every request sent, each answered with 200.
    answered = warm_up + load["predict_sent"]
    counts = _predict_counts(metrics)
    assert counts == {"200": answered}, (counts, answered)

    # Nothing lost on SIGTERM: one log row per answer (one row per request), all in the rollout.
    frame = read_predictions(root / ".tessera" / "load-log", "cancer")
    assert len(frame) == answered
    assert frame["request_id"].nunique() == answered
    assert set(frame["rollout_id"]) == {rollout_id}
    share = (frame["variant"] == "candidate").mean()
    assert 0.3 < share < 0.7, frame["variant"].value_counts()
    versions = frame.groupby("variant")["version"].unique().map(list).to_dict()
    assert versions == {"champion": ["1"], "candidate": ["2"]}, versions

    # The canary kept routing: still running at its only step.
    assert status.returncode == 0, status.stderr
    current = json.loads(status.stdout)
    rollout = current.get("rollout") or current
    assert rollout["id"] == rollout_id and rollout["state"] == "running", current

    # Nor any warning on stderr. (scikit-learn ensembles predicting on two threads of a process
    # race on its warning filters, which sklearn.utils.parallel resets around every task: once
    # they are lost, nearly every prediction prints a UserWarning, "`sklearn.utils.parallel.
    # delayed` should be used with `sklearn.utils.parallel.Parallel`...".)
    assert "Warning" not in errors, f"{errors.count('Warning')} warnings: {errors[:1500]}"


# --- fuzz ----------------------------------------------------------------------------------------

#: Examples per operation and generation mode (valid and invalid data).
FUZZ_EXAMPLES = 60
ADMIN_TOKEN = "fuzz-admin-token"


@pytest.mark.filterwarnings(  # the model is fed numbers beyond float32: it refuses them (422)
    "ignore:overflow encountered in cast:RuntimeWarning",
    "ignore:invalid value encountered in reduce:RuntimeWarning",
)
def test_fuzzed_from_its_own_openapi_document_without_a_server_error(
    fresh: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """schemathesis generates requests for every operation of ``/openapi.json``, valid and
    invalid, admin routes included (with the bearer token, and without it for invalid ones);
    none gets a 5xx, and every answer has a documented status, content type and body shape."""
    import requests
    import schemathesis

    monkeypatch.setenv("TESSERA_ADMIN_TOKEN", ADMIN_TOKEN)
    refusals = [400, 401, 403, 404, 405, 406, 409, 413, 415, 422, 428, 429, "5xx"]
    config = schemathesis.Config.from_dict(
        {
            "auth": {"openapi": {"bearer": {"bearer": ADMIN_TOKEN}}},
            # schemathesis' default refusals and 413: too many rows (or bytes) for one request
            "checks": {"negative_data_rejection": {"expected-statuses": refusals}},
        }
    )
    scoring = [f"POST {p}{r}" for p in ("", "/models/cancer") for r in ("/predict", "/invocations")]
    failures: list[str] = []
    statuses: dict[str, Counter[int]] = {}
    with_body: set[str] = set()  # operations with a request body
    with serving_app(fresh["root"], admin={"allow_localhost": False}) as client:
        client.wait_ready()
        schema = schemathesis.openapi.from_url(client.url + "/openapi.json", config=config)
        session = requests.Session()
        for result in schema.get_all_operations():
            operation = result.ok()
            seen = statuses.setdefault(operation.label, Counter())
            if len(operation.body):
                with_body.add(operation.label)
            for mode in schemathesis.GenerationMode:
                failure = _fuzz(operation, mode, client.url, session, seen)
                if failure is not None:
                    failures.append(f"{operation.label} ({mode.value} data):\n{failure}")
        # Still serving after that (the fuzzer started, promoted and aborted rollouts): a valid
        # request of each scoring route is answered as documented; its feedback is accepted.
        request_ids = []
        for label in scoring:
            method, path = label.split(" ")
            record = {"inputs" if "/predict" in path else "dataframe_records": fresh["records"][:2]}
            case = schema[path][method].Case(body=record, media_type="application/json")
            response = case.call(base_url=client.url, session=session, timeout=60)
            assert response.status_code == 200, (label, response.text)
            case.validate_response(response, checks=_checks(negative=False))
            request_ids += [response.json()["request_id"]] if "/predict" in path else []
        labels = [{"request_id": i, "labels": [0, 1]} for i in request_ids]
        assert client.post("/feedback", json={"feedback": labels}).status_code == 202
        beyond = {"request_id": request_ids[0], "row": 2**31 - 1, "labels": [0, 1]}
        assert client.post("/feedback", json=beyond).status_code == 422  # row is int32
    server = client.app.state.server  # stopped: both logs flushed
    for log in (server.predictions, server.feedback):  # no write failed in the background
        assert (log.write_errors, log.dropped_rows) == (0, 0), log.directory
        assert log.written_rows >= 4, log.directory
    assert not failures, "\n\n".join(failures)
    admin = ["GET /admin/models", "GET /admin/rollout", "POST /admin/reload"]
    admin += [f"POST /admin/rollout/{action}" for action in ("start", "promote", "abort")]
    other = ["POST /feedback", "GET /health", "GET /ready", "GET /metrics"]
    assert sorted(statuses) == sorted(scoring + admin + other)
    for label, seen in statuses.items():
        assert sum(seen.values()) >= (FUZZ_EXAMPLES if label in with_body else 1), (label, seen)
        assert all(code < 500 for code in seen), (label, seen)
    # The admin API was fuzzed past its token check, and without the token refused.
    assert statuses["GET /admin/models"][200] > 0, statuses["GET /admin/models"]
    assert statuses["GET /admin/models"][401] > 0, statuses["GET /admin/models"]


def _checks(*, negative: bool) -> list[Any]:
    """No 5xx; a documented status, content type and body; invalid data refused."""
    from schemathesis.checks import not_a_server_error
    from schemathesis.specs.openapi.checks import (
        content_type_conformance,
        negative_data_rejection,
        response_schema_conformance,
        status_code_conformance,
    )

    checks = [
        not_a_server_error,
        status_code_conformance,
        content_type_conformance,
        response_schema_conformance,
    ]
    return [*checks, negative_data_rejection] if negative else checks


def _fuzz(
    operation: Any, mode: Any, url: str, session: Any, seen: Counter[int]
) -> Exception | None:
    """Run ``FUZZ_EXAMPLES`` generated requests of one operation; the failure, if any.
    (Invalid requests of an operation without parameters or body do not exist: not a failure.)"""
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis.errors import Unsatisfiable

    checks = _checks(negative=mode.is_negative)

    @settings(
        max_examples=FUZZ_EXAMPLES,
        deadline=None,
        database=None,
        phases=[Phase.explicit, Phase.generate, Phase.shrink],
        suppress_health_check=list(HealthCheck),
    )
    @given(case=operation.as_strategy(generation_mode=mode))
    def fuzz(case: Any) -> None:
        response = case.call(base_url=url, session=session, timeout=60)
        seen[response.status_code] += 1
        case.validate_response(response, checks=checks)

    try:
        fuzz()
    except Unsatisfiable:
        if not mode.is_negative:
            raise
    except Exception as exc:
        return exc
    return None


# --- a slow candidate ----------------------------------------------------------------------------

#: The injected fault: version 2 takes this long to predict (a model gone slow; the rollout
#: machinery around it is real).
SLOW_SECONDS = 1.0
#: One step at 10%, judged after 30 candidate requests (its dwell is far longer than the test:
#: only a failed gate ends it), with a p99 gate at 200 ms.
SLOW_CANARY: dict[str, Any] = {
    "steps": [{"traffic": 10, "min_requests": 30, "dwell_seconds": 3600}],
    "max_p99_ms": 200,
}


class _Answer(NamedTuple):
    sent: float  # time.monotonic() when the request was sent...
    at: float  # ...and when its answer arrived
    status: int
    variant: str | None
    version: str | None
    seconds: float  # the latency the client saw


class _TimedLoad:
    """/predict from several threads until stopped; each answer kept with its variant, version
    and the latency the client saw."""

    def __init__(self, url: str, records: list[dict[str, Any]], threads: int = 6) -> None:
        import requests

        self.answers: list[_Answer] = []
        self.stop = threading.Event()

        def run(offset: int) -> None:
            session = requests.Session()
            i = offset
            while not self.stop.is_set():
                body = {"inputs": [records[i % len(records)]]}
                i += threads
                sent, started = time.monotonic(), time.perf_counter()
                answer = session.post(url + "/predict", json=body, timeout=60)
                seconds = time.perf_counter() - started
                model = answer.json().get("model", {}) if answer.status_code == 200 else {}
                self.answers.append(
                    _Answer(
                        sent,
                        time.monotonic(),
                        answer.status_code,
                        model.get("variant"),
                        model.get("version"),
                        seconds,
                    )
                )

        self.threads = [
            threading.Thread(target=run, args=(n,), daemon=True) for n in range(threads)
        ]

    def __enter__(self) -> _TimedLoad:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        for t in self.threads:
            t.join(60)


def _p99_ms(seconds: list[float]) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(seconds) * 1000, 99))


@dataclass
class _SlowCanary:
    """What a canary of a slow version 2 under load did."""

    rollout_id: str
    ended: float  # time.monotonic() when the store said the canary had ended
    state: str
    answers: list[_Answer]

    def candidate_times(self) -> list[float]:
        """When the candidate's answers arrived, in order."""
        return sorted(a.at for a in self.answers if a.variant == "candidate")


def _slow_canary(project: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> _SlowCanary:
    """A canary of version 2, made SLOW_SECONDS slow, under load from 6 clients until it ended
    and for 50 requests more."""
    from tessera.serving.rollout import rollout_status
    from tessera.serving.runtime import LoadedModel

    registry = project["registry"]
    real = LoadedModel.predict

    def slow(self: LoadedModel, frame: Any) -> Any:
        if self.version == "2":
            time.sleep(SLOW_SECONDS)
        return real(self, frame)

    monkeypatch.setattr(LoadedModel, "predict", slow)

    def state() -> str:  # from the metadata store, as `tessera rollout status` reads it
        status = rollout_status(registry.records, registry, "cancer", log_dir=None)
        return str(status["rollout"]["state"])

    with serving_app(project["root"], rollout={"canary": SLOW_CANARY}) as client:
        client.wait_ready()
        answer = client.post("/admin/rollout/start", json={"strategy": "canary", "reason": "t"})
        assert answer.status_code == 201, answer.text
        with _TimedLoad(client.url, project["records"]) as load:
            until(lambda: state() != "running", 180, "the end of the canary")
            ended = time.monotonic()
            until(lambda: sum(a.sent > ended + 1 for a in load.answers) >= 50, 60, "traffic")
    return _SlowCanary(answer.json()["id"], ended, state(), load.answers)


def test_slow_canary_is_rolled_back_by_its_p99_gate_and_the_champion_stays_fast(
    fresh: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Version 2 answers correctly but takes SLOW_SECONDS: the p99 gate rolls it back as soon as
    its step has the requests to judge, every client still gets its answer, the decision in the
    audit trail names the gate with the numbers that drove it, and the champion's latency, as
    its clients see it, stays far below the candidate's."""
    registry = fresh["registry"]
    run = _slow_canary(fresh, monkeypatch)
    assert run.state == "rolled_back"
    assert {a.status for a in run.answers} == {200}
    candidate = run.candidate_times()
    min_requests = SLOW_CANARY["steps"][0]["min_requests"]
    assert len(candidate) >= min_requests
    slow_ones = [a.seconds for a in run.answers if a.variant == "candidate"]
    assert min(slow_ones) >= SLOW_SECONDS  # the fault was in place
    # Judged as soon as the step had its requests (ticks are 0.2 s; generous for a busy box).
    judged = candidate[min_requests - 1]
    assert run.ended - judged < 15, run.ended - judged
    # Once rolled back, the champion (version 1) answers everything sent (a request sent before
    # may still be answered by the candidate, later).
    after = {(a.variant, a.version) for a in run.answers if a.sent > run.ended + 1}
    assert after == {("champion", "1")}

    # The decision: recorded once, naming the p99 gate with the numbers that drove it.
    assert registry.alias("cancer", "champion") == "1"
    events = registry.records.model_events("cancer")
    (event,) = [
        e
        for e in events
        if e["action"] == "rollout_rollback" and e["details"]["rollout_id"] == run.rollout_id
    ]
    details = event["details"]
    reason = event["reason"] or ""
    said = re.fullmatch(
        r"p99 latency gate failed at step 1/1 \(10%\): candidate p99 ([\d.]+) ms over (\d+) "
        r"requests \(max 200 ms; champion ([\d.]+) ms\)",
        reason,
    )
    assert said is not None, reason
    p99 = details["candidate"]["p99_ms"]
    assert p99 > SLOW_CANARY["max_p99_ms"] and abs(float(said[1]) - p99) <= 1, (p99, reason)
    assert int(said[2]) == details["candidate"]["requests"] >= min_requests, (details, reason)
    assert details["candidate"]["errors"] == 0
    assert details["thresholds"]["max_p99_ms"] == SLOW_CANARY["max_p99_ms"]
    assert details["thresholds"]["min_requests"] == min_requests
    assert abs(float(said[3]) - details["champion"]["p99_ms"]) <= 1, (details, reason)

    # The champion's clients never waited for a candidate request: their p99 while the canary
    # ran stays far below the candidate's latency. (Requests that waited behind candidate ones,
    # one in ten of all, would put it at SLOW_SECONDS or more; a busy 2-core box alone can push
    # it to a few hundred ms.)
    canary = (candidate[0], run.ended)
    during = [
        a.seconds for a in run.answers if canary[0] <= a.at <= canary[1] and a.variant == "champion"
    ]
    assert len(during) >= 100, len(during)
    assert _p99_ms(during) < SLOW_SECONDS * 1000 * 0.6, (_p99_ms(during), len(during))


# --- faulty clients, faulty candidates -----------------------------------------------------------


@pytest.mark.filterwarnings(  # the model is fed a number beyond float32: it refuses it (422)
    "ignore:overflow encountered in cast:RuntimeWarning",
    "ignore:invalid value encountered in reduce:RuntimeWarning",
)
def test_bad_inputs_do_not_roll_back_a_healthy_candidate_but_its_own_failures_do(
    fresh: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Inputs no model can score (a value beyond float32) get a 422 and are the client's fault:
    they never count against the canary's candidate. Inputs the champion scores but the
    candidate fails on are the candidate's failures: its error gate rolls it back, and the
    champion answers them."""
    from tessera.serving.rollout import rollout_status
    from tessera.serving.runtime import LoadedModel

    registry = fresh["registry"]
    canary = {"steps": [{"traffic": 50, "min_requests": 1000, "dwell_seconds": 3600}]}
    record = fresh["records"][0]

    def rollout() -> dict[str, Any]:
        return dict(rollout_status(registry.records, registry, "cancer", log_dir=None)["rollout"])

    with serving_app(fresh["root"], rollout={"canary": canary}) as client:
        client.wait_ready()
        assert client.post("/admin/rollout/start", json={"reason": "t"}).status_code == 201
        until(lambda: client.get("/admin/models").json()["cancer"]["candidate"] == "2")
        unscorable = {"inputs": [{**record, "mean_radius": 1e300}]}
        codes = Counter(client.post("/predict", json=unscorable).status_code for _ in range(60))
        assert codes == {422: 60}
        time.sleep(1)  # several ticks: the statistics are shared and judged
        assert rollout()["state"] == "running"

        real = LoadedModel.predict

        def failing(self: LoadedModel, frame: Any) -> Any:
            if self.version == "2":
                raise ValueError("the candidate cannot handle this")
            return real(self, frame)

        monkeypatch.setattr(LoadedModel, "predict", failing)
        answers = []
        while rollout()["state"] == "running" and len(answers) < 500:
            answers.append(client.post("/predict", json={"inputs": [record]}))
        assert {a.status_code for a in answers} == {200}
        assert {a.json()["model"]["version"] for a in answers} == {"1"}
    state = rollout()
    assert state["state"] == "rolled_back", state
    assert state["reason"].startswith("error rate gate failed"), state["reason"]
