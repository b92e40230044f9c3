"""Lineage costs: recording on a 20-stage run, and answering on a 200-stage history.

Run from the repository root with ``.venv/bin/python bench/lineage/run.py``. It measures, inside
one process (so interpreter start-up and imports do not dilute the difference):

1. the 20-stage benchmark pipeline (200,000 x 20 floats, one column transform per stage), run
   cold with run records and lineage written to the metadata store, and with a store that
   writes nothing; median of 7 each, interleaved. Target: within 5 %.
2. ``tessera.data.lineage.lineage`` on a 200-stage chain recorded in SQLite: median of 20 calls.
   Target: under 100 ms.

Results go to bench/RESULTS.md between the ``bench:lineage`` markers.
"""

from __future__ import annotations

import platform
import re
import shutil
import statistics
import sys
import time
from pathlib import Path
from typing import Any

BENCH = Path(__file__).resolve().parents[1]
WORK = BENCH / "work" / "lineage"
RESULTS = BENCH / "RESULTS.md"
ROWS, COLS, STAGES, REPEATS = 200_000, 20, 20, 15
#: Seconds spent inside the metadata store's write calls, per recorded run.
RECORDING: list[float] = []
MARK_BEGIN, MARK_END = "<!-- bench:lineage -->", "<!-- /bench:lineage -->"

OPS = '''
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
    """Map one column to x * scale + shift."""
    return df.assign(**{cfg.column: df[cfg.column] * cfg.scale + cfg.shift})
'''


def make_project() -> Path:
    import numpy as np
    import pandas as pd

    shutil.rmtree(WORK, ignore_errors=True)
    (WORK / "transforms").mkdir(parents=True)
    (WORK / "data").mkdir()
    rng = np.random.default_rng(7)
    pd.DataFrame({f"c{i}": rng.standard_normal(ROWS) for i in range(COLS)}).to_parquet(
        WORK / "data" / "input.parquet"
    )
    (WORK / "tessera.yaml").write_text("name: lineage-bench\n")
    (WORK / "transforms" / "ops.py").write_text(OPS)
    lines = ["stages:", "  s0: {uses: read_table, with: {path: data/input.parquet}}"]
    for i in range(1, STAGES + 1):
        lines.append(
            f"  s{i}: {{uses: affine_column, inputs: [s{i - 1}], "
            f"with: {{column: c{(i - 1) % COLS}, shift: {i}}}}}"
        )
    (WORK / "pipeline.yaml").write_text("\n".join(lines) + "\n")
    return WORK


def timed_run(record: bool) -> float:
    from tessera.data.metadata import MetadataStore
    from tessera.pipeline.runner import run_pipeline
    from tessera.pipeline.runners import make_executor
    from tessera.pipeline.workspace import open_workspace

    class NoRecords(MetadataStore):
        def start_run(self, run_id: str, pipeline: str, **info: Any) -> None:
            pass

        def finish_run(self, run_id: str, status: str, stages: Any) -> None:
            pass

    class TimedRecords(MetadataStore):
        spent = 0.0

        def start_run(self, run_id: str, pipeline: str, **info: Any) -> None:
            t = time.perf_counter()
            super().start_run(run_id, pipeline, **info)
            TimedRecords.spent += time.perf_counter() - t

        def finish_run(self, run_id: str, status: str, stages: Any) -> None:
            t = time.perf_counter()
            super().finish_run(run_id, status, stages)
            TimedRecords.spent += time.perf_counter() - t

    shutil.rmtree(WORK / ".tessera" / "cache", ignore_errors=True)
    ws = open_workspace(WORK)
    ws.records = (TimedRecords if record else NoRecords)(ws.records.url)
    start = time.perf_counter()
    summary = run_pipeline(ws, make_executor("local", 1))
    seconds = time.perf_counter() - start
    ws.close()
    if record:
        RECORDING.append(TimedRecords.spent)
    assert summary.status == "success" and summary.count("done") == STAGES + 1, summary
    return seconds


def lineage_query() -> list[float]:
    from tessera.data.lineage import lineage
    from tessera.data.metadata import MetadataStore, StageRecord, default_url

    state = WORK / "history"
    shutil.rmtree(state, ignore_errors=True)
    store = MetadataStore(default_url(state))
    store.start_run("r", "pipeline.yaml")
    records = [
        StageRecord(
            run_id="",
            stage=f"s{i}",
            status="done",
            uses="affine_column",
            started=float(i),
            outputs={"out": f"{i:032x}"},
            shapes={"out": [ROWS, COLS]},
            inputs=[[f"s{i - 1}.out", f"{i - 1:032x}"]] if i else [],
            deps={} if i else {"data/input.parquet": "f" * 32},
            config={"column": "c1"},
        )
        for i in range(200)
    ]
    store.finish_run("r", "success", records)
    lineage(store, f"{199:032x}")  # connect and warm up
    times = []
    for _ in range(20):
        start = time.perf_counter()
        tree = lineage(store, f"{199:032x}")
        times.append(time.perf_counter() - start)
    depth = 0
    while tree["inputs"]:
        tree, depth = tree["inputs"][0], depth + 1
    assert depth == 199
    store.close()
    return times


def write_results(with_rec: list[float], without: list[float], query: list[float]) -> str:
    from tessera import __version__

    overhead = statistics.median(with_rec) / statistics.median(without) - 1
    q = statistics.median(query) * 1000
    med_with, med_without = statistics.median(with_rec), statistics.median(without)
    row1 = (
        f"| 20-stage run, cold cache (median of {REPEATS}, in process) | {med_with:.3f} s "
        f"| {med_without:.3f} s | {overhead:+.1%} "
        f"| within 5 % {'PASS' if overhead <= 0.05 else 'FAIL'} |"
    )
    row2 = (
        f"| `lineage` of stage 200 of a 200-stage history (median of 20) | {q:.1f} ms | - "
        f"| {q:.1f} ms | < 100 ms {'PASS' if q < 100 else 'FAIL'} |"
    )
    section = f"""{MARK_BEGIN}
## Lineage: recording overhead and query time (`bench/lineage/run.py`)

Run on {time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())} with
`.venv/bin/python bench/lineage/run.py` (tessera {__version__}, Python
{platform.python_version()}, SQLite metadata store).

| Measurement | With records | Without | Result | Target |
| --- | ---: | ---: | --- | --- |
{row1}
{row2}

- Measured directly, the two write calls took {statistics.median(RECORDING) * 1000:.1f} ms per
  run (median; {statistics.median(RECORDING) / med_with:.1%} of a run), which is the cost of
  recording; the difference of the medians above is mostly run-to-run noise.
- Runs alternate with and without records; each deletes the artifact cache first, so every
  stage computes and stores its output. "Without" replaces the metadata store's two write
  calls (start of run, end of run) with no-ops; everything else is the same.
- Raw seconds with records: {", ".join(f"{t:.3f}" for t in with_rec)}; without:
  {", ".join(f"{t:.3f}" for t in without)}.
{MARK_END}"""
    text = RESULTS.read_text() if RESULTS.exists() else "# Benchmark results\n"
    if MARK_BEGIN in text:
        text = re.sub(
            re.escape(MARK_BEGIN) + ".*?" + re.escape(MARK_END), lambda m: section, text, flags=re.S
        )
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    RESULTS.write_text(text)
    return section


def main() -> int:
    make_project()
    timed_run(True)  # warm up imports, registry and page cache
    RECORDING.clear()
    with_rec, without = [], []
    for _ in range(REPEATS):
        with_rec.append(timed_run(True))
        without.append(timed_run(False))
    print(write_results(with_rec, without, lineage_query()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
