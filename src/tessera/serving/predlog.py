"""The prediction log and the feedback log of ``tessera serve``, and the queries over them.

Both logs are date-partitioned Parquet under one directory (``prediction_log.dir``)::

    predictions/model=<name>/date=<YYYY-MM-DD>/<host>-<pid>-<unix_ms>-<seq>.parquet
    feedback/date=<YYYY-MM-DD>/<host>-<pid>-<unix_ms>-<seq>.parquet

A prediction row holds ``request_id``, ``row`` (int32, position in the request), ``time``
(timestamp[us, UTC]), ``model``, ``version``, ``variant``, ``rollout_id`` (null outside a
rollout), ``latency_ms``, ``prediction`` (the model's native type), ``probability`` (the
positive class's, binary classifiers only) and ``inputs`` (a struct with one field per input
column). A feedback row holds ``request_id``, ``row``, ``label`` (the JSON value as text: ``1``,
``1.5``, ``true``, ``yes``) and ``time``.

Writing is off the request path: :meth:`PredictionLog.record` appends a reference to the
request's inputs (their array, when all columns share a numeric type, else the frame) and
outputs to a deque (about two microseconds) and a daemon thread turns batches
into Parquet, when ``flush_rows`` rows are waiting or the oldest has waited ``flush_seconds``.
Memory is bounded by ``max_pending_rows``: a record that would exceed it is dropped whole and
counted. Files appear atomically (written under a hidden temporary name in the same directory,
then renamed), so readers never see half a file. :meth:`close` writes everything still pending.

The queries (:func:`read_predictions`, :func:`online_quality`, :func:`shadow_agreement`,
:func:`feedback_count`) run DuckDB over the files and return plain Python. They list the
partition directories themselves, so only the model's partitions from ``since``'s date on are
opened, and a missing or empty log is an empty result rather than an error.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import math
import os
import re
import threading
import time as _time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial, wraps
from pathlib import Path
from typing import Any, ClassVar, ParamSpec, TypeVar

import duckdb
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from tessera.serving.inputs import uniform_values
from tessera.serving.logfiles import (
    FEEDBACK,
    PREDICTIONS,
    date_of,
    feedback_files,
    prediction_files,
)
from tessera.training.metrics import Predictions, encode, score
from tessera.training.spec import METRICS, PROBABILITY_METRICS

_LOG = logging.getLogger(__name__)
_P = ParamSpec("_P")
_R = TypeVar("_R")

#: How often, at most, the writer thread looks at its queue (the ``flush_rows`` trigger).
POLL_SECONDS = 0.05
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]")
_WRITE_ERRORS = (OSError, pa.ArrowException, ValueError, TypeError)
#: Numbers the files of this process, so two logs writing in the same millisecond (or a log
#: reopened) never pick the same name: os.replace would silently overwrite the first file.
_FILE_NUMBERS = itertools.count()


# --------------------------------------------------------------------------------------------
# Writers
# --------------------------------------------------------------------------------------------


class _BatchWriter:
    """A bounded queue of records and the daemon thread that writes them as Parquet.

    Args:
        directory: the log's root (``<project>/<prediction_log.dir>``).
        flush_rows: rows waiting that trigger a write.
        flush_seconds: longest time a row waits before it is written.
        max_pending_rows: rows held in memory at most; a record beyond it is dropped whole.
        worker: this process's identity, ``host:pid``; it starts every file name.
        on_written: called with the number of rows of each file written (metrics).
        on_dropped: called with the number of rows of each dropped record or failed file.

    Producers (:meth:`_enqueue`) take only a lock of their own, for the counters; the writer
    side (the thread, :meth:`flush`, :meth:`close`) never takes it. That keeps
    :meth:`close` safe to call from a signal handler that interrupted a producer on the same
    thread. Items are tuples ``(rows, monotonic time, ...)``.
    """

    kind: ClassVar[str]

    def __init__(
        self,
        directory: Path,
        *,
        flush_rows: int = 5000,
        flush_seconds: float = 5.0,
        max_pending_rows: int = 200_000,
        worker: str,
        on_written: Callable[[int], None] | None = None,
        on_dropped: Callable[[int], None] | None = None,
    ) -> None:
        if flush_rows < 1:
            raise ValueError(f"flush_rows must be at least 1, got {flush_rows}")
        if not flush_seconds > 0:
            raise ValueError(f"flush_seconds must be positive, got {flush_seconds}")
        if max_pending_rows < 1:
            raise ValueError(f"max_pending_rows must be at least 1, got {max_pending_rows}")
        self.directory = Path(directory)
        self._root = self.directory / self.kind
        self._flush_rows = flush_rows
        self._flush_seconds = flush_seconds
        self._max_pending = max_pending_rows
        self._prefix = _UNSAFE.sub("_", worker.replace(":", "-")) or "worker"
        self._on_written = on_written
        self._on_dropped = on_dropped
        self._queue: deque[tuple[Any, ...]] = deque()
        self._producer_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._closed = False
        # Producer-side counters (under _producer_lock).
        self._enqueued = 0
        self._refused = 0
        # Writer-side counters (under _write_lock).
        self._taken = 0
        self._written = 0
        self._failed = 0
        self._errors = 0
        ref = weakref.ref(self)

        def at_exit() -> None:
            log = ref()
            if log is not None:
                log.close()
                if log._thread is None or not log._thread.is_alive():
                    log._drain()  # what a producer interrupted by close() appended after it

        self._at_exit = at_exit
        atexit.register(at_exit)

    # -- counters -------------------------------------------------------------------------
    @property
    def pending_rows(self) -> int:
        """Rows accepted but not yet written (queued or being written)."""
        return self._enqueued - self._written - self._failed

    @property
    def written_rows(self) -> int:
        """Rows written to Parquet files."""
        return self._written

    @property
    def dropped_rows(self) -> int:
        """Rows lost: refused under overload or after close, or in a failed write."""
        return self._refused + self._failed

    @property
    def write_errors(self) -> int:
        """Files that could not be written (their rows are counted in :attr:`dropped_rows`)."""
        return self._errors

    # -- life cycle -----------------------------------------------------------------------
    def start(self) -> None:
        """Start the writer thread (a no-op when it runs or the log is closed)."""
        if self._thread is not None or self._closed:
            return
        self._thread = threading.Thread(
            target=self._run, name=f"tessera-{self.kind}-log", daemon=True
        )
        self._thread.start()

    def flush(self) -> None:
        """Write everything pending now, on the calling thread (blocks until written)."""
        self._drain()

    def close(self, timeout: float = 30.0) -> None:
        """Write everything pending and stop the thread; later records are dropped.

        Idempotent, and what a graceful shutdown (SIGTERM) calls; it is also registered with
        :mod:`atexit` as a fallback.

        Args:
            timeout: seconds to wait for the writer thread to finish its last write.
        """
        if self._closed:
            return
        self._closed = True
        self._stop.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)
            if thread.is_alive():
                _LOG.error(
                    "tessera: the %s log writer did not finish within %.0f s; %d rows pending",
                    self.kind,
                    timeout,
                    self.pending_rows,
                )
                return
        self._drain()

    # -- producer side ----------------------------------------------------------------------
    def _enqueue(self, rows: int, item: tuple[Any, ...]) -> bool:
        """Queue ``item`` (``rows`` rows) unless closed or full; False when dropped."""
        with self._producer_lock:
            if self._closed or (
                self._enqueued - self._written - self._failed + rows > self._max_pending
            ):
                self._refused += rows
                dropped = True
            else:
                self._queue.append(item)
                self._enqueued += rows
                dropped = False
        if dropped and self._on_dropped is not None:
            self._on_dropped(rows)
        return not dropped

    # -- writer side ------------------------------------------------------------------------
    def _run(self) -> None:
        while not self._stop.is_set():
            wait = self._seconds_until_due()
            if wait <= 0:
                self._drain()
            else:
                self._stop.wait(wait)
        self._drain()

    def _seconds_until_due(self) -> float:
        if self._enqueued - self._taken >= self._flush_rows:
            return 0.0
        try:
            oldest = self._queue[0][1]
        except IndexError:
            return POLL_SECONDS
        return min(POLL_SECONDS, self._flush_seconds - (_time.monotonic() - oldest))

    def _drain(self) -> None:
        """Take every queued item and write it, one file per group."""
        with self._write_lock:
            items = []
            queue = self._queue
            for _ in range(len(queue)):
                items.append(queue.popleft())
            if not items:
                return
            total = sum(item[0] for item in items)
            self._taken += total
            try:
                groups = list(self._groups(items))
            except Exception:
                # A bug rather than a write error: keep the writer thread alive, count the rows.
                _LOG.exception("tessera: %d %s log rows are dropped", total, self.kind)
                self._failed += total
                self._errors += 1
                self._notify(self._on_dropped, total)
                return
            for folder, rows, build in groups:
                self._write(folder, rows, build)

    def _write(self, folder: Path, rows: int, build: Callable[[], pa.Table]) -> None:
        """Build one table and write it atomically; a failure drops (and counts) its rows."""
        name = f"{self._prefix}-{int(_time.time() * 1000)}-{next(_FILE_NUMBERS)}.parquet"
        temporary = folder / f".{name}.tmp"
        try:
            table = build()
            folder.mkdir(parents=True, exist_ok=True)
            pq.write_table(table, temporary)
            os.replace(temporary, folder / name)
        except Exception as exc:  # the writer thread must survive whatever happens here
            message = "tessera: cannot write %d %s log rows to %s, they are dropped: %s"
            if isinstance(exc, _WRITE_ERRORS):  # a full disk, a permission: one line
                _LOG.error(message, rows, self.kind, folder, exc)
            else:  # a bug: with its traceback
                _LOG.exception(message, rows, self.kind, folder, exc)
            self._failed += rows
            self._errors += 1
            with contextlib.suppress(OSError):
                temporary.unlink(missing_ok=True)
            self._notify(self._on_dropped, rows)
            return
        self._written += rows
        self._notify(self._on_written, rows)

    def _notify(self, hook: Callable[[int], None] | None, rows: int) -> None:
        """Call a metrics hook; one that fails must not cost log rows or the thread."""
        if hook is None:
            return
        try:
            hook(rows)
        except Exception:
            _LOG.exception("tessera: a metrics hook of the %s log failed", self.kind)

    def _groups(
        self, items: list[tuple[Any, ...]]
    ) -> Iterator[tuple[Path, int, Callable[[], pa.Table]]]:
        """The files to write: folder, rows and a function building the table."""
        raise NotImplementedError


class PredictionLog(_BatchWriter):
    """The prediction log: one row per scored input row, batched off the request path.

    Its items are ``(rows, queued_at, time, request_id, model, version, variant, rollout_id,
    latency_ms, frame, predictions, probabilities)``. The constructor's arguments are those of
    :class:`_BatchWriter`.
    """

    kind = PREDICTIONS

    def record(
        self,
        *,
        request_id: str,
        model: str,
        version: str,
        variant: str,
        rollout_id: str | None,
        latency_ms: float,
        frame: pd.DataFrame,
        predictions: np.ndarray,
        probabilities: np.ndarray | None,
        time: float,
    ) -> bool:
        """Queue one request's predictions; cheap, it only keeps references.

        The frame and arrays must not be modified afterwards.

        Args:
            request_id: the request's id (feedback refers to it).
            model: the model's name.
            version: the version that answered.
            variant: ``champion``, ``candidate`` or ``shadow``.
            rollout_id: the rollout the request was routed by, or None.
            latency_ms: the model's time for the request, in milliseconds.
            frame: the validated input rows.
            predictions: one prediction per row.
            probabilities: the positive class's probability per row (binary classifiers;
                a ``(rows, 2)`` array is accepted too), or None.
            time: when the request was answered, in unix seconds.

        Returns:
            False when the record was dropped (the log is full or closed).

        Raises:
            ValueError: ``predictions``, ``probabilities`` and ``frame`` differ in length.
        """
        rows = len(predictions)
        if rows != frame.shape[0] or (probabilities is not None and len(probabilities) != rows):
            raise ValueError(
                f"request {request_id}: {rows} predictions for {frame.shape[0]} input rows"
                + ("" if probabilities is None else f" and {len(probabilities)} probabilities")
            )
        if rows == 0:
            return True
        return self._enqueue(
            rows,
            (
                rows,
                _time.monotonic(),
                time,
                request_id,
                model,
                version,
                variant,
                rollout_id,
                latency_ms,
                _compact(frame),
                predictions,
                probabilities,
            ),
        )

    def _groups(
        self, items: list[tuple[Any, ...]]
    ) -> Iterator[tuple[Path, int, Callable[[], pa.Table]]]:
        # Records of one version share their input columns, and its DataFrames are
        # concatenated by pandas (which reconciles their types); arrays (see _compact) are
        # stacked, so they are grouped by their columns and type. Groups whose columns and
        # types agree share a file. (frame.dtypes costs 20 µs: looked at once per group.)
        by_version: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
        for item in items:
            inputs = item[9]
            kind = (inputs[1], inputs[0].dtype.str) if isinstance(inputs, tuple) else None
            by_version.setdefault((item[4], date_of(item[2]), item[5], kind), []).append(item)
        by_schema: dict[tuple[Any, ...], list[tuple[Any, ...]]] = {}
        for (model, date, _, kind), group in by_version.items():
            inputs, predictions = group[0][9], np.asarray(group[0][10])
            if kind is not None:
                schema: tuple[Any, ...] = (kind[1], *kind[0])
            else:
                schema = tuple((str(c), str(t)) for c, t in inputs.dtypes.items())
            key = (model, date, schema, str(predictions.dtype), predictions.ndim)
            by_schema.setdefault(key, []).extend(group)
        for (model, date, *_), group in by_schema.items():
            folder = self._root / f"model={model}" / f"date={date}"
            yield folder, sum(item[0] for item in group), partial(_prediction_table, group)


class FeedbackLog(_BatchWriter):
    """The feedback log: ground truth for earlier predictions, by request id and row.

    Its items are ``(rows, queued_at, time, [(request_id, row, label), ...])``. The
    constructor's arguments are those of :class:`_BatchWriter`.
    """

    kind = FEEDBACK

    def record(self, items: Sequence[tuple[str, int, Any]], time: float) -> bool:
        """Queue labels for earlier predictions.

        Args:
            items: ``(request_id, row, label)`` triples, the label as parsed from JSON
                (a string, number or boolean). The sequence must not be modified afterwards.
            time: when the feedback arrived, in unix seconds.

        Returns:
            False when the items were dropped (the log is full or closed).
        """
        rows = len(items)
        if rows == 0:
            return True
        return self._enqueue(rows, (rows, _time.monotonic(), time, items))

    def _groups(
        self, items: list[tuple[Any, ...]]
    ) -> Iterator[tuple[Path, int, Callable[[], pa.Table]]]:
        by_date: dict[str, list[tuple[Any, ...]]] = {}
        for item in items:
            by_date.setdefault(date_of(item[2]), []).append(item)
        for date, group in by_date.items():
            folder = self._root / f"date={date}"
            yield folder, sum(item[0] for item in group), partial(_feedback_table, group)


def _micros(times: list[float], counts: np.ndarray) -> pa.Array:
    stamps = np.round(np.asarray(times, dtype=float) * 1e6).astype(np.int64)
    return pa.array(np.repeat(stamps, counts), pa.timestamp("us", tz="UTC"))


def _rows(counts: np.ndarray) -> pa.Array:
    """0, 1, ..., n-1 for every record of ``counts`` rows, concatenated."""
    total = int(counts.sum())
    starts = np.repeat(np.cumsum(counts) - counts, counts)
    return pa.array((np.arange(total) - starts).astype(np.int32), pa.int32())


def _repeated(values: list[Any], counts: np.ndarray, kind: pa.DataType) -> pa.Array:
    if len(counts) == int(counts.sum()):  # one row per record, the usual
        return pa.array(values, kind)
    return pa.array(np.repeat(np.array(values, dtype=object), counts), kind)


def _prediction_table(group: list[tuple[Any, ...]]) -> pa.Table:
    """The Parquet table of a group of prediction records (same model, date and schema)."""

    def field(i: int) -> list[Any]:
        return [item[i] for item in group]

    counts = np.asarray(field(0), dtype=np.int64)
    predictions = np.concatenate([np.asarray(p) for p in field(10)])
    if predictions.ndim == 2 and predictions.shape[1] == 1:
        predictions = predictions.ravel()
    prediction = (
        pa.array(predictions) if predictions.ndim == 1 else pa.array(list(predictions.tolist()))
    )
    probability, missing = _probabilities(field(0), field(11), int(counts.sum()))
    columns: dict[str, pa.Array] = {
        "request_id": _repeated(field(3), counts, pa.string()),
        "row": _rows(counts),
        "time": _micros(field(2), counts),
        "model": _repeated(field(4), counts, pa.string()),
        "version": _repeated([str(v) for v in field(5)], counts, pa.string()),
        "variant": _repeated(field(6), counts, pa.string()),
        "rollout_id": _repeated(field(7), counts, pa.string()),
        "latency_ms": pa.array(np.repeat(np.asarray(field(8), dtype=float), counts)),
        "prediction": prediction,
        "probability": pa.array(probability, pa.float64(), mask=missing),
    }
    records = field(9)
    if _width(records[0]):
        columns["inputs"] = _inputs(records)
    return pa.table(columns)


def _probabilities(
    counts: list[int], given: list[Any], total: int
) -> tuple[np.ndarray, np.ndarray]:
    """The positive class's probability per row, and where there is none."""
    if all(p is not None and np.ndim(p) == 1 for p in given):  # the usual: an array a record
        return np.concatenate(given).astype(float, copy=False), np.zeros(total, dtype=bool)
    probability = np.full(total, np.nan)
    missing = np.ones(total, dtype=bool)
    start = 0
    for n, proba in zip(counts, given, strict=True):
        if proba is not None:
            proba = np.asarray(proba, dtype=float)
            if proba.ndim == 2 and proba.shape[1] == 2:
                proba = proba[:, 1]
            if proba.ndim == 1:
                probability[start : start + n] = proba
                missing[start : start + n] = False
        start += n
    return probability, missing


#: A record's input rows as (values, column names): see :func:`_compact`.
_Rows = tuple[np.ndarray, tuple[str, ...]]
#: Column names per index object (kept alive, so that its id stays its own).
_NAMES: dict[int, tuple[pd.Index, tuple[str, ...]]] = {}


def _compact(frame: pd.DataFrame) -> pd.DataFrame | _Rows:
    """What a record keeps of its frame.

    A uniformly numeric table is kept as its array (a view, no copy) and its column names: a
    tuple of objects the garbage collector stops looking at after one glance, instead of a
    DataFrame's dozens of objects that every collection walks while thousands of records
    wait to be written (which showed as pauses of several milliseconds under load).
    """
    values = uniform_values(frame)
    if values is not None and values.dtype.kind in "fiub":
        return values, _names(frame.columns)
    return frame


def _names(columns: pd.Index) -> tuple[str, ...]:
    """The names of ``columns``, remembered for index objects seen before (the tables of a
    model's fast input path share one)."""
    known = _NAMES.get(id(columns))
    if known is not None and known[0] is columns:
        return known[1]
    names = tuple(str(c) for c in columns)
    if len(_NAMES) < 256:
        _NAMES[id(columns)] = (columns, names)
    return names


def _width(inputs: pd.DataFrame | _Rows) -> int:
    return len(inputs[1]) if isinstance(inputs, tuple) else int(inputs.shape[1])


def _inputs(records: list[pd.DataFrame | _Rows]) -> pa.StructArray:
    """The records' input rows as one struct column, as ``pyarrow`` converts a DataFrame.

    Arrays of one group share their columns and type: they are stacked (about 1 µs a record).
    DataFrames are concatenated by pandas (about 10 µs a record, all of it holding the
    interpreter lock that requests wait for).
    """
    first = records[0]
    if isinstance(first, tuple):
        columns = np.ascontiguousarray(np.vstack([r[0] for r in records]).T)
        return pa.StructArray.from_arrays(
            [pa.array(column, from_pandas=True) for column in columns], names=list(first[1])
        )
    frames: list[pd.DataFrame] = records  # type: ignore[assignment]
    frame = frames[0] if len(frames) == 1 else pd.concat(frames, ignore_index=True)
    # One thread: no pool competing with requests, and none that interpreter shutdown (the
    # atexit flush) has already closed.
    inputs = pa.Table.from_pandas(frame, preserve_index=False, nthreads=1)
    return pa.StructArray.from_arrays(
        [column.combine_chunks() for column in inputs.columns], fields=list(inputs.schema)
    )


def _label_text(label: Any) -> str | None:
    """A JSON label as text: strings as they are, other scalars as JSON (``1``, ``true``)."""
    if label is None or isinstance(label, str):
        return label
    if isinstance(label, np.generic):
        label = label.item()
    return json.dumps(label)


def _feedback_table(group: list[tuple[Any, ...]]) -> pa.Table:
    """The Parquet table of a group of feedback records (same date)."""
    counts = np.asarray([item[0] for item in group], dtype=np.int64)
    entries = [entry for item in group for entry in item[3]]
    return pa.table(
        {
            "request_id": pa.array([str(e[0]) for e in entries], pa.string()),
            "row": pa.array([int(e[1]) for e in entries], pa.int32()),
            "label": pa.array([_label_text(e[2]) for e in entries], pa.string()),
            "time": _micros([item[2] for item in group], counts),
        }
    )


# --------------------------------------------------------------------------------------------
# Queries
# --------------------------------------------------------------------------------------------

_CONNECTION: duckdb.DuckDBPyConnection | None = None
_CONNECTION_PID = 0
_CONNECTION_LOCK = threading.Lock()
_PREDICTION_TYPES = "{'model': 'VARCHAR', 'date': 'DATE'}"
_FEEDBACK_TYPES = "{'date': 'DATE'}"
_PREDICTION_COLUMNS = [
    "request_id",
    "row",
    "time",
    "model",
    "version",
    "variant",
    "rollout_id",
    "latency_ms",
    "prediction",
    "probability",
    "inputs",
]


def _cursor() -> duckdb.DuckDBPyConnection:
    """A cursor of this process's in-memory DuckDB database.

    Opening a database costs ~15 ms and a cursor ~0.2 ms, and these queries run every few
    seconds during a rollout, so the database is opened once per process (again after a
    fork) and every call gets its own cursor: cursors are independent connections to the
    database, usable concurrently from several threads without a lock around the queries.
    DuckDB is held to two threads so a query does not take the cores serving requests.
    """
    global _CONNECTION, _CONNECTION_PID
    with _CONNECTION_LOCK:
        if _CONNECTION is None or os.getpid() != _CONNECTION_PID:
            _CONNECTION = duckdb.connect(config={"threads": min(2, os.cpu_count() or 1)})
            _CONNECTION.execute("SET GLOBAL TimeZone = 'UTC'")
            _CONNECTION_PID = os.getpid()
        return _CONNECTION.cursor()


def _scan(parameter: str, types: str) -> str:
    return (
        f"read_parquet(${parameter}, hive_partitioning = true, union_by_name = true, "
        f"hive_types = {types})"
    )


def _arrow(relation: duckdb.DuckDBPyRelation) -> pa.Table:
    """A relation's rows as an Arrow table (DuckDB 2 renamed ``arrow`` to this)."""
    if hasattr(relation, "to_arrow_table"):
        return relation.to_arrow_table()
    return relation.arrow()  # pragma: no cover - DuckDB 1.x


def _relisting(query: Callable[_P, _R]) -> Callable[_P, _R]:
    """Run a log query once more when a file it listed vanished before DuckDB opened it: a
    compaction merged it meanwhile (see :mod:`tessera.serving.logfiles`)."""

    @wraps(query)
    def run(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return query(*args, **kwargs)
        except duckdb.IOException:
            return query(*args, **kwargs)

    return run


@_relisting
def read_predictions(
    directory: Path, model: str | None = None, *, since: float | None = None
) -> pd.DataFrame:
    """The prediction log as a DataFrame, oldest first.

    Args:
        directory: the log's root (``prediction_log.dir``).
        model: only this model's predictions (default: all).
        since: only predictions made at or after this unix time.

    Returns:
        One row per logged prediction with the columns of the log (``inputs`` holds dicts);
        no rows when nothing is logged yet.
    """
    files = prediction_files(directory, model, since)
    if not files:
        return pd.DataFrame(columns=_PREDICTION_COLUMNS)
    where, params = _prediction_filter(files, model, since)
    with _cursor() as cursor:
        relation = cursor.sql(
            f"SELECT * EXCLUDE (date) FROM {_scan('files', _PREDICTION_TYPES)} {where} "
            'ORDER BY "time", request_id, "row"',
            params=params,
        )
        return _arrow(relation).to_pandas()


def _prediction_filter(
    files: list[str], model: str | None, since: float | None, rollout_id: str | None = None
) -> tuple[str, dict[str, Any]]:
    clauses: list[str] = []
    params: dict[str, Any] = {"files": files}
    if model is not None:
        clauses.append("model = $model")
        params["model"] = model
    if since is not None:
        clauses.append('"time" >= to_timestamp($since)')
        params["since"] = float(since)
    if rollout_id is not None:
        clauses.append("rollout_id = $rollout_id")
        params["rollout_id"] = rollout_id
    return ("WHERE " + " AND ".join(clauses)) if clauses else "", params


@dataclass(frozen=True)
class QualityStats:
    """A model version's quality on the labelled predictions of one variant.

    Attributes:
        n: labelled predictions the metric is computed on.
        metric: the metric's name.
        value: the metric over those rows (NaN when undefined, e.g. ROC AUC of one class).
        loss_mean: mean per-row loss: 0/1 error for classifiers, squared error for regressors.
        loss_var: its sample variance (ddof 1; 0.0 with fewer than two rows).
    """

    n: int
    metric: str
    value: float
    loss_mean: float
    loss_var: float


@_relisting
def online_quality(
    directory: Path,
    model: str,
    *,
    task: str,
    classes: Sequence[Any] | None,
    metric: str,
    rollout_id: str | None = None,
    since: float | None = None,
) -> dict[tuple[str, str], QualityStats]:
    """The quality of each version and variant of a model on the predictions given feedback.

    Predictions are joined to feedback on ``(request_id, row)``; when a row got feedback more
    than once, the latest wins. Labels are converted to the prediction's type: for
    classifiers, matched to a class by its text (``1`` matches ``"1"`` and ``"1.0"``, ``True``
    matches ``"true"``), for regressors parsed as numbers; labels that match no class or are no
    number are skipped. Probability metrics (``roc_auc``, ``log_loss``) use the logged
    positive-class probability, so they cover binary classifiers' rows that have one.

    Args:
        directory: the log's root (``prediction_log.dir``).
        model: the model's name.
        task: ``classification`` or ``regression``.
        classes: the classifier's classes in the order of its probabilities (the positive
            class second); None: the distinct predicted values, sorted.
        metric: a metric of ``task`` (see ``tessera.training.spec.METRICS``).
        rollout_id: only predictions routed by this rollout.
        since: only predictions made at or after this unix time.

    Returns:
        ``{(version, variant): QualityStats}`` for every pair with at least one usable row.

    Raises:
        ValueError: an unknown task, or a metric that is not one of the task's.
    """
    if task not in METRICS:
        raise ValueError(f"unknown task '{task}' (expected one of: {', '.join(METRICS)})")
    if metric not in METRICS[task]:
        raise ValueError(
            f"metric '{metric}' does not apply to a {task} model "
            f"(its metrics: {', '.join(METRICS[task])})"
        )
    predicted = prediction_files(directory, model, since)
    labelled = feedback_files(directory, since)
    if not predicted or not labelled:
        return {}
    where, params = _prediction_filter(predicted, model, since, rollout_id)
    params["feedback"] = labelled
    with _cursor() as cursor:
        joined = _arrow(
            cursor.sql(
                f"""
                WITH p AS (
                    SELECT request_id, "row", version, variant, prediction, probability
                    FROM {_scan("files", _PREDICTION_TYPES)} {where}
                ), f AS (
                    SELECT request_id, "row", arg_max(label, "time") AS label
                    FROM {_scan("feedback", _FEEDBACK_TYPES)}
                    GROUP BY request_id, "row"
                )
                SELECT p.version, p.variant, p.prediction, p.probability, f.label
                FROM p JOIN f USING (request_id, "row")
                """,
                params=params,
            )
        ).to_pandas()
    results = {}
    for (version, variant), rows in joined.groupby(["version", "variant"], sort=True):
        stats = _quality(rows, task, classes, metric)
        if stats is not None:
            results[(str(version), str(variant))] = stats
    return results


def _quality(
    rows: pd.DataFrame, task: str, classes: Sequence[Any] | None, metric: str
) -> QualityStats | None:
    """The metric and per-row loss of joined rows; None when no row is usable."""
    if task == "regression":
        truth = pd.to_numeric(rows["label"], errors="coerce").to_numpy(dtype=float)
        predicted = pd.to_numeric(rows["prediction"], errors="coerce").to_numpy(dtype=float)
        keep = np.isfinite(truth) & np.isfinite(predicted)
        truth, predicted = truth[keep], predicted[keep]
        if not len(truth):
            return None
        scored = encode(task, [], truth, predicted)
        losses = (predicted - truth) ** 2
    else:
        if classes is None:
            classes = sorted(rows["prediction"].dropna().unique().tolist())
        position = ClassPositions(classes)
        truth = position.of(rows["label"])
        predicted = position.of(rows["prediction"])
        keep = truth >= 0
        proba = None
        if metric in PROBABILITY_METRICS:
            probability = rows["probability"].to_numpy(dtype=float, na_value=np.nan)
            keep &= np.isfinite(probability)
            if len(position) != 2:
                return None  # the log holds no probabilities of multi-class models
            proba = np.column_stack([1 - probability[keep], probability[keep]])
        truth, predicted = truth[keep], predicted[keep]
        if not len(truth):
            return None
        # Already class positions, which is what encode() would make of them, row by row.
        scored = Predictions(task, truth, predicted, proba, len(position))
        losses = (truth != predicted).astype(float)
    value = score(scored, [metric], samples=0)[0].value
    n = len(losses)
    return QualityStats(
        n=n,
        metric=metric,
        value=value,
        loss_mean=float(losses.mean()),
        loss_var=float(losses.var(ddof=1)) if n > 1 else 0.0,
    )


class ClassPositions:
    """Labels and predictions to class positions, matched by text; -1 for no class."""

    def __init__(self, classes: Sequence[Any]) -> None:
        self._by_text: dict[str, int] = {}
        self._by_bool: dict[str, int] = {}
        self._by_number: dict[float, int] = {}
        self._count = len(classes)
        for i, c in enumerate(np.asarray(classes, dtype=object).tolist()):
            text = str(c)
            self._by_text.setdefault(text, i)
            if isinstance(c, bool):
                self._by_bool.setdefault(text.lower(), i)
            elif isinstance(c, int | float):
                self._by_number.setdefault(float(c), i)

    def __len__(self) -> int:
        return self._count

    def find(self, value: Any) -> int:
        """The class position of one label, -1 for none."""
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return -1
        if isinstance(value, np.generic):
            value = value.item()
        text = str(value)
        found = self._by_text.get(text)
        if found is None and self._by_bool:
            found = self._by_bool.get(text.lower())
        if found is None and self._by_number:
            try:
                found = self._by_number.get(float(text))
            except ValueError:
                found = None
        return -1 if found is None else found

    def of(self, values: pd.Series) -> np.ndarray:
        """The class position of every value (computed once per distinct value)."""
        codes, uniques = pd.factorize(values, use_na_sentinel=True)
        found = np.array([self.find(u) for u in uniques.tolist()] + [-1], dtype=np.int64)
        return found[codes]


@_relisting
def shadow_agreement(
    directory: Path, model: str, rollout_id: str, *, since: float | None = None
) -> tuple[int, int]:
    """How often a shadow's predictions agree with the champion's during a rollout.

    Args:
        directory: the log's root (``prediction_log.dir``).
        model: the model's name.
        rollout_id: the rollout.
        since: only predictions made at or after this unix time (e.g. the rollout's start,
            to open fewer files).

    Returns:
        ``(compared, agreeing)``: rows ``(request_id, row)`` predicted by both the
        ``champion`` and the ``shadow`` variant, and those whose predictions are equal
        (floating-point predictions: within a relative 1e-6).
    """
    files = prediction_files(directory, model, since)
    if not files:
        return 0, 0
    where, params = _prediction_filter(files, model, since, rollout_id)
    # One scan, one aggregation per (request_id, row). typeof() is constant per query and
    # try_cast binds for any type, so the same SQL serves floating-point predictions
    # (math.isclose with rel_tol 1e-6) and exact ones.
    left, right = "try_cast(champion AS DOUBLE)", "try_cast(shadow AS DOUBLE)"
    agree = (
        "CASE WHEN typeof(champion) IN ('DOUBLE', 'FLOAT') "
        f"THEN abs({left} - {right}) <= 1e-6 * greatest(abs({left}), abs({right})) "
        "ELSE champion = shadow END"
    )
    with _cursor() as cursor:
        compared, agreeing = cursor.sql(
            f"""
            WITH pairs AS (
                SELECT
                    any_value(prediction) FILTER (WHERE variant = 'champion') AS champion,
                    any_value(prediction) FILTER (WHERE variant = 'shadow') AS shadow,
                    count(*) FILTER (WHERE variant = 'champion') AS champions,
                    count(*) FILTER (WHERE variant = 'shadow') AS shadows
                FROM {_scan("files", _PREDICTION_TYPES)}
                {where} AND variant IN ('champion', 'shadow')
                GROUP BY request_id, "row"
            )
            SELECT count(*), coalesce(count_if({agree}), 0)
            FROM pairs WHERE champions > 0 AND shadows > 0
            """,
            params=params,
        ).fetchall()[0]
    return int(compared), int(agreeing)


@_relisting
def feedback_count(directory: Path, *, since: float | None = None) -> int:
    """Feedback rows received (at or after ``since``, a unix time, when given)."""
    files = feedback_files(directory, since)
    if not files:
        return 0
    params: dict[str, Any] = {"feedback": files}
    where = ""
    if since is not None:
        where = 'WHERE "time" >= to_timestamp($since)'
        params["since"] = float(since)
    with _cursor() as cursor:
        (count,) = cursor.sql(
            f"SELECT count(*) FROM {_scan('feedback', _FEEDBACK_TYPES)} {where}", params=params
        ).fetchall()[0]
    return int(count)
