"""Pushing artifacts to a ``file://`` remote, next to ``cp -r`` of the same files.

The issue's target: pushing is disk-bound, so its throughput should be close to a plain copy.

Workload: about 1 GB of artifacts, 30 Parquet objects of ~35 MB each (random float64, which
zstd cannot shrink) written through ``ArtifactStore`` with one cache entry each, in
``bench/work/remote/store``. Generated once and reused while complete.

Measured, each median of ``--repeats`` (default 3), rotating their order:

1. ``cp -r store/objects store/keys <dest>`` (a subprocess);
2. ``Remote("file://.../remote").push(store, jobs=8)`` in this process (the remote emptied
   first), which lists both sides, uploads through temporary names and renames;
3. the same push with ``jobs=1``;

then, once each: a second push with nothing to do, and a pull into an empty store, which
re-fingerprints every object before installing it.

Page cache: before every timed step the script runs ``sync`` and, when it may (root), drops the
page cache (``echo 3 > /proc/sys/vm/drop_caches``), so the source files are read from the disk;
every timed step ends with ``sync``, so the copied data has reached the disk too. Whether the
cache could be dropped is recorded in the report.

Run with ``.venv/bin/python bench/remote/run.py``; it prints a Markdown table and rewrites the
``remote`` section of ``bench/RESULTS.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import platform
import shutil
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
BENCH = HERE.parent
REPO = BENCH.parent
WORK = BENCH / "work" / "remote"
STORE = WORK / "store"
REMOTE = WORK / "remote"
CP_DEST = WORK / "cp"
PULLED = WORK / "pulled"
RESULTS = BENCH / "RESULTS.md"

N_OBJECTS = 30
ROWS, COLS = 218_750, 20  # 4.375M float64 = 35 MB per object
SEED = 20_241_122
JOBS = 8

TARGET_RATIO = 0.5  # push at least half of cp's throughput: disk-bound, not CPU-bound

MARK_BEGIN = "<!-- bench:remote -->"
MARK_END = "<!-- /bench:remote -->"
COMMAND = " ".join([".venv/bin/python", "bench/remote/run.py", *sys.argv[1:]])


def make_store() -> dict[str, int]:
    """The artifacts: N_OBJECTS tables and one cache entry each (reused while complete)."""
    import numpy as np
    import pyarrow as pa

    from tessera.data.fingerprint import fingerprint_table
    from tessera.data.hashing import hash_json
    from tessera.data.remote import list_store
    from tessera.data.store import ArtifactStore

    listing = list_store(STORE)
    if sum(1 for r in listing if r.startswith("objects/")) == N_OBJECTS:
        return listing
    shutil.rmtree(STORE, ignore_errors=True)
    store = ArtifactStore(STORE)
    for i in range(N_OBJECTS):
        rng = np.random.default_rng(SEED + i)
        table = pa.table({f"c{j}": rng.random(ROWS) for j in range(COLS)})
        fp = fingerprint_table(table)
        store.put_table(table, fp)
        store.put_key(hash_json(["bench-stage", i]), {"stage": f"s{i}", "outputs": {"out": fp}})
        print(f"  object {i + 1}/{N_OBJECTS}", end="\r", flush=True)
    print()
    return list_store(STORE)


def flush_caches() -> bool:
    """``sync``, then drop the page cache if allowed; True if it was dropped."""
    subprocess.run(["sync"], check=True)
    try:
        Path("/proc/sys/vm/drop_caches").write_text("3\n")
    except OSError:
        return False
    return True


def timed(step: Callable[[], Any]) -> tuple[float, Any]:
    """Seconds for ``step`` plus a ``sync`` (the data is on the disk when the clock stops)."""
    t0 = time.perf_counter()
    result = step()
    subprocess.run(["sync"], check=True)
    return time.perf_counter() - t0, result


def run_cp() -> None:
    CP_DEST.mkdir(parents=True)
    subprocess.run(
        ["cp", "-r", str(STORE / "objects"), str(STORE / "keys"), str(CP_DEST)], check=True
    )


def run_push(jobs: int = JOBS) -> Any:
    from tessera.data.remote import Remote
    from tessera.data.store import ArtifactStore

    return Remote(REMOTE.as_uri(), name="bench").push(ArtifactStore(STORE), jobs=jobs)


def run_pull() -> Any:
    from tessera.data.remote import Remote
    from tessera.data.store import ArtifactStore

    return Remote(REMOTE.as_uri(), name="bench").pull(ArtifactStore(PULLED), jobs=JOBS)


def clean(*paths: Path) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def bench(repeats: int) -> dict[str, Any]:
    print(f"writing {N_OBJECTS} objects to {STORE.relative_to(REPO)} ...", flush=True)
    listing = make_store()
    nbytes = sum(listing.values())
    n_files = len(listing)
    print(f"{n_files} files, {nbytes / 1e6:.0f} MB", flush=True)
    times: dict[str, list[float]] = {"cp": [], "push": [], "push1": []}
    dropped = True
    summary: Any = None
    steps = ["cp", "push", "push1"]
    for i in range(repeats):
        for which in steps[i % 3 :] + steps[: i % 3]:  # rotate the order
            clean(CP_DEST, REMOTE)
            dropped &= flush_caches()
            if which == "cp":
                seconds, _ = timed(run_cp)
            else:
                jobs = JOBS if which == "push" else 1
                seconds, summary = timed(lambda jobs=jobs: run_push(jobs))
                assert summary.files == n_files, summary.to_dict()
            times[which].append(seconds)
            print(f"  {which:<5} {seconds:6.2f} s  {nbytes / 1e6 / seconds:7.0f} MB/s", flush=True)
    dropped &= flush_caches()
    noop_s, noop = timed(run_push)
    assert noop.files == 0 and noop.skipped == n_files, noop.to_dict()
    print(f"  no-op push {noop_s:.2f} s", flush=True)
    clean(PULLED)
    dropped &= flush_caches()
    pull_s, pulled = timed(run_pull)
    assert pulled.files == n_files and not pulled.corrupt, pulled.to_dict()
    print(f"  pull {pull_s:.2f} s  {nbytes / 1e6 / pull_s:.0f} MB/s", flush=True)
    clean(CP_DEST, PULLED)
    return {
        "bytes": nbytes,
        "files": n_files,
        **times,
        "noop": noop_s,
        "pull": pull_s,
        "dropped": dropped,
        "line": summary.line() if summary is not None else "",
    }


# -- report -------------------------------------------------------------------------------------


def machine(load_at_start: tuple[float, ...]) -> dict[str, str]:
    mem, cpu = "?", platform.processor() or "?"
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
    try:
        disk = (
            subprocess.run(["df", "-hT", str(WORK)], capture_output=True, text=True, check=True)
            .stdout.splitlines()[-1]
            .split()
        )
        disk_text = f"{disk[0]} ({disk[1]}, {disk[2]})"
    except (OSError, subprocess.CalledProcessError, IndexError):
        disk_text = "?"
    import fsspec
    import pyarrow

    import tessera

    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
        ).stdout.strip()
        commit += " + uncommitted changes" if dirty else ""
    except OSError:
        commit = "?"
    return {
        "CPU": f"{cpu}, nproc {os.cpu_count()}",
        "RAM": mem,
        "Disk (bench/work)": disk_text,
        "OS": platform.platform(),
        "Load average (1/5/15 min) at start / end": (
            f"{'/'.join(f'{x:.2f}' for x in load_at_start)} / "
            f"{'/'.join(f'{x:.2f}' for x in os.getloadavg())}"
        ),
        "Python": platform.python_version(),
        "tessera": f"{tessera.__version__} (git {commit or '?'})",
        "fsspec / pyarrow": f"{fsspec.__version__} / {pyarrow.__version__}",
    }


def mbs(nbytes: int, seconds: float) -> float:
    return nbytes / 1e6 / seconds


def table(r: dict[str, Any]) -> str:
    nbytes = r["bytes"]
    cp, push = statistics.median(r["cp"]), statistics.median(r["push"])
    push1 = statistics.median(r["push1"])
    ratio = mbs(nbytes, push) / mbs(nbytes, cp)
    ok = "PASS" if ratio >= TARGET_RATIO else "FAIL"
    rows = [
        "| Measurement | Time | Throughput | vs `cp -r` | Target | Result |",
        "| --- | ---: | ---: | ---: | --- | --- |",
        f"| `cp -r` (median of {len(r['cp'])}) | {cp:.2f} s | {mbs(nbytes, cp):.0f} MB/s | 1.00x "
        "| | |",
        f"| push, `-j {JOBS}` (median of {len(r['push'])}) | {push:.2f} s "
        f"| {mbs(nbytes, push):.0f} MB/s | {ratio:.2f}x | >= {TARGET_RATIO}x of cp | {ok} |",
        f"| push, `-j 1` (median of {len(r['push1'])}) | {push1:.2f} s "
        f"| {mbs(nbytes, push1):.0f} MB/s | {mbs(nbytes, push1) / mbs(nbytes, cp):.2f}x | | |",
        f"| push again, nothing to do | {r['noop']:.3f} s | - | - | | |",
        f"| pull into an empty store, `-j {JOBS}`, every object verified | {r['pull']:.2f} s "
        f"| {mbs(nbytes, r['pull']):.0f} MB/s | {mbs(nbytes, r['pull']) / mbs(nbytes, cp):.2f}x "
        "| | |",
    ]
    return "\n".join(rows)


def section(r: dict[str, Any], load_at_start: tuple[float, ...], minutes: float) -> str:
    when = dt.datetime.now(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    info = machine(load_at_start)
    machine_rows = "\n".join(f"| {k} | {v} |" for k, v in info.items())
    cache = (
        "`sync` then `echo 3 > /proc/sys/vm/drop_caches` before every timed step (cold source "
        "reads)"
        if r["dropped"]
        else "`sync` before every timed step; the page cache could not be dropped (not root), "
        "so sources may be read from memory"
    )
    runs = "; ".join(
        f"{name} {', '.join(f'{s:.2f}' for s in r[key])} s"
        for name, key in (("cp", "cp"), (f"push -j {JOBS}", "push"), ("push -j 1", "push1"))
    )
    return f"""{MARK_BEGIN}
## Remote: `data push` to a `file://` remote vs `cp -r` (`bench/remote/run.py`)

Run on {when}, {minutes:.1f} minutes in all, with:

```
{COMMAND}
```

| Machine | |
| --- | --- |
{machine_rows}

{table(r)}

- **Workload.** {r["files"]} files, {r["bytes"] / 1e6:.0f} MB: {N_OBJECTS} Parquet objects of
  {ROWS:,} x {COLS} random float64 (~{r["bytes"] / N_OBJECTS / 1e6:.0f} MB each: zstd barely
  shrinks them) written through `ArtifactStore`, plus one cache entry per object, in
  `bench/work/remote/store`. The remote and the `cp` target are directories on the same disk.
- **Timing.** `cp -r store/objects store/keys DEST` as a subprocess; the push as
  `Remote(url).push(store, jobs={JOBS})` in the benchmark's process (interpreter start-up and
  imports excluded; listing both sides, temporary names and renames included). Each timed step
  starts from an empty destination and ends with `sync`, so the data is on the disk when the
  clock stops. The order of the three rotates from one repeat to the next; all runs: {runs}.
- **Why push can beat `cp -r`.** Each upload is `shutil.copyfile` (in-kernel
  `copy_file_range`/`sendfile`) to a temporary name, then a rename; `-j {JOBS}` keeps several
  files in flight. `-j 1` shows the sequential cost. The disk is virtual (the host may cache
  writes), so absolute numbers vary from run to run; compare the columns of one run.
- **Page cache.** {cache}.
- **Push summary line** (the push's own clock, without the closing `sync`):
  `{r["line"]}`.
{MARK_END}"""


def write_results(text: str) -> None:
    import re

    old = RESULTS.read_text() if RESULTS.is_file() else "# Benchmark results\n"
    pattern = re.compile(re.escape(MARK_BEGIN) + r".*?" + re.escape(MARK_END), re.DOTALL)
    new = pattern.sub(lambda _: text, old) if pattern.search(old) else f"{old.rstrip()}\n\n{text}"
    RESULTS.write_text(new.rstrip("\n") + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each (median)")
    parser.add_argument("--no-write", action="store_true", help="do not update RESULTS.md")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    load_at_start = os.getloadavg()
    WORK.mkdir(parents=True, exist_ok=True)
    results = bench(args.repeats)
    text = section(results, load_at_start, (time.perf_counter() - started) / 60)
    print()
    print(table(results))
    if not args.no_write:
        write_results(text)
        print(f"\nupdated {RESULTS.relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
