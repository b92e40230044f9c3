"""The prediction and feedback logs: real Parquet files in tmp_path, real DuckDB queries."""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from sklearn.metrics import accuracy_score, mean_squared_error, roc_auc_score

from tessera.serving.predlog import (
    FeedbackLog,
    PredictionLog,
    QualityStats,
    feedback_count,
    online_quality,
    read_predictions,
    shadow_agreement,
)

T0 = 1_700_000_000.0  # 2023-11-14 22:13:20 UTC
DATE = "2023-11-14"
WORKER = "host.example:123"


def frame(rows: int = 2, **columns: Any) -> pd.DataFrame:
    """Input rows: a float, a string and an int32 column unless others are given."""
    if not columns:
        columns = {
            "x": np.arange(rows, dtype=float),
            "plan": np.array([f"p{i}" for i in range(rows)], dtype=object),
            "n": np.arange(rows, dtype=np.int32),
        }
    return pd.DataFrame(columns)


def record(log: PredictionLog, request_id: str, rows: int = 2, **fields: Any) -> bool:
    values: dict[str, Any] = {
        "model": "churn",
        "version": "1",
        "variant": "champion",
        "rollout_id": None,
        "latency_ms": 1.5,
        "time": T0,
        "probabilities": None,
    }
    values.update(fields)
    inputs = values.pop("frame", None)
    if inputs is None:
        inputs = frame(rows)
    predictions = values.pop("predictions", None)
    if predictions is None:
        predictions = np.arange(len(inputs)) % 2
    return log.record(request_id=request_id, frame=inputs, predictions=predictions, **values)


def files(root: Path, kind: str = "predictions") -> list[Path]:
    return sorted((root / kind).rglob("*.parquet"))


def rows_in(paths: list[Path]) -> int:
    return sum(pq.read_metadata(p).num_rows for p in paths)


def wait_for(condition: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


@pytest.fixture
def logs(tmp_path: Path) -> Any:
    """A prediction log and a feedback log over tmp_path/log, closed afterwards."""
    opened: list[Any] = []

    def make(kind: type = PredictionLog, **options: Any) -> Any:
        options.setdefault("worker", WORKER)
        log = kind(tmp_path / "log", **options)
        opened.append(log)
        return log

    yield make
    for log in opened:
        log.close()


# -- the files ---------------------------------------------------------------------------------


def test_prediction_files_have_the_documented_schema_and_partitions(tmp_path: Path, logs) -> None:
    log = logs()
    record(log, "r1", probabilities=np.array([0.2, 0.9]), rollout_id="ro-1", variant="candidate")
    record(log, "r2", rows=3, time=T0 + 1.25)
    log.flush()

    (path,) = files(tmp_path / "log")
    assert path.parent == tmp_path / "log" / "predictions" / "model=churn" / f"date={DATE}"
    host, pid, unix_ms, seq = path.stem.rsplit("-", 3)
    assert (host, pid) == ("host.example", "123") and seq.isdigit()  # numbered per process
    assert abs(int(unix_ms) / 1000 - time.time()) < 60
    table = pq.read_table(path)
    schema = table.schema
    assert schema.field("request_id").type == pa.string()
    assert schema.field("row").type == pa.int32()
    assert schema.field("time").type == pa.timestamp("us", tz="UTC")
    for name in ("model", "version", "variant", "rollout_id"):
        assert schema.field(name).type == pa.string()
    assert schema.field("latency_ms").type == pa.float64()
    assert schema.field("prediction").type == pa.int64()
    assert schema.field("probability").type == pa.float64()
    inputs = schema.field("inputs").type
    assert pa.types.is_struct(inputs)
    assert inputs.field("x").type == pa.float64()
    assert pa.types.is_string(inputs.field("plan").type) or pa.types.is_large_string(
        inputs.field("plan").type
    )
    assert inputs.field("n").type == pa.int32()
    data = table.to_pylist()
    assert [(r["request_id"], r["row"]) for r in data] == [
        ("r1", 0),
        ("r1", 1),
        ("r2", 0),
        ("r2", 1),
        ("r2", 2),
    ]
    assert [r["probability"] for r in data] == [0.2, 0.9, None, None, None]
    assert [r["rollout_id"] for r in data] == ["ro-1", "ro-1", None, None, None]
    assert data[2]["time"].timestamp() == T0 + 1.25
    assert data[4]["inputs"] == {"x": 2.0, "plan": "p2", "n": 2}

    glob = str(tmp_path / "log" / "predictions" / "*" / "*" / "*.parquet")
    got = duckdb.sql(
        f"SELECT model, date::VARCHAR, inputs.plan FROM read_parquet('{glob}', "
        'hive_partitioning = true, union_by_name = true) ORDER BY request_id, "row"'
    ).fetchall()
    assert got[0] == ("churn", DATE, "p0")
    assert [g[2] for g in got] == ["p0", "p1", "p0", "p1", "p2"]


def test_inputs_are_logged_as_pyarrow_converts_the_frames(tmp_path: Path, logs) -> None:
    """Uniformly numeric tables are kept as arrays and stacked, others concatenated by pandas:
    either way a row's inputs and their types are what pyarrow makes of its frame."""
    shared = pd.Index(["a", "b"])  # as the tables of a model's fast input path share theirs
    frames = {
        "floats-1": pd.DataFrame([[1.5, np.nan]], columns=shared),
        "floats-2": pd.DataFrame([[2.5, 3.0], [-4.0, 1e300]], columns=shared),
        "ints": pd.DataFrame({"a": [7, 8], "b": [9, -10]}),
        "int-with-null": pd.DataFrame({"a": [7.0, np.nan], "b": [1.0, 2.0]}),
        "bools": pd.DataFrame({"a": [True], "b": [False]}),
        "mixed": pd.DataFrame({"a": [1.0], "b": pd.Series(["x"], dtype=object)}),
    }
    log = logs()
    for request_id, inputs in frames.items():
        record(log, request_id, frame=inputs)
    log.flush()

    logged: dict[str, list[Any]] = {}
    types: dict[str, pa.DataType] = {}
    for path in files(tmp_path / "log"):
        table = pq.read_table(path)
        for row in table.to_pylist():
            logged.setdefault(row["request_id"], []).append(row["inputs"])
            types[row["request_id"]] = table.schema.field("inputs").type
    for request_id, inputs in frames.items():
        expected = pa.Table.from_pandas(inputs, preserve_index=False)
        assert logged[request_id] == expected.to_pylist(), request_id
        assert types[request_id] == pa.struct(list(expected.schema)), request_id


def test_predictions_keep_their_native_type(tmp_path: Path, logs) -> None:
    log = logs()
    outputs = {
        "labels": np.array(["no", "yes"], dtype=object),
        "flags": np.array([True, False]),
        "values": np.array([0.5, 1.5]),
        "counts": np.array([3, 4], dtype=np.int64),
    }
    for model, predictions in outputs.items():
        record(log, model, model=model, predictions=predictions)
    log.flush()
    kinds = {
        p.parent.parent.name: pq.read_schema(p).field("prediction").type
        for p in files(tmp_path / "log")
    }
    assert kinds == {
        "model=labels": pa.string(),
        "model=flags": pa.bool_(),
        "model=values": pa.float64(),
        "model=counts": pa.int64(),
    }


def test_feedback_files_hold_labels_as_json_text(tmp_path: Path, logs) -> None:
    log = logs(FeedbackLog)
    assert log.record([("a", 0, 1), ("a", 1, 1.5), ("b", 0, True), ("c", 3, "yes")], T0)
    assert log.record([("d", 0, np.int64(0))], T0 + 86_400)
    log.flush()
    paths = files(tmp_path / "log", "feedback")
    assert [p.parent.name for p in paths] == [f"date={DATE}", "date=2023-11-15"]
    table = pq.read_table(paths[0])
    assert table.schema == pa.schema(
        [
            ("request_id", pa.string()),
            ("row", pa.int32()),
            ("label", pa.string()),
            ("time", pa.timestamp("us", tz="UTC")),
        ]
    )
    assert table.column("label").to_pylist() == ["1", "1.5", "true", "yes"]
    assert table.column("row").to_pylist() == [0, 1, 0, 3]
    assert pq.read_table(paths[1]).column("label").to_pylist() == ["0"]


def test_two_versions_with_different_columns_go_to_different_files(tmp_path: Path, logs) -> None:
    log = logs()
    record(log, "a", version="1", frame=frame(2))
    record(log, "b", version="2", frame=frame(2, x=[1.0, 2.0], age=[30, 40]))
    record(log, "c", version="3", frame=frame(1))  # the same columns as version 1
    log.flush()
    paths = files(tmp_path / "log")
    assert len(paths) == 2
    by_fields = {tuple(pq.read_schema(p).field("inputs").type.names): p for p in paths}
    assert set(by_fields) == {("x", "plan", "n"), ("x", "age")}
    assert pq.read_table(by_fields[("x", "plan", "n")]).column("version").to_pylist() == [
        "1",
        "1",
        "3",
    ]

    table = read_predictions(tmp_path / "log", "churn")
    assert table["request_id"].tolist() == ["a", "a", "b", "b", "c"]
    assert table["inputs"].iloc[2]["age"] == 30
    assert table["inputs"].iloc[0]["plan"] == "p0"


# -- batching ----------------------------------------------------------------------------------


def test_a_write_is_triggered_by_flush_rows(tmp_path: Path, logs) -> None:
    written: list[int] = []
    log = logs(flush_rows=10, flush_seconds=60, on_written=written.append)
    log.start()
    log.start()  # idempotent
    for i in range(3):
        record(log, f"r{i}", rows=3)
    time.sleep(0.2)
    assert files(tmp_path / "log") == []
    assert log.pending_rows == 9
    record(log, "r3", rows=3)
    wait_for(lambda: log.written_rows == 12)
    assert rows_in(files(tmp_path / "log")) == 12
    assert written == [12]
    assert log.pending_rows == 0


def test_a_write_is_triggered_by_flush_seconds(tmp_path: Path, logs) -> None:
    log = logs(flush_rows=1000, flush_seconds=0.3)
    log.start()
    started = time.monotonic()
    record(log, "r1")
    time.sleep(0.1)
    assert files(tmp_path / "log") == []
    wait_for(lambda: log.written_rows == 2)
    assert 0.25 < time.monotonic() - started < 2
    assert len(files(tmp_path / "log")) == 1


# -- bounded memory ----------------------------------------------------------------------------


def test_a_record_beyond_max_pending_rows_is_dropped_whole_and_counted(logs) -> None:
    dropped: list[int] = []
    written: list[int] = []
    log = logs(max_pending_rows=10, on_dropped=dropped.append, on_written=written.append)
    assert record(log, "a", rows=4)
    assert record(log, "b", rows=4)
    assert not record(log, "c", rows=3)  # 8 + 3 > 10
    assert record(log, "d", rows=2)  # 8 + 2 = 10
    assert not record(log, "e", rows=1)
    assert (log.pending_rows, log.dropped_rows, log.written_rows) == (10, 4, 0)
    assert dropped == [3, 1]
    log.flush()
    assert (log.pending_rows, log.dropped_rows, log.written_rows) == (0, 4, 10)
    assert written == [10]
    assert record(log, "f", rows=10)
    assert not record(log, "g", rows=11)  # larger than the whole buffer


def test_counters_add_up_under_overload_from_many_threads(tmp_path: Path, logs) -> None:
    log = logs(flush_rows=50, flush_seconds=0.05, max_pending_rows=200)
    log.start()
    accepted = [0] * 8
    one = frame(1)

    def produce(k: int) -> None:
        for i in range(2000):
            if record(log, f"{k}-{i}", frame=one, predictions=np.array([1])):
                accepted[k] += 1

    threads = [threading.Thread(target=produce, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    log.close()
    assert log.dropped_rows > 0
    assert sum(accepted) + log.dropped_rows == 16_000
    assert log.written_rows == sum(accepted)
    assert rows_in(files(tmp_path / "log")) == sum(accepted)
    assert log.pending_rows == 0 and log.write_errors == 0


# -- shutdown ----------------------------------------------------------------------------------


def test_close_writes_everything_and_later_records_are_dropped(tmp_path: Path, logs) -> None:
    log = logs(flush_rows=10_000, flush_seconds=3600)
    log.start()
    for i in range(20):
        record(log, f"r{i}")
    log.close()
    log.close()  # idempotent
    assert rows_in(files(tmp_path / "log")) == 40
    assert not record(log, "late")
    assert (log.written_rows, log.dropped_rows, log.pending_rows) == (40, 2, 0)

    unstarted = logs(FeedbackLog)
    unstarted.record([("r1", 0, 1)], T0)
    unstarted.close()
    assert rows_in(files(tmp_path / "log", "feedback")) == 1


SHUTDOWN_SCRIPT = """
import signal, sys, threading
from pathlib import Path
import numpy as np, pandas as pd
from tessera.serving.predlog import FeedbackLog, PredictionLog

root = Path(sys.argv[1])
log = PredictionLog(root / "closed", flush_rows=100_000, flush_seconds=3600,
                    max_pending_rows=10_000_000, worker="test:1")
log.start()
# Never closed: written by the atexit fallback, on the writer thread or on the main thread.
started = FeedbackLog(root / "at-exit", worker="test:1")
started.start()
unstarted = PredictionLog(root / "at-exit", worker="test:1")
stop = threading.Event()

def on_term(signum, frame):
    log.close()
    stop.set()

signal.signal(signal.SIGTERM, on_term)
# Over 100 rows per column: pyarrow converts with a thread pool unless told not to, and by
# the time atexit handlers run, new thread-pool work is refused.
tall = pd.DataFrame({"x": np.arange(100, dtype=float), "y": np.arange(100)})
for i in range(20):
    unstarted.record(request_id=f"r{i}", model="m", version="1", variant="champion",
                     rollout_id=None, latency_ms=1.0, frame=tall,
                     predictions=np.zeros(100), probabilities=None, time=1.7e9)
    started.record([(f"r{i}", 0, 1)], 1.7e9)
inputs = pd.DataFrame({"x": [1.0, 2.0]})
accepted = i = 0
while not stop.is_set():
    accepted += 2 * log.record(request_id=f"r{i}", model="m", version="1", variant="champion",
                               rollout_id=None, latency_ms=1.0, frame=inputs,
                               predictions=np.array([0, 1]), probabilities=None, time=1.7e9)
    i += 1
    if i == 1000:
        print("ready", flush=True)
print(accepted, flush=True)
"""


def test_nothing_is_lost_on_sigterm_or_at_exit(tmp_path: Path) -> None:
    process = subprocess.Popen(
        [sys.executable, "-c", SHUTDOWN_SCRIPT, str(tmp_path)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stdout.readline().strip() == "ready"
    process.send_signal(signal.SIGTERM)
    out, err = process.communicate(timeout=30)
    assert process.returncode == 0, err
    assert err == ""
    accepted = int(out.strip())
    assert accepted >= 2000
    # The handler's close() wrote everything accepted,
    assert rows_in(files(tmp_path / "closed")) == accepted
    # and the logs nobody closed were written at exit.
    assert rows_in(files(tmp_path / "at-exit")) == 2000
    assert rows_in(files(tmp_path / "at-exit", "feedback")) == 20


def test_a_failing_metrics_hook_loses_no_rows(
    tmp_path: Path, logs, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(rows: int) -> None:
        raise RuntimeError("metrics are down")

    log = logs(on_written=broken)
    record(log, "a")
    record(log, "b", version="2", frame=frame(2, other=[1, 2]))
    log.flush()
    assert (log.written_rows, log.dropped_rows, log.write_errors) == (4, 0, 0)
    assert rows_in(files(tmp_path / "log")) == 4
    assert "a metrics hook of the predictions log failed" in caplog.text


def test_a_record_must_be_consistent(logs) -> None:
    log = logs()
    with pytest.raises(ValueError, match="request r1: 3 predictions for 2 input rows"):
        record(log, "r1", predictions=np.zeros(3))
    with pytest.raises(ValueError, match="and 1 probabilities"):
        record(log, "r1", probabilities=np.zeros(1))
    assert record(log, "empty", frame=frame(0), predictions=np.zeros(0))
    assert log.pending_rows == 0


def test_readers_never_see_a_partial_file(tmp_path: Path, logs) -> None:
    log = logs()
    big = frame(2000)
    stop = threading.Event()
    scans = [0]
    problems: list[str] = []

    def read() -> None:
        while not stop.is_set():
            for path in files(tmp_path / "log"):
                try:
                    assert pq.read_table(path).num_rows == 2000
                except Exception as exc:  # any failure to read is what this test looks for
                    problems.append(f"{path.name}: {exc!r}")
            scans[0] += 1

    reader = threading.Thread(target=read)
    reader.start()
    for i in range(30):
        record(log, f"r{i}", frame=big, predictions=np.zeros(2000))
        log.flush()
    stop.set()
    reader.join()
    assert problems == []
    assert scans[0] > 1
    assert len(files(tmp_path / "log")) == 30
    leftovers = [p for p in (tmp_path / "log").rglob("*") if p.is_file() and p.suffix != ".parquet"]
    assert leftovers == []


@contextlib.contextmanager
def unprivileged() -> Iterator[None]:
    """Run as user ``nobody`` (effective uid) when root, for whom permissions do not apply."""
    if os.geteuid() != 0:
        yield
        return
    os.seteuid(65534)
    try:
        yield
    finally:
        os.seteuid(0)


def test_a_read_only_directory_counts_drops_without_raising(
    logs, caplog: pytest.LogCaptureFixture
) -> None:
    # Not under tmp_path: its parent is private to root, so nobody could not even look in.
    base = Path(tempfile.mkdtemp(prefix="tessera-predlog-"))
    try:
        base.chmod(0o755)
        partition = base / "log" / "predictions" / "model=churn" / f"date={DATE}"
        partition.mkdir(parents=True)
        for folder in (partition, *partition.parents[:3]):  # up to base / "log"
            folder.chmod(0o555)
        dropped: list[int] = []
        log = PredictionLog(base / "log", worker=WORKER, on_dropped=dropped.append)
        record(log, "r1", rows=3)
        with unprivileged():
            log.flush()
        assert (log.write_errors, log.dropped_rows, log.written_rows) == (1, 3, 0)
        assert dropped == [3]
        assert "cannot write 3 predictions log rows" in caplog.text
        assert "Permission denied" in caplog.text
        assert list(partition.iterdir()) == []

        partition.chmod(0o755)
        record(log, "r2", rows=2)
        log.close()
        assert (log.write_errors, log.dropped_rows, log.written_rows) == (1, 3, 2)
    finally:
        for folder in base.rglob("*"):
            folder.chmod(0o755)
        shutil.rmtree(base)


def test_a_failed_write_does_not_stop_the_writer_thread(
    tmp_path: Path, logs, caplog: pytest.LogCaptureFixture
) -> None:
    root = tmp_path / "log"
    partition = root / "predictions" / "model=churn" / f"date={DATE}"
    partition.parent.mkdir(parents=True)
    partition.write_text("a file where the partition directory should be")
    dropped: list[int] = []
    log = logs(flush_rows=1, on_dropped=dropped.append)
    log.start()
    record(log, "r1", rows=3)
    wait_for(lambda: log.write_errors == 1)
    assert (log.dropped_rows, log.written_rows, log.pending_rows) == (3, 0, 0)
    assert dropped == [3]
    assert "cannot write 3 predictions log rows" in caplog.text
    assert str(partition) in caplog.text

    partition.unlink()
    record(log, "r2", rows=2)
    wait_for(lambda: log.written_rows == 2)
    assert log.write_errors == 1
    assert rows_in(files(root)) == 2


# -- queries -----------------------------------------------------------------------------------


def feedback(root: Path, items: list[tuple[str, int, Any]], at: float = T0 + 60) -> None:
    log = FeedbackLog(root, worker=WORKER)
    log.record(items, at)
    log.close()


def test_online_quality_of_a_binary_classifier_equals_sklearn(tmp_path: Path) -> None:
    root = tmp_path / "log"
    rng = np.random.default_rng(0)
    log = PredictionLog(root, worker=WORKER)
    truth: dict[tuple[str, str], list[tuple[int, int, float]]] = {}
    labels = []
    for i in range(120):
        version, variant = ("1", "champion") if i % 3 else ("2", "candidate")
        proba = rng.random(2)
        predicted = (proba > 0.5).astype(np.int64)
        record(
            log,
            f"r{i}",
            version=version,
            variant=variant,
            predictions=predicted,
            probabilities=proba,
            rollout_id="ro",
        )
        for row in range(2):
            if (i + row) % 5 == 0:
                continue  # no feedback for this row
            label = int(rng.random() < proba[row])
            labels.append((f"r{i}", row, [label, str(label)][i % 2]))  # 1 and "1" alike
            truth.setdefault((version, variant), []).append(
                (label, int(predicted[row]), float(proba[row]))
            )
    log.close()
    labels.append(("unknown-request", 0, 1))
    feedback(root, labels)

    for metric in ("accuracy", "roc_auc"):
        quality = online_quality(
            root, "churn", task="classification", classes=[0, 1], metric=metric
        )
        assert set(quality) == {("1", "champion"), ("2", "candidate")}
        for key, rows in truth.items():
            y, predicted, proba = (np.array(c) for c in zip(*rows, strict=True))
            expected = (
                accuracy_score(y, predicted) if metric == "accuracy" else roc_auc_score(y, proba)
            )
            stats = quality[key]
            assert stats.n == len(y) and stats.metric == metric
            assert stats.value == pytest.approx(expected)
            errors = (y != predicted).astype(float)
            assert stats.loss_mean == pytest.approx(errors.mean())
            assert stats.loss_var == pytest.approx(errors.var(ddof=1))
    log_loss = online_quality(
        root, "churn", task="classification", classes=[0, 1], metric="log_loss"
    )
    assert log_loss[("1", "champion")].value > 0


def test_online_quality_of_a_regressor_is_rmse(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = PredictionLog(root, worker=WORKER)
    predicted = np.array([1.0, 2.0, 3.0, 4.5])
    record(log, "a", rows=4, predictions=predicted)
    log.close()
    feedback(root, [("a", 0, 1.5), ("a", 1, "2"), ("a", 2, 2), ("a", 3, "not a number")])

    (stats,) = online_quality(
        root, "churn", task="regression", classes=None, metric="rmse"
    ).values()
    y = np.array([1.5, 2.0, 2.0])
    assert stats == QualityStats(
        n=3,
        metric="rmse",
        value=pytest.approx(math.sqrt(mean_squared_error(y, predicted[:3]))),
        loss_mean=pytest.approx(((predicted[:3] - y) ** 2).mean()),
        loss_var=pytest.approx(((predicted[:3] - y) ** 2).var(ddof=1)),
    )


def test_the_latest_feedback_for_a_row_wins(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = PredictionLog(root, worker=WORKER)
    record(log, "a", rows=2, predictions=np.array([1, 0]))
    log.close()
    feedback(root, [("a", 0, 0), ("a", 1, 1)], at=T0 + 10)
    feedback(root, [("a", 0, 1)], at=T0 + 20)  # corrects row 0, later
    feedback(root, [("a", 1, 0)], at=T0 + 5)  # arrives in a later file but is older
    quality = online_quality(
        root, "churn", task="classification", classes=[0, 1], metric="accuracy"
    )
    assert quality[("1", "champion")].n == 2
    assert quality[("1", "champion")].value == 0.5  # row 0 right (1), row 1 wrong (label 1)


@pytest.mark.parametrize(
    ("classes", "predictions", "labels", "usable", "right"),
    [
        ([0, 1], [1, 0, 1, 0], [1, "1", "1.0", 0], 4, 3),
        ([False, True], [True, False, True, False], ["true", True, "True", False], 4, 3),
        # "maybe" is no class; matching is by exact text, so "YES" is none either
        (["no", "yes"], ["yes", "no", "yes", "no"], ["yes", "yes", "maybe", "YES"], 2, 1),
        ([1.5, 2.5], [1.5, 2.5, 2.5, 1.5], ["1.5", 2.5, 1.5, "x"], 3, 2),
    ],
)
def test_labels_are_converted_to_the_prediction_type(
    tmp_path: Path,
    classes: list[Any],
    predictions: list[Any],
    labels: list[Any],
    usable: int,
    right: int,
) -> None:
    root = tmp_path / "log"
    log = PredictionLog(root, worker=WORKER)
    values = np.array(predictions, dtype=object if isinstance(classes[0], str) else None)
    record(log, "a", rows=4, predictions=values)
    log.close()
    feedback(root, [("a", row, label) for row, label in enumerate(labels)])
    (stats,) = online_quality(
        root, "churn", task="classification", classes=classes, metric="accuracy"
    ).values()
    assert stats.n == usable
    assert stats.value == pytest.approx(right / usable)


def test_online_quality_filters_by_rollout_and_time(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = PredictionLog(root, worker=WORKER)
    record(log, "before", rows=1, predictions=np.array([1]), time=T0 - 3 * 86_400)
    record(log, "other", rows=1, predictions=np.array([1]), rollout_id="ro-1")
    record(log, "this", rows=1, predictions=np.array([0]), rollout_id="ro-2", variant="candidate")
    record(log, "this", rows=1, predictions=np.array([1]), rollout_id="ro-2", version="0")
    log.close()
    feedback(root, [("before", 0, 1), ("other", 0, 1), ("this", 0, 1)])

    def quality(**options: Any) -> dict[tuple[str, str], int]:
        found = online_quality(
            root, "churn", task="classification", classes=[0, 1], metric="accuracy", **options
        )
        return {key: stats.n for key, stats in found.items()}

    assert quality() == {("1", "champion"): 2, ("1", "candidate"): 1, ("0", "champion"): 1}
    assert quality(rollout_id="ro-2") == {("1", "candidate"): 1, ("0", "champion"): 1}
    assert quality(since=T0 - 86_400) == {
        ("1", "champion"): 1,
        ("1", "candidate"): 1,
        ("0", "champion"): 1,
    }
    assert (
        online_quality(
            root, "other-model", task="classification", classes=[0, 1], metric="accuracy"
        )
        == {}
    )
    assert len(read_predictions(root, "churn")) == 4
    assert read_predictions(root, "churn", since=T0 - 86_400)["request_id"].tolist() == [
        "other",
        "this",
        "this",
    ]
    assert len(read_predictions(root)) == 4


def test_online_quality_rejects_a_metric_of_another_task(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="metric 'rmse' does not apply to a classification"):
        online_quality(tmp_path, "m", task="classification", classes=[0, 1], metric="rmse")


def test_shadow_agreement(tmp_path: Path) -> None:
    root = tmp_path / "log"
    log = PredictionLog(root, worker=WORKER)
    for i, (champion, shadow) in enumerate([([1, 0], [1, 1]), ([0, 0], [0, 0])]):
        record(log, f"c{i}", predictions=np.array(champion), rollout_id="ro")
        record(log, f"c{i}", predictions=np.array(shadow), rollout_id="ro", variant="shadow")
    record(log, "alone", predictions=np.array([1, 1]), rollout_id="ro")  # no shadow
    record(log, "old", predictions=np.array([1, 1]), rollout_id="ro-0", variant="shadow")
    record(log, "r", model="price", predictions=np.array([1.0, 2.0]), rollout_id="ro")
    record(
        log,
        "r",
        model="price",
        predictions=np.array([1.0 + 1e-9, 2.1]),
        rollout_id="ro",
        variant="shadow",
    )
    log.close()
    assert shadow_agreement(root, "churn", "ro") == (4, 3)
    assert shadow_agreement(root, "churn", "ro", since=T0 + 1) == (0, 0)
    assert shadow_agreement(root, "price", "ro") == (2, 1)
    assert shadow_agreement(root, "churn", "nope") == (0, 0)


def test_feedback_count(tmp_path: Path) -> None:
    root = tmp_path / "log"
    feedback(root, [("a", 0, 1), ("a", 1, 0)], at=T0)
    feedback(root, [("b", 0, 1)], at=T0 + 86_400)
    assert feedback_count(root) == 3
    assert feedback_count(root, since=T0 + 1) == 1


def test_queries_over_a_missing_or_empty_log_are_empty(tmp_path: Path) -> None:
    for root in (tmp_path / "missing", tmp_path / "empty"):
        if root.name == "empty":
            (root / "predictions" / "model=churn" / f"date={DATE}").mkdir(parents=True)
            (root / "predictions" / "model=churn" / f"date={DATE}" / ".x.parquet.tmp").touch()
            (root / "feedback").mkdir()
        assert read_predictions(root).empty
        assert read_predictions(root, "churn", since=T0).empty
        assert online_quality(root, "churn", task="regression", classes=None, metric="rmse") == {}
        assert shadow_agreement(root, "churn", "ro") == (0, 0)
        assert feedback_count(root) == 0
