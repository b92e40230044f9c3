"""Tuning: Tessera's ``tune`` stage vs the hand-written Optuna + MLflow loop, and trials in
parallel.

Measured (whole processes, ``time.perf_counter`` around ``subprocess.run``, fresh projects and
fresh SQLite files every time):

1. overhead: ``tessera run`` of a project whose ``tune`` stage runs 40 TPE trials (3-fold CV of
   a small random forest on a 6,000 x 20 synthetic table, each trial a nested MLflow run,
   the best refit and logged), against ``bench/tuning/handwritten.py`` doing the same by hand
   with the same seed; median of several runs, interleaved. Target: at most 1.2x the time.
2. parallel trials: the same project with a model whose trials take most of a second
   (histogram gradient boosting, fixed number of iterations), ``n_jobs: 2`` (processes) vs
   ``n_jobs: 1``. Target: at least 1.7x faster on 2 cores.

Run from the repository root with ``.venv/bin/python bench/tuning/run.py`` (both sides use the
project's virtualenv: MLflow, Optuna and scikit-learn are already there). It prints a Markdown
table and rewrites the ``tuning`` section of ``bench/RESULTS.md``. Scratch projects go to
``bench/work/tuning/``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib.util
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from types import ModuleType
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
REPO = BENCH.parent
WORK = BENCH / "work" / "tuning"
DATA = WORK / "table.csv"
PYTHON = Path(sys.executable)
TESSERA = PYTHON.with_name("tessera")

ROWS, FEATURES, SEED = 6_000, 20, 0
OVERHEAD_TRIALS, OVERHEAD_REPEATS = 40, 5
PARALLEL_TRIALS, PARALLEL_REPEATS = 120, 3
TARGET_OVERHEAD = 1.2
TARGET_SPEEDUP = 1.7
MARK_BEGIN, MARK_END = "<!-- bench:tuning -->", "<!-- /bench:tuning -->"
#: One thread per process on both sides: parallelism comes from trial workers only.
THREADS = {v: "1" for v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")}

FOREST_SPEC = f"""\
task: classification
target: target
estimator:
  class: sklearn.ensemble.RandomForestClassifier
  params: {{n_estimators: 15}}
preprocessing:
  numbers: {{type: numeric, impute: median, scale: none}}
metrics: [roc_auc]
seed: {SEED}
search_space:
  max_depth: {{type: int, low: 2, high: 12}}
  min_samples_leaf: {{type: int, low: 1, high: 20}}
"""

BOOSTING_SPEC = f"""\
task: classification
target: target
estimator:
  class: sklearn.ensemble.HistGradientBoostingClassifier
  params: {{max_iter: 60, early_stopping: false}}
preprocessing:
  numbers: {{type: numeric, impute: median, scale: none}}
metrics: [roc_auc]
seed: {SEED}
search_space:
  learning_rate: {{type: float, low: 0.01, high: 0.3, log: true}}
  l2_regularization: {{type: float, low: 0.0, high: 10.0}}
"""

PIPELINE = """\
stages:
  raw:   {{uses: read_table, with: {{path: data/table.csv}}}}
  model: {{uses: tune, inputs: [raw], with: {{spec: models/bench.yaml, {options}}}}}
"""


def _pipeline_bench() -> ModuleType:
    """``bench/pipeline/run.py``, for its helpers (timed runs, idle wait, RESULTS.md sections)."""
    path = BENCH / "pipeline" / "run.py"
    spec = importlib.util.spec_from_file_location("bench_pipeline_run", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


HELPERS = _pipeline_bench()


def env() -> dict[str, str]:
    return {**os.environ, **THREADS, "PYTHONHASHSEED": "0"}


def write_data() -> None:
    import pandas as pd
    from sklearn.datasets import make_classification

    X, y = make_classification(
        n_samples=ROWS,
        n_features=FEATURES,
        n_informative=8,
        n_redundant=4,
        flip_y=0.05,
        class_sep=0.8,
        random_state=SEED,
    )
    WORK.mkdir(parents=True, exist_ok=True)
    table = pd.DataFrame(X, columns=[f"f{i:02d}" for i in range(FEATURES)])
    table["target"] = y
    table.to_csv(DATA, index=False)


def make_project(name: str, spec: str, options: str) -> Path:
    """A fresh Tessera project: the table (a hard link), the spec, a two-stage pipeline."""
    root = WORK / name
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    (root / "models").mkdir()
    os.link(DATA, root / "data" / "table.csv")
    (root / "tessera.yaml").write_text("name: bench\n")
    (root / "models" / "bench.yaml").write_text(spec)
    (root / "pipeline.yaml").write_text(PIPELINE.format(options=options))
    return root


def run_tessera(name: str, spec: str, options: str) -> dict[str, Any]:
    root = make_project(name, spec, options)
    run = HELPERS.run_timed([TESSERA, "run", "--json"], root, env())
    stages = {s["stage"]: s for s in json.loads(run.stdout)["stages"]}
    log = sorted((root / ".tessera" / "logs").glob("*/model.log"))[-1].read_text()
    import optuna

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    url = f"sqlite:///{root / '.tessera' / 'optuna.db'}"
    (study_name,) = optuna.study.get_all_study_names(url)
    study = optuna.load_study(study_name=study_name, storage=url)
    return {
        "seconds": run.seconds,
        "stage_s": stages["model"]["seconds"],
        "trials": len(study.trials),
        "states": sorted({t.state.name for t in study.trials}),
        "best_value": study.best_value,
        "best_params": study.best_params,
        "log": log,
    }


def run_handwritten(trials: int, *extra: str) -> dict[str, Any]:
    cmd = [PYTHON, HERE / "handwritten.py", "--data", DATA, "--trials", str(trials), *extra]
    run = HELPERS.run_timed(cmd, WORK, env())
    result: dict[str, Any] = json.loads(run.stdout.strip().splitlines()[-1])
    result["seconds"] = run.seconds
    return result


def bench_overhead(repeats: int) -> dict[str, Any]:
    tessera: list[dict[str, Any]] = []
    hand: list[dict[str, Any]] = []
    options = f"trials: {OVERHEAD_TRIALS}, cv: 3, pruner: none"
    for i in range(repeats):
        order = ["tessera", "hand"] if i % 2 == 0 else ["hand", "tessera"]
        for side in order:
            if side == "tessera":
                tessera.append(run_tessera("overhead", FOREST_SPEC, options))
            else:
                hand.append(run_handwritten(OVERHEAD_TRIALS))
            print(
                f"overhead {i + 1}/{repeats} {side}: "
                f"{(tessera if side == 'tessera' else hand)[-1]['seconds']:.2f} s",
                flush=True,
            )
    inferred = run_handwritten(OVERHEAD_TRIALS, "--infer-requirements")
    print(f"overhead: hand-written with inferred requirements {inferred['seconds']:.2f} s")
    return {"tessera": tessera, "hand": hand, "inferred": inferred}


def bench_parallel(repeats: int) -> dict[str, Any]:
    runs: dict[int, list[dict[str, Any]]] = {1: [], 2: []}
    for i in range(repeats):
        for jobs in (1, 2) if i % 2 == 0 else (2, 1):
            options = f"trials: {PARALLEL_TRIALS}, cv: 3, pruner: none, n_jobs: {jobs}"
            runs[jobs].append(run_tessera(f"parallel-{jobs}", BOOSTING_SPEC, options))
            print(
                f"parallel {i + 1}/{repeats} n_jobs={jobs}: {runs[jobs][-1]['seconds']:.2f} s",
                flush=True,
            )
    return {"n1": runs[1], "n2": runs[2]}


# -- report ---------------------------------------------------------------------------------------


def machine(load_at_start: tuple[float, ...]) -> dict[str, str]:
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import mlflow
    import optuna
    import sklearn

    import tessera

    try:
        commit = HELPERS.check_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO)
        dirty = HELPERS.check_output(["git", "status", "--porcelain"], cwd=REPO)
        commit += " + uncommitted changes" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return {
        "CPU": f"{cpu}, nproc {os.cpu_count()}",
        "OS": platform.platform(),
        "Load average (1/5/15 min) at start / end": (
            f"{'/'.join(f'{x:.2f}' for x in load_at_start)} / "
            f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}"
        ),
        "Python": platform.python_version(),
        "tessera": f"{tessera.__version__} (git {commit})",
        "optuna / mlflow / scikit-learn": (
            f"{optuna.__version__} / {mlflow.__version__} / {sklearn.__version__}"
        ),
    }


def median(runs: list[dict[str, Any]], key: str = "seconds") -> float:
    return statistics.median(r[key] for r in runs)


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def results_table(over: dict[str, Any], par: dict[str, Any]) -> str:
    t, h = median(over["tessera"]), median(over["hand"])
    n1, n2 = median(par["n1"]), median(par["n2"])
    rows = [
        ("Measurement", "Baseline", "Tessera", "Ratio", "Target", "Result"),
        ("---", "---:", "---:", "---:", "---", "---"),
        (
            f"1. {OVERHEAD_TRIALS} trials + refit + MLflow, whole process "
            f"(median of {len(over['tessera'])})",
            f"{h:.2f} s (hand-written)",
            f"{t:.2f} s",
            f"{t / h:.2f}x the time",
            f"<= {TARGET_OVERHEAD}x",
            verdict(t / h <= TARGET_OVERHEAD),
        ),
        (
            f"2. {PARALLEL_TRIALS} trials, `n_jobs: 2` vs `n_jobs: 1`, whole process "
            f"(median of {len(par['n1'])})",
            f"{n1:.2f} s (n_jobs 1)",
            f"{n2:.2f} s",
            f"{n1 / n2:.2f}x faster",
            f">= {TARGET_SPEEDUP}x",
            verdict(n1 / n2 >= TARGET_SPEEDUP),
        ),
    ]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def same_trials(over: dict[str, Any]) -> str:
    t, h = over["tessera"][0], over["hand"][0]
    if t["best_params"] == h["best_params"]:
        return (
            f"both found the same best parameters ({t['best_params']}, CV ROC AUC "
            f"{t['best_value']:.5f} vs {h['best_value']:.5f}): same seed, same trials"
        )
    return (
        f"best parameters differ (Tessera {t['best_params']} at {t['best_value']:.5f}, "
        f"hand-written {h['best_params']} at {h['best_value']:.5f})"
    )


def section(over: dict[str, Any], par: dict[str, Any], load: tuple[float, ...], secs: float) -> str:
    info = machine(load)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine_rows = "\n".join(f"| {k} | {v} |" for k, v in info.items())

    def raw(runs: list[dict[str, Any]], key: str = "seconds") -> str:
        return ", ".join(f"{r[key]:.2f}" for r in runs)

    hand = over["hand"]
    trial_s = median(par["n1"], "stage_s") / PARALLEL_TRIALS
    n1_stage, n2_stage = median(par["n1"], "stage_s"), median(par["n2"], "stage_s")
    return f"""{MARK_BEGIN}
## Tuning: `tune` vs a hand-written Optuna + MLflow loop (`bench/tuning/run.py`)

Run on {now}, {secs / 60:.1f} minutes in all, with:

```
{COMMAND}
```

| Machine | |
| --- | --- |
{machine_rows}

{results_table(over, par)}

- **Workload.** A {ROWS:,} x {FEATURES} synthetic classification table
  (`sklearn.datasets.make_classification`, seed {SEED}) in CSV. Tessera: a fresh project each
  run (`read_table`, then `tune` on the whole table, `pruner: none`, tracking on), `tessera run
  --json` as a subprocess. Hand-written: `bench/tuning/handwritten.py` as a subprocess, with
  the same interpreter and virtualenv (MLflow, Optuna and scikit-learn are project
  dependencies, so no separate venv is needed), SQLite for Optuna and MLflow in a fresh
  temporary directory. Both with `OMP_NUM_THREADS=1` (and OpenBLAS/MKL), so parallelism comes
  from trial workers only.
- **1. Overhead.** {OVERHEAD_TRIALS} TPE trials (seed {SEED}) of a 15-tree random forest after
  median imputation, `max_depth` in 2..12 and `min_samples_leaf` in 1..20, 3 stratified folds,
  ROC AUC; every trial a nested MLflow run; the best refit
  on the whole table and logged as an MLflow model. Cross-check: {same_trials(over)}.
  Tessera also logs per-fold intermediate values, the study summary artifacts, feature
  importances, a model signature and input example. The hand-written script spent (medians)
  {median(hand, "imports_s"):.2f} s importing, {median(hand, "trials_s"):.2f} s in trials and
  {median(hand, "refit_and_log_s"):.2f} s refitting and logging the model; Tessera's `tune`
  stage took {median(over["tessera"], "stage_s"):.2f} s of its {median(over["tessera"]):.2f} s.
  The baseline's `log_model` gets pinned requirements, as Tessera's does; with MLflow's
  default (inferring them in a subprocess that imports the model) one run took
  {over["inferred"]["seconds"]:.2f} s, {over["inferred"]["refit_and_log_s"]:.2f} s of it
  refitting and logging.
- **2. Parallel trials.** {PARALLEL_TRIALS} TPE trials of `HistGradientBoostingClassifier`
  (60 iterations, no early stopping, so a trial's cost does not depend on the sampled
  `learning_rate` and `l2_regularization`), 3 folds: about {trial_s:.2f} s per trial with
  `n_jobs: 1`. `n_jobs: 2` runs trials in the stage's process and one spawned worker process
  (started, and its imports warmed up, while the stage sets up MLflow), sharing the study
  through `.tessera/optuna.db` (SQLite). The `tune` stage alone (medians): n_jobs 1
  {n1_stage:.2f} s, n_jobs 2 {n2_stage:.2f} s, {n1_stage / n2_stage:.2f}x; the rest of each
  run (start-up, `read_table`, checks) is the same for both.
- **Raw timings** (seconds): Tessera {raw(over["tessera"])}; hand-written {raw(hand)};
  n_jobs 1 {raw(par["n1"])}; n_jobs 2 {raw(par["n2"])}.
{MARK_END}"""


#: The command line as typed from the repository root, for RESULTS.md.
COMMAND = " ".join([".venv/bin/python", "bench/tuning/run.py", *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=OVERHEAD_REPEATS, help="overhead runs")
    parser.add_argument(
        "--parallel-repeats", type=int, default=PARALLEL_REPEATS, help="parallel runs"
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the CPUs to be idle (< 15%% busy for 15 s)",
    )
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    if args.wait_idle:
        HELPERS.wait_idle(args.wait_idle)
    started = time.perf_counter()
    load = os.getloadavg()
    write_data()
    over = bench_overhead(args.repeats)
    par = bench_parallel(args.parallel_repeats)
    text = section(over, par, load, time.perf_counter() - started)
    print(text)
    if not args.no_write:
        HELPERS.MARK_BEGIN, HELPERS.MARK_END = MARK_BEGIN, MARK_END
        HELPERS.write_results(text)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except HELPERS.BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(1)
