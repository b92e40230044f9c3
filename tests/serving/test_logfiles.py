"""Compaction of the logs' files: fewer files, the same rows for every query, at every step."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from tessera.serving import logfiles
from tessera.serving.logfiles import compact, feedback_files, prediction_files
from tessera.serving.predlog import (
    FeedbackLog,
    PredictionLog,
    feedback_count,
    online_quality,
    read_predictions,
)

from support import cancer_project, serving_app, until

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
DAY = 86_400.0
NOW = T0 + 2 * DAY + 600  # 2023-11-16 22:23 UTC: the 14th and the 15th are finished days


def _log_days(root: Path) -> None:
    """Three days of predictions of two versions (the second with an extra column), one file
    per record, and feedback for some of them."""
    for day in range(3):
        predictions = PredictionLog(root, worker="host:1", flush_rows=1)
        labels = []
        for i in range(6):
            version = "1" if i % 2 else "2"
            columns: dict[str, Any] = {"x": [float(i), float(i + 1)]}
            if version == "2":
                columns["extra"] = pd.Series(["a", None], dtype=object)
            request = f"d{day}-r{i}"
            predictions.record(
                request_id=request,
                model="churn",
                version=version,
                variant="champion",
                rollout_id=None,
                latency_ms=1.0,
                frame=pd.DataFrame(columns),
                predictions=np.array([i % 2, 1]),
                probabilities=np.array([0.25, 0.75]),
                time=T0 + day * DAY + i,
            )
            predictions.flush()  # one file per record
            labels.append((request, 0, i % 2))
        predictions.close()
        feedback = FeedbackLog(root, worker="host:1")
        for half in (labels[:3], labels[3:]):  # two files
            feedback.record(half, T0 + day * DAY + 10)
            feedback.flush()
        feedback.close()


def _queries(root: Path) -> tuple[Any, ...]:
    frame = read_predictions(root, "churn").sort_values(["request_id", "row"])
    quality = online_quality(
        root, "churn", task="classification", classes=[0, 1], metric="accuracy"
    )
    return (
        frame.reset_index(drop=True).to_dict("list"),
        {k: (v.n, v.value) for k, v in quality.items()},
        feedback_count(root),
    )


def _files(root: Path) -> list[str]:
    return sorted(p.name for p in root.rglob("*") if p.is_file())


def _partition(root: Path, date: str) -> Path:
    return root / "predictions" / "model=churn" / f"date={date}"


def test_finished_days_are_merged_and_every_query_reads_the_same(tmp_path: Path) -> None:
    root = tmp_path / "log"
    _log_days(root)
    before = _queries(root)
    old = _partition(root, "2023-11-14")
    assert len(list(old.glob("*.parquet"))) == 6

    first = compact(root, now=NOW)
    # the two finished days of predictions and of feedback; not today, 2023-11-16
    assert sorted((str(Path(p).relative_to(root)), n) for p, n in first.merged) == [
        ("feedback/date=2023-11-14", 2),
        ("feedback/date=2023-11-15", 2),
        ("predictions/model=churn/date=2023-11-14", 6),
        ("predictions/model=churn/date=2023-11-15", 6),
    ]
    assert len(list(_partition(root, "2023-11-16").glob("*.parquet"))) == 6
    assert first.deleted == 2 * 6 + 2 * 2  # the small files merged
    # two schemas (version 2 has a column more): two merged files, and the marker
    merged = sorted(p.name for p in old.iterdir() if not p.name.startswith("."))
    assert len(merged) == 3 and all(n.startswith("+compacted-") for n in merged)
    assert merged[-1].endswith(".done")
    assert _queries(root) == before
    assert len(prediction_files(root, "churn", None)) == 2 + 2 + 6

    again = compact(root, now=NOW)  # nothing new
    assert again.merged == [] and again.deleted == 0
    assert _queries(root) == before


def test_a_late_file_after_a_merge_is_read_and_merged_next(tmp_path: Path) -> None:
    root = tmp_path / "log"
    _log_days(root)
    compact(root, now=NOW)
    old = _partition(root, "2023-11-14")
    late = PredictionLog(root, worker="host:2")
    late.record(
        request_id="late",
        model="churn",
        version="1",
        variant="champion",
        rollout_id=None,
        latency_ms=1.0,
        frame=pd.DataFrame({"x": [9.0]}),
        predictions=np.array([1]),
        probabilities=np.array([0.9]),
        time=T0 + 30,
    )
    late.close()
    assert "late" in set(read_predictions(root, "churn")["request_id"])
    before = _queries(root)
    again = compact(root, now=NOW)
    assert [(Path(p).name, n) for p, n in again.merged] == [("date=2023-11-14", 3)]
    assert len(list(old.glob("+compacted-*.done"))) == 1  # the earlier merge's are gone
    assert len(list(old.glob("*.parquet"))) == 2
    assert _queries(root) == before


def test_a_query_that_lists_a_file_merged_meanwhile_lists_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tessera.serving import predlog

    root = tmp_path / "log"
    _log_days(root)
    expected = read_predictions(root, "churn")
    calls: list[int] = []

    def listed_before_the_merge(*args: Any) -> list[str]:
        calls.append(1)
        files = prediction_files(*args)
        return [*files, str(tmp_path / "merged-meanwhile.parquet")] if len(calls) == 1 else files

    monkeypatch.setattr(predlog, "prediction_files", listed_before_the_merge)
    assert read_predictions(root, "churn").equals(expected)
    assert len(calls) == 2


def test_a_merge_cut_short_reads_as_before(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Killed after its merged files are in place but before its marker: they are ignored."""
    root = tmp_path / "log"
    _log_days(root)
    before = _queries(root)
    touch = Path.touch

    def crash(self: Path, *args: Any, **kwargs: Any) -> None:
        if self.name.endswith(".done"):
            raise KeyboardInterrupt  # the process dies here
        touch(self, *args, **kwargs)

    monkeypatch.setattr(Path, "touch", crash)
    with pytest.raises(KeyboardInterrupt):
        compact(root, now=NOW)
    monkeypatch.undo()
    assert list(_partition(root, "2023-11-14").glob("+compacted-*.parquet"))
    assert _queries(root) == before
    compact(root, now=NOW)  # the next pass completes it
    assert list(_partition(root, "2023-11-14").glob("+compacted-*.done"))
    assert _queries(root) == before


def test_a_partition_being_compacted_elsewhere_is_skipped(tmp_path: Path) -> None:
    import fcntl

    root = tmp_path / "log"
    _log_days(root)
    old = _partition(root, "2023-11-14")
    with open(old / ".compact.lock", "a+b") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        report = compact(root, now=NOW)
    assert report.busy == 1
    assert "date=2023-11-14" not in {Path(p).name for p, _ in report.merged if "model=" in p}
    assert not list(old.glob("+compacted-*"))


def test_the_server_compacts_finished_days_unless_told_not_to(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tessera.serving import runtime

    monkeypatch.setattr(runtime, "COMPACT_DELAY_SECONDS", 0.0)
    project = cancer_project(tmp_path / "p")
    log = project.root / ".tessera" / "predictions"
    _log_days(log)  # 2023: long finished
    old = log / "predictions" / "model=churn" / "date=2023-11-16"
    with serving_app(project.root, prediction_log={"compact": False}) as client:
        client.wait_ready()
        time.sleep(1.0)
    assert not list(old.glob("+compacted-*"))
    with serving_app(project.root) as client:
        client.wait_ready()
        until(lambda: list(old.glob("+compacted-*.done")), 30, "the merge")


def test_worker_files_never_look_merged() -> None:
    """Worker names are made of [A-Za-z0-9_.-]: none starts with the merged files' prefix."""
    from tessera.serving.predlog import _UNSAFE

    assert _UNSAFE.sub("_", logfiles.COMPACTED) != logfiles.COMPACTED
    assert feedback_files(Path("/nonexistent"), None) == []
    assert os.sep not in logfiles.COMPACTED
