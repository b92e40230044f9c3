"""Serving: ``tessera serve`` vs ``mlflow models serve`` vs a bare Starlette endpoint, under wrk.

One run, on loopback, with the same registered model (a scikit-learn ``StandardScaler`` +
``LogisticRegression`` pipeline on the 30 numeric features of the breast-cancer table) and the
same number of worker processes (2) for every server:

- ``mlflow models serve`` (the peer) from its own virtualenv ``bench/.venv-mlflow``: the MLflow
  version of ``uv.lock``, the scikit-learn, skops, numpy, pandas, httptools and uvloop versions
  of the project's virtualenv, ``--env-manager local``, ``models:/cancer@champion`` from the
  project's embedded registry;
- a bare Starlette endpoint (the ceiling, ``bench/serving/bare.py``): orjson in, DataFrame,
  ``predict``, orjson out, under uvicorn with httptools and uvloop; its ``/noop`` route, which
  parses the body and answers a constant, is the floor of HTTP and JSON without the model;
- ``tessera serve`` with its default configuration (no ``serving.yaml``);
- ``tessera serve`` in its "full" configuration: a canary rollout of a second registered version
  running (``tessera rollout start``), metrics and the prediction log on.

Every server is started and checked to answer the expected prediction, each endpoint is warmed
up, then wrk (``bench/serving/post.lua``, the same one-row JSON body every request) loads the
endpoints in turns, several rounds in a rotating order so that outside load falls on all alike:
throughput and latency at concurrency 16, then latency with a single client; medians over the
rounds are reported. Any failed request fails the run. Targets (issue 5): throughput at c16 at
least 10x ``mlflow models serve`` (both on ``/invocations``, ``dataframe_split``) with p99 at
most 10 ms; single-client p50 at most 1 ms; the full configuration at least 60% of the bare
endpoint's throughput.

Run from the repository root: ``.venv/bin/python bench/serving/run.py [--duration S]
[--wait-idle S]``. It prints a Markdown table and rewrites the ``serving`` section of
``bench/RESULTS.md`` after a run of every server without error. ``--profile S`` then samples
``tessera serve`` with py-spy (installed into ``bench/.venv-pyspy``) under the same load and
prints where its time goes. Scratch files go to ``bench/work/serving/``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

from harness import (
    BASE_ENV,
    BenchError,
    Load,
    Server,
    brief,
    combine,
    ensure_venv,
    ensure_wrk,
    http,
    pyspy_record,
    run,
    say,
    summarize_profile,
    venv_versions,
    wrk,
)

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
REPO = BENCH.parent
WORK = BENCH / "work" / "serving"
PROJECT = WORK / "project"
#: A copy of PROJECT for the full configuration: its rollout must reach no other server.
FULL_PROJECT = WORK / "project-full"
PREDICTIONS = Path(".tessera") / "predictions"
PYTHON = Path(sys.executable)
TESSERA = PYTHON.with_name("tessera")
MLFLOW_VENV = BENCH / ".venv-mlflow"
PYSPY_VENV = BENCH / ".venv-pyspy"
PYSPY_PIN = "py-spy==0.4.3"
#: Installed into bench/.venv-mlflow at the versions of the project's virtualenv (with mlflow).
PEER_PACKAGES = ("scikit-learn", "skops", "numpy", "pandas", "httptools", "uvloop")
VENV_PYTHON = os.environ.get("BENCH_VENV_PYTHON", sys.executable)

MODEL = "cancer"
WORKERS = 2
CONCURRENCY = 16
CHAMPION_C, CHALLENGER_C = 1.0, 0.1
CANARY_TRAFFIC = 25.0
TARGET_SPEEDUP = 10.0
TARGET_P99_MS = 10.0
TARGET_SINGLE_P50_MS = 1.0
TARGET_FULL_SHARE = 0.6
SERVERS = ("mlflow", "bare", "tessera", "full")
MARK_BEGIN, MARK_END = "<!-- bench:serving -->", "<!-- /bench:serving -->"

SPEC = """\
task: classification
target: target
estimator:
  class: sklearn.linear_model.LogisticRegression
  params: {{C: {c}, max_iter: 1000}}
preprocessing:
  numbers: {{type: numeric, impute: none, scale: standard}}
metrics: [roc_auc, accuracy]
seed: 7
"""

PIPELINE = """\
stages:
  raw:    {uses: read_table, with: {path: data/cancer.csv}}
  split:  {uses: train_test_split, inputs: [raw], with: {strategy: stratified, target: target}}
  model:  {uses: train, inputs: [split.train], with: {spec: models/champion.yaml}}
  registered:
    uses: register
    inputs: [model, split.test]
    with: {name: cancer, gate: {min: {roc_auc: 0.8}}, bootstrap: {samples: 0}}
"""

#: Added for a second run: a second version, registered as `challenger` (not promoted).
CHALLENGER_STAGES = """\
  challenger_model: {uses: train, inputs: [split.train], with: {spec: models/challenger.yaml}}
  challenger:
    uses: register
    inputs: [challenger_model, split.test]
    with: {name: cancer, promote: false, fail_on_gate: false, bootstrap: {samples: 0}}
"""

#: The full configuration: a canary that stays in its first step through the run (gates that
#: cannot fire within minutes), the prediction log on, the admin API for loopback.
FULL_SERVING = f"""\
models: [{{name: {MODEL}, alias: champion}}]
rollout:
  strategy: canary
  candidate: challenger
  tick_seconds: 1.0
  canary:
    steps:
      - {{traffic: {CANARY_TRAFFIC:g}, min_requests: 1000000000, dwell_seconds: 86400}}
      - {{traffic: 100, min_requests: 1000000000, dwell_seconds: 86400}}
    max_error_rate: 1.0
    max_p99_ms: 100000
prediction_log: {{enabled: true, flush_rows: 5000, flush_seconds: 5.0}}
admin: {{allow_localhost: true}}
"""


def _pipeline_bench() -> ModuleType:
    """``bench/pipeline/run.py``, for its helpers (idle wait, RESULTS.md sections)."""
    path = BENCH / "pipeline" / "run.py"
    spec = importlib.util.spec_from_file_location("bench_pipeline_run", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


HELPERS = _pipeline_bench()


# -- the project and its two registered versions -----------------------------------------------


@dataclass
class Model:
    """The registered versions and the benchmark's request: what to send, what must come back."""

    columns: list[str]
    expected: list[Any]
    champion: str
    challenger: str
    native_body: Path
    mlflow_body: Path
    pipeline: Any
    frame: Any


@contextlib.contextmanager
def chdir(path: Path) -> Iterator[None]:
    old = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(old)


def make_project() -> Model:
    """A fresh project with ``cancer`` v1 (champion) and v2 (challenger) registered, and a copy
    of it for the full configuration."""
    from tessera.examples.breast_cancer_data import load_table

    shutil.rmtree(PROJECT, ignore_errors=True)
    (PROJECT / "models").mkdir(parents=True)
    (PROJECT / "data").mkdir()
    (PROJECT / "tessera.yaml").write_text("name: serving-bench\n")
    (PROJECT / "models" / "champion.yaml").write_text(SPEC.format(c=CHAMPION_C))
    (PROJECT / "models" / "challenger.yaml").write_text(SPEC.format(c=CHALLENGER_C))
    table = load_table()
    table.to_csv(PROJECT / "data" / "cancer.csv", index=False, lineterminator="\n")
    say(f"training and registering {MODEL} in {PROJECT.relative_to(REPO)} ...")
    (PROJECT / "pipeline.yaml").write_text(PIPELINE)
    run([TESSERA, "run"], PROJECT)
    (PROJECT / "pipeline.yaml").write_text(PIPELINE + CHALLENGER_STAGES)
    run([TESSERA, "run"], PROJECT)

    from tessera.cli.model_cmds import open_registry

    with chdir(PROJECT):
        registry = open_registry()
        champion, challenger = registry.alias(MODEL), registry.alias(MODEL, "challenger")
        _, pipeline = registry.load(f"{MODEL}@champion")
    if champion is None or challenger is None or champion == challenger:
        raise BenchError(f"expected a champion and a challenger, got {champion}, {challenger}")
    columns = [str(c) for c in pipeline.feature_names_in_]
    row = [float(x) for x in table[columns].iloc[0]]
    split = {"columns": columns, "data": [row]}
    native, mlflow = WORK / "body-native.json", WORK / "body-mlflow.json"
    native.write_text(json.dumps(split))
    mlflow.write_text(json.dumps({"dataframe_split": split}))
    shutil.rmtree(FULL_PROJECT, ignore_errors=True)
    shutil.copytree(PROJECT, FULL_PROJECT)
    frame = table[columns].head(1).reset_index(drop=True)
    expected = pipeline.predict(frame).tolist()
    return Model(columns, expected, champion, challenger, native, mlflow, pipeline, frame)


def predict_cost(model: Model, rounds: int = 10, calls: int = 100) -> dict[str, dict[int, float]]:
    """Milliseconds of one ``predict`` call in this process, for 1 and 16 rows (the best of
    ``rounds`` rounds of ``calls`` calls): of the pipeline itself (what the bare endpoint and
    MLflow call) and of its compiled form (what ``tessera serve`` calls)."""
    import pandas as pd

    from tessera.serving.compiled import compile_pipeline

    scorers = {
        "pipeline": model.pipeline,
        "compiled": compile_pipeline(model.pipeline, model.frame),
    }
    frames = {n: pd.concat([model.frame] * n, ignore_index=True) for n in (1, 16)}
    best = {kind: {n: float("inf") for n in frames} for kind in scorers}
    for _ in range(rounds):
        for kind, scorer in scorers.items():
            for n, frame in frames.items():
                start = time.perf_counter()
                for _ in range(calls):
                    scorer.predict(frame)
                best[kind][n] = min(best[kind][n], (time.perf_counter() - start) / calls * 1000)
    return best


# -- the servers ---------------------------------------------------------------------------------


def tessera_env(**extra: str) -> dict[str, str]:
    return {**BASE_ENV, **extra}


def mlflow_server() -> Server:
    """``mlflow models serve`` from its venv: that venv first on PATH (MLflow runs ``uvicorn``
    from PATH), the project's embedded registry as tracking server, nothing of our venv."""
    dropped = ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "MLFLOW_REGISTRY_URI")
    env = {k: v for k, v in BASE_ENV.items() if k not in dropped}
    env["PATH"] = f"{MLFLOW_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(MLFLOW_VENV)
    env["MLFLOW_TRACKING_URI"] = f"sqlite:///{PROJECT / '.tessera' / 'mlflow.db'}"
    cmd: list[str | Path] = [MLFLOW_VENV / "bin" / "mlflow", "models", "serve"]
    cmd += ["-m", f"models:/{MODEL}@champion", "--env-manager", "local"]
    cmd += ["--workers", str(WORKERS), "--host", "127.0.0.1", "--port", "{port}"]
    return Server("mlflow", cmd, PROJECT, env, WORK)


def bare_server() -> Server:
    cmd: list[str | Path] = [PYTHON, HERE / "bare.py", "--workers", str(WORKERS)]
    cmd += ["--port", "{port}", "--model", f"{MODEL}@champion"]
    return Server("bare", cmd, PROJECT, tessera_env(), WORK)


def tessera_server(name: str, project: Path, **env: str) -> Server:
    cmd: list[str | Path] = [TESSERA, "serve", "--host", "127.0.0.1", "--port", "{port}"]
    cmd += ["--workers", str(WORKERS)]
    return Server(name, cmd, project, tessera_env(**env), WORK)


def rollout_missing() -> str | None:
    """None when ``tessera rollout`` exists, else why the full configuration is skipped."""
    proc = subprocess.run(
        [TESSERA, "rollout", "--help"], capture_output=True, check=False, env=BASE_ENV
    )
    if proc.returncode != 0:
        return "not available yet: this tessera has no `tessera rollout` command"
    return None


def start_default(stack: contextlib.ExitStack, name: str = "tessera") -> Server:
    """``tessera serve`` in PROJECT, without ``serving.yaml``."""
    (PROJECT / "serving.yaml").unlink(missing_ok=True)
    shutil.rmtree(PROJECT / PREDICTIONS, ignore_errors=True)
    server = tessera_server(name, PROJECT)
    stack.callback(server.stop)
    return server.start().wait_ready("/ready")


def start_full(model: Model, stack: contextlib.ExitStack, name: str = "full") -> Server:
    """``tessera serve`` in FULL_PROJECT with FULL_SERVING and a canary running, once the
    candidate answers. The project is a copy, so that the rollout (whose state lives in the
    project's metadata store) reaches no other server.

    Raises:
        BenchError: the rollout did not start, or its candidate never answered.
    """
    (FULL_PROJECT / "serving.yaml").write_text(FULL_SERVING)
    shutil.rmtree(FULL_PROJECT / PREDICTIONS, ignore_errors=True)
    token = secrets.token_hex(16)
    server = tessera_server(name, FULL_PROJECT, TESSERA_ADMIN_TOKEN=token)
    stack.callback(server.stop)
    server.start().wait_ready("/ready")
    cli_env = tessera_env(TESSERA_ADMIN_TOKEN=token)
    start: list[str | Path] = [TESSERA, "rollout", "start", MODEL, "--strategy", "canary"]
    run([*start, "--reason", "bench/serving/run.py"], FULL_PROJECT, cli_env)
    stack.callback(abort_rollout, cli_env)
    # the workers load the candidate within a tick: wait for its version in an answer
    deadline = time.monotonic() + 120
    while True:
        answer = json.loads(check_answer(server, "/predict", model.native_body, None))
        if str(answer.get("model", {}).get("version")) == model.challenger:
            return server
        if time.monotonic() > deadline:
            raise BenchError(
                f"the canary's candidate (v{model.challenger}) never answered in 120 s; "
                f"the end of {server.log_path}:\n{server.log_tail()}"
            )
        time.sleep(0.05)


def abort_rollout(env: dict[str, str]) -> None:
    """End the benchmark's rollout (a warning when that fails: the next start would refuse)."""
    cmd = [str(TESSERA), "rollout", "abort", MODEL, "--reason", "bench/serving/run.py is done"]
    proc = subprocess.run(
        cmd, cwd=FULL_PROJECT, env=env, capture_output=True, text=True, check=False
    )
    if proc.returncode != 0:
        say(f"warning: `{' '.join(cmd)}` failed: {proc.stderr.strip()[-500:]}")


# -- measurements --------------------------------------------------------------------------------


@dataclass
class Endpoint:
    """One server and route under load: its wrk runs, and what was seen of it."""

    key: str
    server: str
    route: str
    body: str
    c16_runs: list[Load] = field(default_factory=list)
    c1_runs: list[Load] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def c16(self) -> Load | None:
        return combine(self.c16_runs) if self.c16_runs else None

    @property
    def c1(self) -> Load | None:
        return combine(self.c1_runs) if self.c1_runs else None


@dataclass
class Contender:
    """A running server, the endpoints measured on it (each with its body), and what to do
    once the load is over (note what is seen, stop the server)."""

    server: Server
    endpoints: list[tuple[Endpoint, Path]]
    finish: Callable[[], None] | None = None


@dataclass
class Options:
    duration: float
    rounds: int
    warmup: float
    threads: int


def check_answer(server: Server, path: str, body: Path, expected: list[Any] | None) -> bytes:
    """POST the benchmark's body once: a 200 with ``predictions`` (equal to ``expected``).

    Raises:
        BenchError: another status, or other predictions.
    """
    status, answer = http("POST", server.url(path), body.read_bytes(), timeout=30)
    if status != 200:
        raise BenchError(f"{server.name} {path} answered {status}: {answer[:500]!r}")
    got = json.loads(answer).get("predictions")
    if not isinstance(got, list) or len(got) != 1 or (expected is not None and got != expected):
        raise BenchError(
            f"{server.name} {path} answered {answer[:300]!r}; expected predictions {expected}"
        )
    return answer


def predictions_by_variant(directory: Path) -> str:
    """Rows of the prediction log by variant and version, e.g. ``champion v1 812 rows``."""
    files = list((directory / "predictions").rglob("*.parquet")) if directory.is_dir() else []
    if not files:
        return "nothing written"
    import duckdb

    try:
        rows = duckdb.execute(
            "SELECT variant, version, count(*) FROM read_parquet(?, hive_partitioning=true, "
            "union_by_name=true) GROUP BY ALL ORDER BY 3 DESC",
            [[str(f) for f in files]],
        ).fetchall()
    except duckdb.Error as exc:
        return f"{len(files)} files that DuckDB cannot read ({exc})"
    return ", ".join(f"{variant} v{version} {n:,} rows" for variant, version, n in rows)


def metrics_summary(server: Server) -> str:
    status, body = http("GET", server.url("/metrics"))
    if status != 200:
        return f"`/metrics` answered {status or 'nothing'}"
    samples = [ln for ln in body.decode(errors="replace").splitlines() if ln and ln[0] != "#"]
    return f"`/metrics` answered 200 with {len(samples)} samples"


def mlflow_contender(model: Model, stack: contextlib.ExitStack) -> Contender:
    server = mlflow_server()
    stack.callback(server.stop)
    server.start().wait_ready("/ping")
    check_answer(server, "/invocations", model.mlflow_body, model.expected)
    ep = Endpoint("mlflow", "`mlflow models serve`", "/invocations", "`dataframe_split`")
    return Contender(server, [(ep, model.mlflow_body)])


def bare_contender(model: Model, stack: contextlib.ExitStack) -> Contender:
    server = bare_server()
    stack.callback(server.stop)
    server.start().wait_ready("/ready")
    check_answer(server, "/predict", model.native_body, model.expected)
    status, answer = http("POST", server.url("/noop"), model.native_body.read_bytes())
    if status != 200:
        raise BenchError(f"bare /noop answered {status}: {answer[:300]!r}")
    floor = Endpoint("floor", "bare Starlette, no model (HTTP floor)", "/noop", "split")
    ep = Endpoint("bare", "bare Starlette (ceiling)", "/predict", "split")
    return Contender(server, [(floor, model.native_body), (ep, model.native_body)])


def tessera_contender(model: Model, stack: contextlib.ExitStack) -> Contender:
    server = start_default(stack)
    check_answer(server, "/predict", model.native_body, model.expected)
    check_answer(server, "/invocations", model.mlflow_body, model.expected)
    native = Endpoint("tessera", "`tessera serve`, default", "/predict", "split")
    inv = Endpoint("tessera-inv", "`tessera serve`, default", "/invocations", "`dataframe_split`")

    def finish() -> None:
        observed = metrics_summary(server)
        server.stop()  # the prediction log is flushed on shutdown
        native.notes.append(
            f"Seen with no `serving.yaml`: {observed}; the prediction log (both routes, "
            f"warm-ups included): {predictions_by_variant(PROJECT / PREDICTIONS)}"
        )

    return Contender(server, [(native, model.native_body), (inv, model.mlflow_body)], finish)


def full_contender(model: Model, stack: contextlib.ExitStack) -> Contender:
    server = start_full(model, stack)
    ep = Endpoint("full", "`tessera serve`, full", "/predict", "split")

    def finish() -> None:
        status = subprocess.run(
            [TESSERA, "rollout", "status", MODEL],
            cwd=FULL_PROJECT,
            env=BASE_ENV,
            capture_output=True,
            text=True,
            check=False,
        )
        observed = metrics_summary(server)
        server.stop()
        log = predictions_by_variant(FULL_PROJECT / PREDICTIONS)
        ep.notes.append(f"{observed}; the prediction log (warm-ups included): {log}")
        summary = status.stdout.split("\u250f", 1)[0]  # up to its table of variants
        ep.notes.append("`tessera rollout status` after the load: " + " ".join(summary.split()))

    return Contender(server, [(ep, model.native_body)], finish)


def bench(model: Model, chosen: list[str], opts: Options) -> dict[str, Endpoint]:
    """Start the chosen servers, warm each endpoint up, then load them in turns.

    All servers run through the whole measurement, idle but for their own turns; each round
    gives every endpoint one wrk run of ``opts.duration`` seconds, in an order rotated from
    round to round, so that load from outside the benchmark falls on all of them alike.
    """
    starters: dict[str, Callable[[Model, contextlib.ExitStack], Contender]] = {
        "mlflow": mlflow_contender,
        "bare": bare_contender,
        "tessera": tessera_contender,
        "full": full_contender,
    }
    eps: dict[str, Endpoint] = {}
    with contextlib.ExitStack() as stack:  # every server stopped, every rollout ended
        contenders: list[Contender] = []
        for name in SERVERS:
            if name not in chosen:
                continue
            missing = rollout_missing() if name == "full" else None
            if missing:
                say(f"full configuration {missing}")
                eps["full"] = Endpoint("full", "`tessera serve`, full", "/predict", "split")
                eps["full"].notes.append(missing)
                continue
            contenders.append(starters[name](model, stack))
        turns = [(c.server, ep, body) for c in contenders for ep, body in c.endpoints]
        for server, ep, body in turns:
            eps[ep.key] = ep
            for attempt in range(3):  # again while a warm-up sees errors (a worker loading)
                warm = wrk(server, ep.route, body, CONCURRENCY, opts.threads, opts.warmup)
                if not warm.failed:
                    break
                ep.notes.append(f"warm-up {attempt + 1} had {warm.failed} failed requests")
                time.sleep(2)
        for clients, threads in ((CONCURRENCY, opts.threads), (1, 1)):
            for r in range(opts.rounds):
                shift = r % max(len(turns), 1)
                for server, ep, body in turns[shift:] + turns[:shift]:
                    load = wrk(server, ep.route, body, clients, threads, opts.duration)
                    (ep.c16_runs if clients > 1 else ep.c1_runs).append(load)
                    say(f"  round {r + 1} {ep.key} {ep.route} c{clients}: {brief(load)}")
        for contender in contenders:
            if contender.finish is not None:
                contender.finish()
    order = ["mlflow", "floor", "bare", "tessera", "tessera-inv", "full"]
    return dict(sorted(eps.items(), key=lambda kv: order.index(kv[0])))


def profile(model: Model, seconds: float, opts: Options, full: bool) -> str:
    """Sample every process of ``tessera serve`` with py-spy for ``seconds`` at c16."""
    ensure_venv(PYSPY_VENV, [PYSPY_PIN], VENV_PYTHON)
    name = "profile-full" if full else "profile"
    with contextlib.ExitStack() as stack:
        server = start_full(model, stack, name) if full else start_default(stack, name)
        wrk(server, "/predict", model.native_body, CONCURRENCY, opts.threads, opts.warmup)
        raw = WORK / f"{name}.txt"
        raw.unlink(missing_ok=True)
        spy = pyspy_record(PYSPY_VENV / "bin" / "py-spy", server, seconds, raw)
        time.sleep(1)  # py-spy attached
        load = wrk(server, "/predict", model.native_body, CONCURRENCY, opts.threads, seconds)
        out = spy.communicate(timeout=seconds + 60)[0].decode(errors="replace")
    if not raw.is_file():
        raise BenchError(f"py-spy wrote no profile:\n{out[-2000:]}")
    label = "full configuration" if full else "default configuration"
    return f"{label}, /predict under py-spy: {brief(load)}\n" + summarize_profile(raw)


# -- report --------------------------------------------------------------------------------------


def machine(load_at_start: tuple[float, ...], busy_at_start: float) -> dict[str, str]:
    cpu = platform.processor() or "?"
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    import tessera

    try:
        commit = HELPERS.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO)
        dirty = HELPERS.check_output(["git", "status", "--porcelain"], cwd=REPO)
        commit += " + uncommitted changes" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    source = Path(tessera.__file__).resolve().parent
    if not source.is_relative_to(REPO / "src"):
        commit += f", imported from {source}"
    wrk_version = subprocess.run(["wrk", "--version"], capture_output=True, text=True).stdout
    peer = venv_versions(MLFLOW_VENV, ["mlflow", "uvicorn"]) if MLFLOW_VENV.exists() else {}

    def versions(*names: str) -> str:
        found = []
        for name in names:
            try:
                found.append(importlib.metadata.version(name))
            except importlib.metadata.PackageNotFoundError:
                found.append("-")
        return " / ".join(found)

    return {
        "CPU": f"{cpu}, nproc {os.cpu_count()}",
        "OS": platform.platform(),
        "Load average (1/5/15 min) at start / end": (
            f"{'/'.join(f'{x:.2f}' for x in load_at_start)} / "
            f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}"
        ),
        "CPUs busy just before the run": f"{busy_at_start:.0%}",
        "Python": platform.python_version(),
        "tessera": f"{tessera.__version__} (git {commit})",
        "scikit-learn / skops / numpy / pandas (both venvs)": versions(
            "scikit-learn", "skops", "numpy", "pandas"
        ),
        "uvicorn / starlette / orjson / httptools / uvloop": versions(
            "uvicorn", "starlette", "orjson", "httptools", "uvloop"
        ),
        "mlflow / uvicorn (bench/.venv-mlflow)": (
            f"{peer.get('mlflow', '?')} / {peer.get('uvicorn', '?')}"
        ),
        "wrk": " ".join(wrk_version.split()[:2]) or "?",
    }


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def _ms(x: float) -> str:
    return f"{x:.2f} ms"


def results_table(eps: dict[str, Endpoint]) -> str:
    rows = [
        "| Server (2 workers each) | Route, body | Req/s at c16 | p50 at c16 | p99 at c16 "
        "| p50, single client | Req/s, single client | Server CPU per request at c16 "
        "| Others' CPU use at c16 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    for ep in eps.values():
        if ep.c16 is None or ep.c1 is None:
            reason = "; ".join(ep.notes) or "not run"
            rows.append(f"| {ep.server} | `{ep.route}`, {ep.body} | {reason} | | | | | | |")
            continue
        rows.append(
            f"| {ep.server} | `{ep.route}`, {ep.body} | {ep.c16.rps:,.0f} | "
            f"{_ms(ep.c16.p50_ms)} | {_ms(ep.c16.p99_ms)} | {_ms(ep.c1.p50_ms)} | "
            f"{ep.c1.rps:,.0f} | {_ms(ep.c16.cpu_ms_per_request)} | {ep.c16.others_cpu:.0%} |"
        )
    return "\n".join(rows)


def targets_table(eps: dict[str, Endpoint]) -> str:
    def load(key: str, which: str = "c16") -> Load | None:
        ep = eps.get(key)
        return None if ep is None else getattr(ep, which)

    rows = ["| Target | Measured | Result |", "| --- | --- | --- |"]
    peer, inv, pred = load("mlflow"), load("tessera-inv"), load("tessera")
    if peer and inv and pred:
        ratio = inv.rps / peer.rps
        rows.append(
            f"| throughput at c16 >= {TARGET_SPEEDUP:g}x `mlflow models serve` (both "
            f"`/invocations`, `dataframe_split`) | {ratio:.1f}x ({inv.rps:,.0f} vs "
            f"{peer.rps:,.0f} req/s); `/predict` {pred.rps / peer.rps:.1f}x | "
            f"{verdict(ratio >= TARGET_SPEEDUP)} |"
        )
    if inv and pred:
        rows.append(
            f"| p99 at c16 <= {TARGET_P99_MS:g} ms (`tessera serve`, default) | "
            f"`/predict` {_ms(pred.p99_ms)}, `/invocations` {_ms(inv.p99_ms)} | "
            f"{verdict(max(inv.p99_ms, pred.p99_ms) <= TARGET_P99_MS)} |"
        )
    one_pred, one_inv = load("tessera", "c1"), load("tessera-inv", "c1")
    if one_pred and one_inv:
        rows.append(
            f"| single-client p50 <= {TARGET_SINGLE_P50_MS:g} ms (`tessera serve`, default) | "
            f"`/predict` {_ms(one_pred.p50_ms)}, `/invocations` {_ms(one_inv.p50_ms)} | "
            f"{verdict(max(one_pred.p50_ms, one_inv.p50_ms) <= TARGET_SINGLE_P50_MS)} |"
        )
    bare, full, full_ep = load("bare"), load("full"), eps.get("full")
    goal = f"full configuration >= {TARGET_FULL_SHARE:.0%} of the bare endpoint at c16"
    if bare and full:
        share = full.rps / bare.rps
        rows.append(
            f"| {goal} | {share:.0%} ({full.rps:,.0f} vs {bare.rps:,.0f} req/s) | "
            f"{verdict(share >= TARGET_FULL_SHARE)} |"
        )
    elif full_ep is not None:
        why = "the bare endpoint was not run" if full else "; ".join(full_ep.notes)
        rows.append(f"| {goal} | {why or 'not measured'} | - |")
    if inv and pred and bare:
        rows.append(
            f"| (reported) `tessera serve`, default, vs the bare endpoint at c16 | "
            f"`/predict` {pred.rps / bare.rps:.0%}, `/invocations` {inv.rps / bare.rps:.0%} | - |"
        )
    if pred and full:
        rows.append(
            f"| (reported) the full configuration vs `tessera serve`, default, at c16: what "
            f"canary routing, rollout statistics and the prediction log cost | "
            f"{full.rps / pred.rps:.0%} ({full.rps:,.0f} vs {pred.rps:,.0f} req/s) | - |"
        )
    return "\n".join(rows)


def section(
    eps: dict[str, Endpoint],
    model: Model,
    opts: Options,
    info: dict[str, str],
    minutes: float,
    cost: dict[str, dict[int, float]],
) -> str:
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine_rows = "\n".join(f"| {k} | {v} |" for k, v in info.items())
    measured = [ep for ep in eps.values() if ep.c16 is not None and ep.c1 is not None]
    notes = "".join(
        f"\n- **{ep.server}, `{ep.route}`.** " + " ".join(n.rstrip(".") + "." for n in ep.notes)
        for ep in measured
        if ep.notes
    )

    def rates(runs: list[Load]) -> str:
        return ", ".join(f"{load.rps:,.0f}" for load in runs)

    raw = "; ".join(
        f"{ep.key} `{ep.route}`: c16 {rates(ep.c16_runs)} req/s, p90 {_ms(ep.c16.p90_ms)}, "
        f"max {_ms(ep.c16.max_ms)}, {ep.c16.requests:,} requests, CPUs used by the server "
        f"{ep.c16.server_cpu:.0%} and wrk {ep.c16.wrk_cpu:.0%}; single client "
        f"{rates(ep.c1_runs)} req/s, p99 {_ms(ep.c1.p99_ms)}"
        for ep in measured
        if ep.c16 is not None and ep.c1 is not None
    )
    return f"""{MARK_BEGIN}
## Serving: `tessera serve` vs `mlflow models serve` vs a bare endpoint (`bench/serving/run.py`)

Run on {now}, {minutes:.1f} minutes in all, with:

```
{COMMAND}
```

| Machine | |
| --- | --- |
{machine_rows}

{results_table(eps)}

{targets_table(eps)}

- **Model.** `{MODEL}` v{model.champion} (`@champion`): scikit-learn `StandardScaler` +
  `LogisticRegression` (C={CHAMPION_C:g}) on the {len(model.columns)} numeric features of the
  breast-cancer table, as Tessera's `train` builds it (a `ColumnTransformer` around the scaler),
  registered by `tessera run` in `bench/work/serving/project` (skops format, embedded MLflow
  registry). v{model.challenger} (C={CHALLENGER_C:g}, `@challenger`) is the canary's candidate.
  Every server answers the expected prediction ({model.expected}) for the benchmark's row
  before it is loaded.
- **The model's own cost.** `predict` of that pipeline on the benchmark's one-row DataFrame
  takes {cost["pipeline"][1]:.2f} ms in the benchmark's process ({cost["pipeline"][16]:.2f} ms
  for 16 rows; best of 10 rounds of 100 calls, measured just before the servers): a fixed cost
  per call, mostly scikit-learn's and pandas' checks around a `ColumnTransformer` on a
  DataFrame, so 2 cores fit at most about {2000 / cost["pipeline"][1]:,.0f} one-row predictions
  per second before any HTTP work. This is what MLflow and the bare endpoint call. `tessera
  serve` calls the pipeline's compiled form (`tessera.serving.compiled`, checked bit for bit
  against scikit-learn at load): {cost["compiled"][1]:.2f} ms for 1 row,
  {cost["compiled"][16]:.2f} ms for 16.
- **Servers**, {WORKERS} worker processes each, on 127.0.0.1:
  `mlflow models serve -m models:/{MODEL}@champion --env-manager local --workers {WORKERS}`
  from `bench/.venv-mlflow` (uvicorn, with httptools and uvloop installed as in Tessera's
  venv); `bench/serving/bare.py` (Starlette under uvicorn with httptools and uvloop: orjson
  parse, one float64 array as `pandas.DataFrame`, `predict` on the event loop, orjson answer;
  the model downloaded and hash-checked from the registry and loaded with skops, as `tessera
  serve` does; its `/noop` parses the same body and answers a constant, the floor of HTTP and
  JSON alone); `tessera serve --workers {WORKERS}` without `serving.yaml` (default); and
  `tessera serve` in a copy of the project (so that its rollout reaches no other server) with
  a `serving.yaml` running a canary ({CANARY_TRAFFIC:g}% of requests to the candidate, gates
  loose enough that the rollout stays in its first step through the run while its statistics
  and gates are still computed every `tick_seconds`), metrics and the prediction log on.
- **Load.** wrk with `bench/serving/post.lua`: every request POSTs the same one-row body
  ({len(model.columns)} features): Tessera's native split form
  (`{{"columns": [...], "data": [[...]]}}`) to `/predict`, the same table as
  `{{"dataframe_split": ...}}` to `/invocations` for MLflow and for Tessera, so that the
  comparison with MLflow uses one protocol. All servers run through the whole measurement,
  idle but in their turns. Each endpoint is warmed up (`wrk -t{opts.threads} -c{CONCURRENCY}
  -d{opts.warmup:g}s`), then {opts.rounds} rounds give every endpoint one `wrk
  -t{opts.threads} -c{CONCURRENCY} -d{opts.duration:g}s --latency` run each, in an order
  rotated from round to round so that load from outside falls on all alike; then {opts.rounds}
  rounds of `wrk -t1 -c1 -d{opts.duration:g}s --latency` (single client). The tables give the
  median over the rounds of each rate and percentile. wrk shares the 2 cores with the servers.
  Any non-2xx answer or socket error fails the run. "Server CPU per request" is the CPU time
  of the server's processes during its c16 runs divided by their requests; "others' CPU use"
  is the share of both cores that processes other than the server and wrk used meanwhile
  (both from `/proc`): the noise on the run. For scale, the issue quotes `mlflow models
  serve` at about 220 req/s with p99 about 225 ms, and a bare endpoint at about 3,400 req/s,
  on this kind of machine.{notes}
- **Raw.** {raw}.
{MARK_END}"""


#: The command line as typed from the repository root, for RESULTS.md.
COMMAND = " ".join([".venv/bin/python", "bench/serving/run.py", *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--duration", type=float, default=10, metavar="S", help="seconds of each wrk run"
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=3,
        metavar="N",
        help="wrk runs per endpoint and concurrency, in turns with the other endpoints",
    )
    parser.add_argument(
        "--warmup", type=float, default=5, metavar="S", help="seconds of warm-up per endpoint"
    )
    parser.add_argument(
        "--wrk-threads", type=int, default=1, help=f"wrk threads of the c{CONCURRENCY} runs"
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="S",
        help="first wait up to S seconds for the CPUs to be idle (< 15%% busy for 15 s)",
    )
    parser.add_argument(
        "--servers",
        default=",".join(SERVERS),
        help=f"a comma-separated subset of {','.join(SERVERS)}; RESULTS.md is only updated "
        "by a run of all of them",
    )
    parser.add_argument(
        "--profile",
        type=float,
        default=0,
        metavar="S",
        help=f"then sample `tessera serve` (default and full configurations) with py-spy for "
        f"S seconds each at c{CONCURRENCY}",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    chosen = [s.strip() for s in args.servers.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SERVERS))
    if unknown:
        parser.error(f"unknown servers: {', '.join(unknown)} (choose from {', '.join(SERVERS)})")
    opts = Options(args.duration, max(args.rounds, 1), args.warmup, args.wrk_threads)

    ensure_wrk()
    WORK.mkdir(parents=True, exist_ok=True)
    if "mlflow" in chosen:
        pins = [f"mlflow=={locked_mlflow_version()}", *local_pins(PEER_PACKAGES)]
        ensure_venv(MLFLOW_VENV, pins, VENV_PYTHON)
    model = make_project()
    if args.wait_idle:
        HELPERS.wait_idle(args.wait_idle)
    busy = HELPERS.cpu_busy(3.0)
    load_at_start = os.getloadavg()
    cost = predict_cost(model)
    for kind, ms in cost.items():
        say(f"{kind} predict in process: {ms[1]:.2f} ms for 1 row, {ms[16]:.2f} ms for 16")
    if busy > 0.15:
        say(f"warning: the CPUs are {busy:.0%} busy before the run; numbers will be noisy")
    started = time.perf_counter()
    eps = bench(model, chosen, opts)
    minutes = (time.perf_counter() - started) / 60
    text = section(eps, model, opts, machine(load_at_start, busy), minutes, cost)
    print(text)
    failures = [
        f"{ep.key} {ep.route} c{load.connections}: {load.failed} failed requests {load.errors}"
        for ep in eps.values()
        for load in (ep.c16, ep.c1)
        if load is not None and load.failed
    ]
    if failures:
        raise BenchError("requests failed under load:\n" + "\n".join(failures))
    if args.no_write or set(chosen) != set(SERVERS):
        say("bench/RESULTS.md left alone (a partial run, or --no-write)")
    else:
        HELPERS.MARK_BEGIN, HELPERS.MARK_END = MARK_BEGIN, MARK_END  # type: ignore[attr-defined]
        HELPERS.write_results(text)
        say("bench/RESULTS.md updated")
    if args.profile:
        texts = [profile(model, args.profile, opts, full=False)]
        if rollout_missing() is None:
            texts.append(profile(model, args.profile, opts, full=True))
        summary = "\n\n".join(texts)
        (WORK / "profile-summary.txt").write_text(summary)
        say(f"\nWhere `tessera serve` spends its time at c{CONCURRENCY} (py-spy):\n{summary}")
    return 0


def locked_mlflow_version() -> str:
    """MLflow's version in ``uv.lock``."""
    found = re.search(
        r'^name = "mlflow"\nversion = "([^"]+)"', (REPO / "uv.lock").read_text(), re.MULTILINE
    )
    if not found:
        raise BenchError("uv.lock has no mlflow package")
    return found.group(1)


def local_pins(names: tuple[str, ...]) -> list[str]:
    """``name==version`` of packages installed in this virtualenv."""
    try:
        return [f"{name}=={importlib.metadata.version(name)}" for name in names]
    except importlib.metadata.PackageNotFoundError as exc:
        raise BenchError(f"{exc.name} is not installed in {sys.prefix}: `make install`") from exc


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(1)
