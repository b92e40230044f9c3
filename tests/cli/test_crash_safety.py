"""Crashes, concurrent runs and hostile disks never corrupt what is stored."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from support import Project

TESSERA = str(Path(sys.executable).parent / "tessera")

SLOW = '''
import time
import numpy as np
import pandas as pd
from tessera import transformation

@transformation
def slow_big(df: pd.DataFrame) -> pd.DataFrame:
    """A slow stage with a large output."""
    time.sleep(3)
    n = 400_000
    rng = np.random.default_rng(0)  # incompressible: about 6 MB on disk
    return pd.DataFrame({"v": rng.random(n), "w": rng.random(n)})
'''


def _verify_store(root: Path) -> int:
    """Every stored object re-hashes to its name; returns how many there are."""
    import pyarrow.parquet as pq

    from tessera.data.fingerprint import fingerprint_table

    objects = list((root / ".tessera" / "cache" / "objects").glob("*/*.parquet"))
    for path in objects:
        assert fingerprint_table(pq.read_table(path)) == path.stem, path
    return len(objects)


def _slow_project(project: Project) -> None:
    project.write("transforms/slow.py", SLOW)
    project.write(
        "pipeline.yaml",
        "stages:\n  raw: {uses: load, with: {path: data/raw.csv}}\n"
        "  a: {uses: affine, inputs: [raw], with: {column: x}}\n"
        "  big: {uses: slow_big, inputs: [a]}\n"
        "  after: {uses: untouched, inputs: [big]}\n",
    )


@pytest.mark.slow
@pytest.mark.parametrize("jobs", ["1", "2"])
def test_kill_9_mid_stage_then_a_clean_run(project: Project, jobs: str) -> None:
    _slow_project(project)
    proc = subprocess.Popen(
        [TESSERA, "run", "-j", jobs],
        cwd=project.root,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    time.sleep(2.5 if jobs == "1" else 4.0)  # inside slow_big
    os.killpg(proc.pid, signal.SIGKILL)  # the whole group: workers die too
    proc.wait(timeout=30)
    _verify_store(project.root)
    done = subprocess.run(
        [TESSERA, "run", "--json"], cwd=project.root, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert _verify_store(project.root) == 3  # raw, a, big (after = big: same data, one object)


@pytest.mark.slow
def test_two_runs_at_once_wait_for_each_other(project: Project) -> None:
    _slow_project(project)
    first = subprocess.Popen(
        [TESSERA, "run"],
        cwd=project.root,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(1.0)
    second = subprocess.run(
        [TESSERA, "run", "--json"], cwd=project.root, capture_output=True, text=True, timeout=120
    )
    _, first_err = first.communicate(timeout=120)
    assert first.returncode == 0, first_err
    assert second.returncode == 0, second.stderr
    assert "Another run is using this project" in second.stderr
    assert '"status": "done"' not in second.stdout  # it waited, then found everything cached
    _verify_store(project.root)


def _mount_tmpfs(path: Path, size: str, *, read_only: bool = False) -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount a small tmpfs (a real full / read-only disk)")
    path.mkdir(parents=True, exist_ok=True)
    opts = f"size={size}" + (",ro" if read_only else "")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(path)], capture_output=True, text=True
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {proc.stderr.strip()}")


@pytest.mark.slow
def test_full_disk_is_a_clear_error(project: Project, tmp_path: Path) -> None:
    _slow_project(project)
    disk = tmp_path / "small"
    _mount_tmpfs(disk, "3m")
    try:
        project.write("tessera.yaml", f"name: t\nstores:\n  root: {disk / 'state'}\n")
        proc = subprocess.run(
            [TESSERA, "run"], cwd=project.root, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "No space left on device" in proc.stderr
        assert "Traceback" not in proc.stderr
        leftovers = [p for p in (disk / "state").rglob("*.tmp")]
        assert leftovers == []
    finally:
        subprocess.run(["umount", str(disk)], check=False)


@pytest.mark.slow
def test_read_only_store_is_a_clear_error(project: Project, tmp_path: Path) -> None:
    disk = tmp_path / "ro"
    _mount_tmpfs(disk, "1m", read_only=True)
    try:
        project.write("tessera.yaml", f"name: t\nstores:\n  root: {disk / 'state'}\n")
        proc = subprocess.run(
            [TESSERA, "run"], cwd=project.root, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode == 1, proc.stdout + proc.stderr
        assert "Read-only file system" in proc.stderr
        assert "Traceback" not in proc.stderr
    finally:
        subprocess.run(["umount", str(disk)], check=False)
