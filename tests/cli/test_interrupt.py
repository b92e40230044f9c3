"""Ctrl-C during a run: a clean exit, the run recorded as interrupted, finished work kept."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import Project

SLOW = '''
import time
import pandas as pd
from tessera import transformation

@transformation
def slow(df: pd.DataFrame) -> pd.DataFrame:
    """Takes a while."""
    time.sleep(30)
    return df
'''


@pytest.mark.slow
@pytest.mark.parametrize("executor", [["-j", "1"], ["-j", "2"], ["--executor", "dask"]])
def test_sigint_mid_stage(project: Project, executor: list[str]) -> None:
    project.write("transforms/slow.py", SLOW)
    project.write(
        "pipeline.yaml",
        "stages:\n  raw: {uses: load, with: {path: data/raw.csv}}\n"
        "  a: {uses: affine, inputs: [raw], with: {column: x}}\n"
        "  wait: {uses: slow, inputs: [a]}\n",
    )
    tessera = str(Path(sys.executable).parent / "tessera")
    proc = subprocess.Popen(
        [tessera, "run", *executor],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    db = project.root / ".tessera" / "metadata.db"
    deadline = time.time() + 60
    while time.time() < deadline:  # wait until 'a' is recorded as stored and 'wait' has started
        keys = list((project.root / ".tessera" / "cache" / "keys").rglob("*.json"))
        if len(keys) >= 2:
            break
        time.sleep(0.2)
    time.sleep(1.0)
    os.kill(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, out + err
    assert "Interrupted. Stages that finished are stored" in err
    assert "Traceback" not in out + err
    status = sqlite3.connect(db).execute("SELECT status FROM runs").fetchall()
    assert status == [("interrupted",)]
    # The next run reuses what finished: only the slow stage is left to do.
    project.write("transforms/slow.py", SLOW.replace("time.sleep(30)", "pass"))
    again = subprocess.run(
        [tessera, "run", "--json"], cwd=project.root, capture_output=True, text=True, timeout=120
    )
    assert again.returncode == 0, again.stderr
    assert '"status": "cached"' in again.stdout
