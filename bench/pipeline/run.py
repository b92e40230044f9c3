"""Tessera vs the DVC pattern users have today, measured side by side in one run.

The DVC side is what users do now: a ``dvc.yaml`` of 20 stages, each a separate
``python stage_NN.py`` process that reads the previous stage's CSV with pandas, transforms one
column and writes a CSV. The Tessera side is the same chain of 20 transforms behind a
``read_table`` stage that reads the very same input CSV, with its outputs cached as Parquet.

Measured (whole processes, ``time.perf_counter`` around ``subprocess.run``):

1. full run from fresh workdirs and caches: ``dvc repro`` vs ``tessera run``;
2. no-op run with nothing changed (median of 5);
3. re-run after changing stage 10's parameters: time and number of stages that re-ran;
4. fingerprint throughput of a 1 GB table, in memory and read from Parquet.

Run with ``.venv/bin/python bench/pipeline/run.py`` (``make bench``). It creates
``bench/.venv-dvc`` when missing, rebuilds ``bench/work/{dvc,tessera}`` from scratch, prints a
Markdown table and updates the ``pipeline`` section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
REPO = BENCH.parent
WORK = BENCH / "work"
DVC_DIR = WORK / "dvc"
DVC_SITE_CACHE = WORK / "dvc-site-cache"
TESSERA_DIR = WORK / "tessera"
INPUT_CSV = WORK / "input.csv"
FP_FILE = WORK / "fingerprint" / "table.parquet"
RESULTS = BENCH / "RESULTS.md"

DVC_VENV = BENCH / ".venv-dvc"
DVC_PINS = ("dvc==3.67.1", "pandas==3.1.1")
VENV_PYTHON = os.environ.get("BENCH_VENV_PYTHON", "python3.11")
TESSERA = Path(sys.executable).with_name("tessera")

ROWS, COLS, SEED = 200_000, 20, 20_240_611
N_STAGES = 20
CHANGED_STAGE = 10
CHANGED_SHIFT = 1000.0
NOOP_REPEATS = 5
#: Cold Tessera full runs (a couple of seconds each; DVC's ~90 s run is done once).
FULL_REPEATS = 3
FP_ROWS, FP_COLS, FP_REPEATS = 6_250_000, 20, 5

# Targets from the issue.
TARGET_FULL_SPEEDUP = 30.0
TARGET_NOOP_RATIO = 0.5
TARGET_RERUN = N_STAGES - CHANGED_STAGE + 1
TARGET_FP_GBS = 1.0

MARK_BEGIN = "<!-- bench:pipeline -->"
MARK_END = "<!-- /bench:pipeline -->"


class BenchError(RuntimeError):
    """A benchmarked command failed or printed something we cannot interpret."""


@dataclass
class Run:
    seconds: float
    stdout: str
    stderr: str


def run_timed(cmd: Sequence[str | os.PathLike[str]], cwd: Path, env: dict[str, str]) -> Run:
    """Run ``cmd`` to completion and time the whole process.

    Pending writes of earlier runs are flushed first (``sync``), so that no run pays for the
    kernel writing back what the previous one (of either tool) left in the page cache.
    """
    os.sync()
    start = time.perf_counter()
    proc = subprocess.run(
        [str(c) for c in cmd], cwd=cwd, env=env, capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise BenchError(
            f"`{' '.join(map(str, cmd))}` in {cwd} exited {proc.returncode}\n"
            f"--- stdout ---\n{proc.stdout[-4000:]}\n--- stderr ---\n{proc.stderr[-4000:]}"
        )
    return Run(seconds, proc.stdout, proc.stderr)


def check_output(cmd: Sequence[str | os.PathLike[str]], **kw: Any) -> str:
    return subprocess.run(
        [str(c) for c in cmd], capture_output=True, text=True, check=True, **kw
    ).stdout.strip()


# -- the pipeline both sides run ----------------------------------------------------------------


def stage_params(i: int, changed: bool = False) -> dict[str, Any]:
    """Stage ``i`` (1-based) maps column c{i-1} to ``x * scale + shift``."""
    shift = CHANGED_SHIFT if changed and i == CHANGED_STAGE else float(i)
    return {"column": f"c{i - 1}", "scale": 1.5, "shift": shift}


def write_input_csv() -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(SEED)
    values = rng.standard_normal((ROWS, COLS))
    frame = pd.DataFrame(values, columns=[f"c{j}" for j in range(COLS)])
    INPUT_CSV.parent.mkdir(parents=True, exist_ok=True)
    tmp = INPUT_CSV.with_suffix(".tmp")
    frame.to_csv(tmp, index=False)
    tmp.replace(INPUT_CSV)


def link_input(dest: Path) -> None:
    """Make ``dest`` the same file as the shared input CSV (a hard link, else a copy)."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.link(INPUT_CSV, dest)
    except OSError:
        shutil.copyfile(INPUT_CSV, dest)


def dump_yaml(path: Path, data: Any) -> None:
    import yaml

    path.write_text(yaml.safe_dump(data, sort_keys=False, default_flow_style=None))


# -- DVC side -----------------------------------------------------------------------------------

DVC_STAGE_SCRIPT = '''\
"""DVC stage {name}: one process reading and writing CSV with pandas."""

import pandas as pd
import yaml

with open("params.yaml") as f:
    params = yaml.safe_load(f)["{name}"]

df = pd.read_csv("{src}")
col = params["column"]
df[col] = df[col] * params["scale"] + params["shift"]
df.to_csv("{dst}", index=False)
'''


def dvc_name(i: int) -> str:
    return f"stage_{i:02d}"


def dvc_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}
    env["PATH"] = f"{DVC_VENV / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["DVC_NO_ANALYTICS"] = "1"
    return env


def ensure_dvc_venv() -> None:
    """Create ``bench/.venv-dvc`` with the pinned DVC and pandas unless it already has them."""
    pip = DVC_VENV / "bin" / "pip"
    python = DVC_VENV / "bin" / "python"
    if python.exists():
        frozen = set(check_output([pip, "freeze", "--disable-pip-version-check"]).splitlines())
        if set(DVC_PINS) <= frozen:
            _compile(python)
            return
    else:
        print(f"creating {DVC_VENV} ...", flush=True)
        subprocess.run([VENV_PYTHON, "-m", "venv", str(DVC_VENV)], check=True)
    subprocess.run(
        [str(pip), "install", "--quiet", "--disable-pip-version-check", *DVC_PINS], check=True
    )
    _compile(python)


def _compile(python: Path) -> None:
    """Byte-compile the DVC venv, as ``make install`` does for Tessera's.

    Some environments set PYTHONDONTWRITEBYTECODE; without .pyc files every DVC stage process
    would recompile DVC and pandas from source, which would flatter Tessera unfairly.
    """
    site = check_output([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"])
    subprocess.run(
        [python, "-m", "compileall", "-q", "-j", "0", site.strip()],
        check=False,
        stdout=subprocess.DEVNULL,
    )


def dvc_write_params(changed: bool = False) -> None:
    params = {dvc_name(i): stage_params(i, changed) for i in range(1, N_STAGES + 1)}
    dump_yaml(DVC_DIR / "params.yaml", params)


def setup_dvc() -> None:
    for path in (DVC_DIR, DVC_SITE_CACHE):
        shutil.rmtree(path, ignore_errors=True)
    DVC_DIR.mkdir(parents=True)
    env = dvc_env()
    dvc = str(DVC_VENV / "bin" / "dvc")
    subprocess.run(["git", "init", "-q"], cwd=DVC_DIR, check=True)
    subprocess.run([dvc, "init", "-q"], cwd=DVC_DIR, env=env, check=True)
    subprocess.run([dvc, "config", "core.analytics", "false"], cwd=DVC_DIR, env=env, check=True)
    # Keep DVC's state database with this workdir so every run starts cold.
    subprocess.run(
        [dvc, "config", "core.site_cache_dir", str(DVC_SITE_CACHE)],
        cwd=DVC_DIR,
        env=env,
        check=True,
    )
    link_input(DVC_DIR / "data" / "input.csv")
    stages = {}
    src = "data/input.csv"
    for i in range(1, N_STAGES + 1):
        name = dvc_name(i)
        dst = f"data/{name}.csv"
        script = f"{name}.py"
        (DVC_DIR / script).write_text(DVC_STAGE_SCRIPT.format(name=name, src=src, dst=dst))
        stages[name] = {
            "cmd": f"python {script}",
            "deps": [src, script],
            "params": [name],
            "outs": [dst],
        }
        src = dst
    dump_yaml(DVC_DIR / "dvc.yaml", {"stages": stages})
    dvc_write_params()


def dvc_ran(run: Run) -> int:
    return len(re.findall(r"^Running stage '", run.stdout, flags=re.MULTILINE))


def bench_dvc() -> dict[str, Any]:
    ensure_dvc_venv()
    setup_dvc()
    env = dvc_env()
    repro = [DVC_VENV / "bin" / "dvc", "repro"]
    print("dvc: full run ...", flush=True)
    full = run_timed(repro, DVC_DIR, env)
    print(f"  {full.seconds:.2f} s, {dvc_ran(full)} stages ran", flush=True)
    if dvc_ran(full) != N_STAGES:
        raise BenchError(f"dvc full run ran {dvc_ran(full)} stages:\n{full.stdout}")
    noops = []
    for _ in range(NOOP_REPEATS):
        noop = run_timed(repro, DVC_DIR, env)
        if dvc_ran(noop):
            raise BenchError(f"dvc no-op run re-ran stages:\n{noop.stdout}")
        noops.append(noop.seconds)
    print(f"dvc: no-op {[round(s, 3) for s in noops]}", flush=True)
    dvc_write_params(changed=True)
    print(f"dvc: re-run after changing {dvc_name(CHANGED_STAGE)} ...", flush=True)
    change = run_timed(repro, DVC_DIR, env)
    print(f"  {change.seconds:.2f} s, {dvc_ran(change)} stages ran", flush=True)
    return {
        "full_s": full.seconds,
        "noop_s": noops,
        "change_s": change.seconds,
        "change_ran": dvc_ran(change),
        "change_stages": re.findall(r"^Running stage '([^']+)'", change.stdout, re.MULTILINE),
        "final_csv": str(DVC_DIR / "data" / f"{dvc_name(N_STAGES)}.csv"),
    }


# -- Tessera side -------------------------------------------------------------------------------

TESSERA_OPS = '''\
"""The benchmark's project-local transformation."""

import pandas as pd
from pydantic import BaseModel, ConfigDict

from tessera import transformation


class Affine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str
    scale: float = 1.5
    shift: float = 0.0


@transformation
def affine_column(df: pd.DataFrame, cfg: Affine) -> pd.DataFrame:
    """Map one column to ``x * scale + shift`` (a new frame; the input is not mutated)."""
    return df.assign(**{cfg.column: df[cfg.column] * cfg.scale + cfg.shift})
'''


def tessera_name(i: int) -> str:
    return f"s{i:02d}"


def tessera_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k not in {"VIRTUAL_ENV", "PYTHONPATH"}}


def tessera_write_pipeline(changed: bool = False) -> None:
    stages: dict[str, Any] = {
        "data": {"uses": "read_table", "with": {"path": "data/input.csv"}},
    }
    prev = "data"
    for i in range(1, N_STAGES + 1):
        name = tessera_name(i)
        stages[name] = {
            "uses": "affine_column",
            "inputs": [prev],
            "with": stage_params(i, changed),
        }
        prev = name
    dump_yaml(TESSERA_DIR / "pipeline.yaml", {"stages": stages})


def setup_tessera() -> None:
    shutil.rmtree(TESSERA_DIR, ignore_errors=True)
    (TESSERA_DIR / "transforms").mkdir(parents=True)
    (TESSERA_DIR / "tessera.yaml").write_text("name: bench\n")
    (TESSERA_DIR / "transforms" / "bench_ops.py").write_text(TESSERA_OPS)
    link_input(TESSERA_DIR / "data" / "input.csv")
    tessera_write_pipeline()


# Per-stage statuses printed by `tessera run --json`: executed, or reused from the cache.
RAN_STATUSES = {"done"}
SKIPPED_STATUSES = {"cached"}


def tessera_statuses(stdout: str) -> dict[str, str]:
    """Stage -> status from ``tessera run --json`` (``{"stages": [{"stage", "status"}]}``)."""
    try:
        stages = json.loads(stdout)["stages"]
        return {str(s["stage"]): str(s["status"]) for s in stages}
    except (ValueError, KeyError, TypeError) as exc:
        raise BenchError(f"unexpected `tessera run --json` output:\n{stdout[-2000:]}") from exc


def tessera_ran(statuses: dict[str, str]) -> list[str]:
    unknown = {s for s in statuses.values() if s not in RAN_STATUSES | SKIPPED_STATUSES}
    if unknown:
        raise BenchError(f"unknown stage statuses in `tessera run --json`: {sorted(unknown)}")
    return [name for name, status in statuses.items() if status in RAN_STATUSES]


def final_output(stdout: str) -> str:
    """The fingerprint of the last stage's output in ``tessera run --json``."""
    for stage in json.loads(stdout)["stages"]:
        if stage["stage"] == tessera_name(N_STAGES):
            return str(stage["outputs"]["out"])
    raise BenchError(f"no output of {tessera_name(N_STAGES)} in:\n{stdout[-2000:]}")


def bench_tessera() -> dict[str, Any]:
    setup_tessera()
    env = tessera_env()
    print("tessera: full run ...", flush=True)
    fulls = []
    for _ in range(FULL_REPEATS):
        shutil.rmtree(TESSERA_DIR / ".tessera", ignore_errors=True)  # cold: empty cache
        full = run_timed([TESSERA, "run"], TESSERA_DIR, env)
        fulls.append(full.seconds)
    print(f"  {[round(s, 2) for s in fulls]} s", flush=True)
    check = run_timed([TESSERA, "run", "--json"], TESSERA_DIR, env)
    if tessera_ran(tessera_statuses(check.stdout)):
        raise BenchError(f"tessera re-ran stages right after a full run:\n{check.stdout}")
    noops = [run_timed([TESSERA, "run"], TESSERA_DIR, env).seconds for _ in range(NOOP_REPEATS)]
    print(f"tessera: no-op {[round(s, 3) for s in noops]}", flush=True)
    tessera_write_pipeline(changed=True)
    print(f"tessera: re-run after changing {tessera_name(CHANGED_STAGE)} ...", flush=True)
    change = run_timed([TESSERA, "run", "--json"], TESSERA_DIR, env)
    statuses = tessera_statuses(change.stdout)
    ran = tessera_ran(statuses)
    print(f"  {change.seconds:.2f} s, {len(ran)} stages ran: {ran}", flush=True)
    return {
        "full_s": statistics.median(fulls),
        "full_runs_s": fulls,
        "full_stdout": full.stdout[-3000:],
        "noop_s": noops,
        "change_s": change.seconds,
        "change_ran": len(ran),
        "change_stages": ran,
        "change_statuses": statuses,
        "change_json": change.stdout[-6000:],
        "change_own_s": float(json.loads(change.stdout).get("seconds", "nan")),
        "final_fingerprint": final_output(change.stdout),
    }


# -- fingerprint throughput ---------------------------------------------------------------------


def write_fp_table() -> None:
    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    if FP_FILE.is_file():
        meta = pq.read_metadata(FP_FILE)
        if (meta.num_rows, meta.num_columns) == (FP_ROWS, FP_COLS):
            return
    print(f"writing {FP_FILE} ...", flush=True)
    FP_FILE.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(SEED + 1)
    table = pa.table({f"c{j}": rng.standard_normal(FP_ROWS) for j in range(FP_COLS)})
    tmp = FP_FILE.with_suffix(".tmp")
    pq.write_table(table, tmp)
    tmp.replace(FP_FILE)


def bench_fingerprint() -> dict[str, Any]:
    import pyarrow.parquet as pq

    from tessera.data.fingerprint import fingerprint_table

    write_fp_table()
    table = pq.read_table(FP_FILE)
    nbytes = table.nbytes
    fingerprint_table(table)  # warm-up: page in the table and the code
    mem, fps = [], set()
    for _ in range(FP_REPEATS):
        start = time.perf_counter()
        fps.add(fingerprint_table(table))
        mem.append(time.perf_counter() - start)
    del table
    read, both = [], []
    for _ in range(FP_REPEATS):
        start = time.perf_counter()
        loaded = pq.read_table(FP_FILE)
        mid = time.perf_counter()
        fps.add(fingerprint_table(loaded))
        end = time.perf_counter()
        read.append(mid - start)
        both.append(end - start)
        del loaded
    if len(fps) != 1:
        raise BenchError(f"fingerprint is not stable: {fps}")
    result = {
        "rows": FP_ROWS,
        "cols": FP_COLS,
        "nbytes": nbytes,
        "file_bytes": FP_FILE.stat().st_size,
        "mem_s": mem,
        "read_s": read,
        "read_fp_s": both,
        "fingerprint": fps.pop(),
    }
    print(
        f"fingerprint: {gbs(nbytes, mem):.2f} GB/s in memory, "
        f"{gbs(nbytes, both):.2f} GB/s read+fingerprint",
        flush=True,
    )
    return result


def gbs(nbytes: int, seconds: list[float]) -> float:
    return nbytes / statistics.median(seconds) / 1e9


# -- cross-check --------------------------------------------------------------------------------


def cross_check(dvc: dict[str, Any], tes: dict[str, Any]) -> str:
    """Compare both sides' final tables with the values the changed pipeline should give."""
    import numpy as np
    import pandas as pd

    from tessera.data.store import ArtifactStore

    expected = pd.read_csv(INPUT_CSV)
    for i in range(1, N_STAGES + 1):
        p = stage_params(i, changed=True)
        expected[p["column"]] = expected[p["column"]] * p["scale"] + p["shift"]

    def same(frame: pd.DataFrame) -> bool:
        return list(frame.columns) == list(expected.columns) and bool(
            np.allclose(frame.to_numpy(), expected.to_numpy(), rtol=1e-12, atol=0)
        )

    dvc_ok = same(pd.read_csv(dvc["final_csv"]))
    store = ArtifactStore(TESSERA_DIR / ".tessera" / "cache")
    tes_ok = same(store.get_table(tes["final_fingerprint"]).to_pandas())
    return (
        f"DVC's final CSV {'matches' if dvc_ok else 'DIFFERS FROM'} and Tessera's final "
        f"`{tessera_name(N_STAGES)}` artifact {'matches' if tes_ok else 'DIFFERS FROM'} the "
        "expected values"
    )


# -- report -------------------------------------------------------------------------------------


def machine(load_at_start: tuple[float, ...]) -> dict[str, str]:
    mem = "?"
    cpu = platform.processor() or "?"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = f"{int(line.split()[1]) / 1024**2:.1f} GiB"
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import numpy
    import pandas
    import pyarrow

    import tessera

    dvc_py = DVC_VENV / "bin" / "python"
    dvc_versions = "?"
    if dvc_py.exists():
        dvc_versions = check_output(
            [
                dvc_py,
                "-c",
                "import dvc.version, pandas; print(dvc.version.__version__, pandas.__version__)",
            ]
        )
    dvc_version, dvc_pandas = [*dvc_versions.split(), "?", "?"][:2]
    try:
        commit = check_output(["git", "rev-parse", "--short", "HEAD"], cwd=REPO)
        dirty = check_output(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO)
        commit += " + uncommitted changes" if dirty else ""
    except (OSError, subprocess.CalledProcessError):
        commit = "?"
    return {
        "CPU": f"{cpu}, nproc {os.cpu_count()}",
        "RAM": mem,
        "OS": platform.platform(),
        "Load average (1/5/15 min) at start / end": (
            f"{'/'.join(f'{x:.2f}' for x in load_at_start)} / "
            f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}"
        ),
        "Python": platform.python_version(),
        "tessera": f"{tessera.__version__} (git {commit})",
        "pandas / pyarrow / numpy (Tessera venv)": (
            f"{pandas.__version__} / {pyarrow.__version__} / {numpy.__version__}"
        ),
        "dvc / pandas (bench/.venv-dvc)": f"{dvc_version} / {dvc_pandas}",
    }


def own(stdout: str) -> str:
    """The run time Tessera reports in its closing line (``... in 1.23s.``)."""
    found = re.findall(r" in ([0-9.]+)s\.?\s*$", stdout, flags=re.MULTILINE)
    return f"{float(found[-1]):.2f} s" if found else "(no summary line found)"


def verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def results_table(dvc: dict[str, Any], tes: dict[str, Any], fp: dict[str, Any]) -> str:
    full_x = dvc["full_s"] / tes["full_s"]
    d_noop, t_noop = statistics.median(dvc["noop_s"]), statistics.median(tes["noop_s"])
    noop_ratio = t_noop / d_noop
    change_x = dvc["change_s"] / tes["change_s"]
    fp_mem, fp_read = gbs(fp["nbytes"], fp["mem_s"]), gbs(fp["nbytes"], fp["read_fp_s"])
    rows = [
        ("Measurement", "DVC", "Tessera", "Ratio", "Target", "Result"),
        ("---", "---:", "---:", "---:", "---", "---"),
        (
            f"1. full run, cold (Tessera: median of {FULL_REPEATS})",
            f"{dvc['full_s']:.2f} s",
            f"{tes['full_s']:.2f} s",
            f"{full_x:.1f}x faster",
            f">= {TARGET_FULL_SPEEDUP:.0f}x faster",
            verdict(full_x >= TARGET_FULL_SPEEDUP),
        ),
        (
            f"2. no-op run (median of {NOOP_REPEATS})",
            f"{d_noop:.3f} s",
            f"{t_noop:.3f} s",
            f"{noop_ratio:.2f}x the time",
            f"<= {TARGET_NOOP_RATIO}x the time",
            verdict(noop_ratio <= TARGET_NOOP_RATIO),
        ),
        (
            f"3a. re-run after changing stage {CHANGED_STAGE}",
            f"{dvc['change_s']:.2f} s",
            f"{tes['change_s']:.2f} s",
            f"{change_x:.1f}x faster",
            "(reported)",
            "-",
        ),
        (
            "3b. stages re-run",
            str(dvc["change_ran"]),
            str(tes["change_ran"]),
            "",
            f"Tessera == {TARGET_RERUN}",
            verdict(tes["change_ran"] == TARGET_RERUN),
        ),
        (
            "4a. fingerprint_table, in memory (median of 5)",
            "-",
            f"{fp_mem:.2f} GB/s",
            "",
            f">= {TARGET_FP_GBS:.0f} GB/s",
            verdict(fp_mem >= TARGET_FP_GBS),
        ),
        (
            "4b. read Parquet + fingerprint (median of 5)",
            "-",
            f"{fp_read:.2f} GB/s",
            "",
            f">= {TARGET_FP_GBS:.0f} GB/s",
            verdict(fp_read >= TARGET_FP_GBS),
        ),
    ]
    return "\n".join("| " + " | ".join(r) + " |" for r in rows)


def section(
    dvc: dict[str, Any],
    tes: dict[str, Any],
    fp: dict[str, Any],
    check: str,
    seconds: float,
    load_at_start: tuple[float, ...],
) -> str:
    info = machine(load_at_start)
    now = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    machine_rows = "\n".join(f"| {k} | {v} |" for k, v in info.items())
    fmt = ", ".join
    return f"""{MARK_BEGIN}
## Pipeline: Tessera vs DVC (`bench/pipeline/run.py`)

Run on {now}, {seconds / 60:.1f} minutes in all, with:

```
{COMMAND}
```

| Machine | |
| --- | --- |
{machine_rows}

{results_table(dvc, tes, fp)}

- **Workload.** A {ROWS:,} x {COLS} float64 table (`numpy.random.default_rng({SEED})`, columns
  c0..c19, {INPUT_CSV.stat().st_size / 1e6:.0f} MB of CSV) goes through a chain of {N_STAGES}
  stages; stage *i* sets `c{{i-1}} = c{{i-1}} * 1.5 + i`. DVC: `dvc.yaml` with {N_STAGES} stages,
  each `python stage_NN.py` reading the previous CSV with pandas and writing a CSV (`git init` +
  `dvc init`, default cache). Tessera: a `read_table` stage reading the same CSV file (a hard
  link) then {N_STAGES} `affine_column` stages (a project-local transformation), outputs cached
  as Parquet in `.tessera/`.
- **Timing.** Whole processes: `time.perf_counter()` around `subprocess.run` of `dvc repro` and
  `tessera run` (start-up included, output captured), each after a `sync` so no run pays for
  another's pending writes. Full runs start from freshly generated
  workdirs and empty caches (DVC's state database is kept in the workdir too). Of the full
  run's {tes["full_s"]:.2f} s, Tessera's own summary line accounts for {own(tes["full_stdout"])};
  of the re-run's {tes["change_s"]:.2f} s, `--json` reports {tes["change_own_s"]:.2f} s; the
  rest is interpreter start-up, imports and transformation discovery.
- **Re-run.** Stage {CHANGED_STAGE}'s `shift` goes from {float(CHANGED_STAGE)} to
  {CHANGED_SHIFT}: for DVC in `params.yaml` (each stage declares `params: [stage_NN]`), for
  Tessera in the `with:` of `{tessera_name(CHANGED_STAGE)}` in `pipeline.yaml`. Stages re-run
  are counted over the whole pipeline: for DVC its `Running stage` lines, for Tessera the stages
  that `tessera run --json` reports as `done` rather than `cached`, out of all {N_STAGES + 1}
  (`read_table` + {N_STAGES} transforms). The target {TARGET_RERUN} thus means transform stages
  {CHANGED_STAGE}..{N_STAGES} and not `read_table`.
  - DVC re-ran: {fmt(dvc["change_stages"]) or "none"}.
  - Tessera re-ran: {fmt(tes["change_stages"]) or "none"}.
  - Cross-check: {check}.
- **Raw timings** (seconds): Tessera cold full runs {fmt(f"{s:.2f}" for s in tes["full_runs_s"])};
  DVC no-op {fmt(f"{s:.3f}" for s in dvc["noop_s"])}; Tessera no-op
  {fmt(f"{s:.3f}" for s in tes["noop_s"])}; fingerprint in memory
  {fmt(f"{s:.3f}" for s in fp["mem_s"])}; Parquet read alone
  {fmt(f"{s:.3f}" for s in fp["read_s"])}; read + fingerprint
  {fmt(f"{s:.3f}" for s in fp["read_fp_s"])}.
- **Fingerprint.** {FP_ROWS:,} x {FP_COLS} float64 (`table.nbytes` = {fp["nbytes"] / 1e9:.2f} GB,
  {fp["file_bytes"] / 1e9:.2f} GB Parquet at `bench/work/fingerprint/table.parquet`),
  `tessera.data.fingerprint.fingerprint_table`, throughput = `table.nbytes` / median time. 4a
  hashes the loaded table (after one warm-up call); 4b times `pyarrow.parquet.read_table` +
  fingerprint, file in the page cache.
{MARK_END}"""


def write_results(text: str) -> None:
    old = RESULTS.read_text() if RESULTS.is_file() else "# Benchmark results\n"
    pattern = re.compile(re.escape(MARK_BEGIN) + r".*?" + re.escape(MARK_END), re.DOTALL)
    if pattern.search(old):
        new = pattern.sub(lambda _: text, old)
    else:
        new = old.rstrip("\n") + "\n\n" + text
    RESULTS.write_text(new.rstrip("\n") + "\n")


def cpu_busy(interval: float) -> float:
    """Fraction of all CPUs busy over ``interval`` seconds, from /proc/stat."""

    def sample() -> tuple[int, int]:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        idle = fields[3] + fields[4]  # idle + iowait
        return sum(fields), idle

    total0, idle0 = sample()
    time.sleep(interval)
    total1, idle1 = sample()
    return 1 - (idle1 - idle0) / max(total1 - total0, 1)


def wait_idle(max_seconds: float, threshold: float = 0.15, quiet_samples: int = 3) -> None:
    """Wait until other work on the machine has stopped (or ``max_seconds`` have passed)."""
    deadline = time.monotonic() + max_seconds
    quiet = 0
    while time.monotonic() < deadline:
        busy = cpu_busy(5.0)
        quiet = quiet + 1 if busy < threshold else 0
        if quiet >= quiet_samples:
            return
        print(f"waiting for an idle machine: {busy:.0%} CPU busy", flush=True)
    print("warning: the machine did not become idle; timings may be noisy", flush=True)


#: The command line as typed from the repository root, for RESULTS.md.
COMMAND = " ".join([".venv/bin/python", "bench/pipeline/run.py", *sys.argv[1:]])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--only",
        action="append",
        choices=["dvc", "tessera", "fingerprint"],
        help="run only these parts (repeatable); bench/RESULTS.md is only updated by a full run",
    )
    parser.add_argument(
        "--wait-idle",
        type=float,
        default=0,
        metavar="SECONDS",
        help="first wait up to SECONDS for the CPUs to be idle (< 15%% busy for 15 s)",
    )
    args = parser.parse_args(argv)
    if args.wait_idle:
        wait_idle(args.wait_idle)
    parts = args.only or ["dvc", "tessera", "fingerprint"]
    started = time.perf_counter()
    load_at_start = os.getloadavg()
    if load_at_start[0] > 0.5:
        print(f"warning: load average {load_at_start[0]:.2f}; timings may be noisy", flush=True)
    WORK.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {}
    if "dvc" in parts or "tessera" in parts:
        print(f"writing {INPUT_CSV} ...", flush=True)
        write_input_csv()
    if "dvc" in parts:
        results["dvc"] = bench_dvc()
    if "tessera" in parts:
        if not TESSERA.exists():
            raise BenchError(f"{TESSERA} not found: run `make install`")
        results["tessera"] = bench_tessera()
    if "fingerprint" in parts:
        results["fingerprint"] = bench_fingerprint()
    for part, data in results.items():
        (WORK / f"pipeline-{part}.json").write_text(json.dumps(data, indent=2))
    if len(results) < 3:
        print(f"partial run ({', '.join(parts)}); raw results in {WORK}/pipeline-*.json")
        return 0
    check = cross_check(results["dvc"], results["tessera"])
    text = section(
        results["dvc"],
        results["tessera"],
        results["fingerprint"],
        check,
        time.perf_counter() - started,
        load_at_start,
    )
    print()
    print(results_table(results["dvc"], results["tessera"], results["fingerprint"]))
    print(f"\n{check}")
    write_results(text)
    print(f"\nupdated {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"benchmark failed: {exc}", file=sys.stderr)
        sys.exit(1)
