"""Prometheus metrics of ``tessera serve``, correct with several worker processes.

One :class:`ServingMetrics` per server process records requests, predictions, feedback, online
quality, rollout state, prediction-log rows and the loaded model versions; ``GET /metrics``
answers with :meth:`ServingMetrics.render`. Names follow Prometheus' conventions: a ``tessera_``
prefix, base units (seconds, ratios), ``_total`` on counters.

One process (one uvicorn worker): the values live in the instance's own
:class:`~prometheus_client.CollectorRegistry`, so several instances never clash.

Several workers: the parent calls :func:`enable_multiprocess` before they start. It prepares an
empty directory and sets ``PROMETHEUS_MULTIPROC_DIR``, which the workers inherit; each worker's
:class:`ServingMetrics` then keeps its values in memory-mapped files there (prometheus_client's
multiprocess mode) and ``render`` merges the files of every worker, so whichever worker answers
a scrape reports the totals of all. Counters and histograms add up. Gauges merge by meaning:

- in-flight requests add up over the live workers (``livesum``);
- online quality and rollout state are facts about the model, not about a worker: every worker
  publishes the same value from shared data (prediction log, metadata store) and the most recent
  one wins (``mostrecent``). ``max`` would be wrong: a worker holding an older, higher accuracy
  (or a lower-is-better metric such as rmse) would hide a regression. Rollout gauges use
  ``livemostrecent`` so a dead worker's last state cannot linger;
- model info is 1 while any live worker holds that version (``livemax``).

Live gauges of workers that died are removed by :func:`mark_process_dead` and, failing that, at
the next :meth:`ServingMetrics.render` (files of process ids that no longer exist on this host).
"""

from __future__ import annotations

import os
import re
import threading
from collections import Counter as Tally
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any, Final

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client import values as prometheus_values
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.metrics_core import Metric
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.multiprocess import mark_process_dead as _remove_live_files

from tessera.errors import TesseraError

#: The environment variable that switches prometheus_client to multiprocess mode.
ENV_VAR: Final = "PROMETHEUS_MULTIPROC_DIR"
#: Content type of :meth:`ServingMetrics.render` (Prometheus text format 0.0.4).
CONTENT_TYPE: Final = CONTENT_TYPE_PLAIN_0_0_4

# fmt: off
#: Request latency buckets (seconds): 0.5 ms to 5 s, finest around the 1-10 ms targets.
LATENCY_BUCKETS: Final = (
    0.0005, 0.00075, 0.001, 0.0015, 0.002, 0.003, 0.005, 0.0075, 0.01, 0.015, 0.025, 0.05, 0.1,
    0.25, 0.5, 1.0, 2.5, 5.0,
)
# fmt: on
#: Buckets of the positive-class probability of binary classifiers: 0.05 to 1 by 0.05.
PROBABILITY_BUCKETS: Final = tuple(round(0.05 * i, 2) for i in range(1, 21))
# fmt: off
#: Default buckets of regressors' predicted values: signed, roughly logarithmic.
VALUE_BUCKETS: Final = (
    -1e4, -1e3, -100.0, -10.0, -1.0, 0.0, 1.0, 2.5, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0,
    1e3, 1e4, 1e5,
)
# fmt: on
#: Distinct predicted classes per model that get their own series; later ones count as OTHER.
MAX_CLASSES: Final = 50
OTHER: Final = "other"
#: Rollout strategies and states zeroed whenever the state changes (more are accepted).
ROLLOUT_STRATEGIES: Final = ("ab", "canary", "shadow")
ROLLOUT_STATES: Final = ("running", "promoted", "rolled_back", "aborted")
#: Strategy and state reported when no rollout runs.
NO_ROLLOUT: Final = "none"

_DB_FILE = re.compile(r"(counter|summary|histogram|gauge_[a-z]+)_\d+\.db")
_LIVE_FILE = re.compile(r"gauge_live[a-z]+_(\d+)\.db")
# prometheus_client picks its value class (plain or memory-mapped) from PROMETHEUS_MULTIPROC_DIR
# once, at import. Each ServingMetrics chooses explicitly instead: its metric children are
# created with prometheus_values.ValueClass swapped to its own class under this lock.
_CREATION_LOCK = threading.RLock()
_MULTIPROCESS_CLASSES: dict[str, Any] = {}


class MetricsError(TesseraError):
    """The metrics' multiprocess directory is missing or unusable."""

    exit_code = 2


def enable_multiprocess(directory: Path) -> None:
    """Switch the metrics of this process and its future children to multiprocess mode.

    Call it in the parent before the workers start: it creates ``directory`` (emptied of the
    metric files of an earlier run, nothing else is touched) and sets ``PROMETHEUS_MULTIPROC_DIR``,
    which the workers inherit. Use a directory of this server alone (a temporary one): two servers
    sharing it would add up each other's numbers.

    Raises:
        MetricsError: the directory cannot be created or cleaned.
    """
    directory = Path(directory)
    try:
        directory.mkdir(parents=True, exist_ok=True)
        for path in directory.iterdir():
            if _DB_FILE.fullmatch(path.name):
                path.unlink(missing_ok=True)
    except OSError as exc:
        raise MetricsError(f"cannot prepare the metrics directory {directory}: {exc}") from exc
    os.environ[ENV_VAR] = str(directory.resolve())


def mark_process_dead(pid: int, directory: Path | None = None) -> None:
    """Forget the live gauges (in-flight requests, model info...) of a worker that exited.

    Args:
        pid: the process id of the worker.
        directory: the multiprocess directory (default: ``PROMETHEUS_MULTIPROC_DIR``); without
            one, metrics are not in multiprocess mode and there is nothing to do.
    """
    path = directory if directory is not None else os.environ.get(ENV_VAR)
    if path:
        _remove_live_files(pid, str(path))


class ServingMetrics:
    """The metrics of one server process (see the module's docstring for multiprocess mode).

    Hot-path calls (:meth:`request`, :meth:`in_flight`, :meth:`predictions`) look their
    label children up in dictionaries; ``.labels()`` runs once per label combination.

    Args:
        value_buckets: histogram buckets of regressors' predicted values.
        max_classes: distinct predicted classes per model with their own series.
    """

    def __init__(
        self,
        *,
        value_buckets: Sequence[float] = VALUE_BUCKETS,
        max_classes: int = MAX_CLASSES,
    ) -> None:
        if max_classes < 1:
            raise ValueError(f"max_classes must be at least 1, got {max_classes}")
        if list(value_buckets) != sorted(set(value_buckets)) or not value_buckets:
            raise ValueError(
                f"value_buckets must be a non-empty increasing list, got {list(value_buckets)}"
            )
        self.max_classes = max_classes
        self._env = os.environ.get(ENV_VAR)
        self.directory = _multiprocess_directory()
        self.multiprocess = self.directory is not None
        self._value_class: Any = (
            _multiprocess_value_class(self.directory)
            if self.directory is not None
            else prometheus_values.MutexValue
        )
        with self._creating():
            self._define(value_buckets)
        self._value_bounds = np.array(self._value._upper_bounds)
        self._probability_bounds = np.array(self._probability._upper_bounds)
        source: Any = (
            MultiProcessCollector(None, path=str(self.directory))
            if self.directory is not None
            else _Metrics(self._metrics)
        )
        # OpenMetrics: no _sum for a histogram that may see negative values (prometheus_client
        # drops it in one process only); Prometheus' rate() would take its decreases for resets.
        hidden = {"tessera_prediction_value_sum"} if value_buckets[0] < 0 else set()
        self._registry = CollectorRegistry(auto_describe=False)
        self._registry.register(_Exposed(source, hidden))
        self._requests: dict[tuple[str, str, str, str, int], tuple[Counter, Histogram]] = {}
        self._classes: dict[tuple[str, str, str, Any], Counter] = {}
        self._others: dict[tuple[str, str, str], Counter] = {}
        self._class_labels: dict[str, set[str]] = {}
        self._probabilities: dict[tuple[str, str, str], Histogram] = {}
        self._values: dict[tuple[str, str, str], Histogram] = {}
        self._feedback: dict[tuple[str, str, str], Counter] = {}
        self._log_rows: dict[str, tuple[Counter, Counter]] = {}
        self._rollout_pairs: set[tuple[str, str]] = {(NO_ROLLOUT, NO_ROLLOUT)} | {
            (s, state) for s in ROLLOUT_STRATEGIES for state in ROLLOUT_STATES
        }
        self._info: dict[tuple[str, str], tuple[str, Gauge]] = {}
        self._in_flight = _InFlight(self._in_flight_gauge)

    def _define(self, value_buckets: Sequence[float]) -> None:
        variant = ("model", "version", "variant")
        self._requests_total = Counter(
            "tessera_http_requests_total",
            "Prediction requests answered, by model version, variant, route and status code.",
            [*variant, "route", "code"],
            registry=None,
        )
        self._latency = Histogram(
            "tessera_http_request_duration_seconds",
            "Time from receiving a prediction request to its answer, in seconds.",
            ["model", "variant", "route"],
            buckets=LATENCY_BUCKETS,
            registry=None,
        )
        self._in_flight_gauge = Gauge(
            "tessera_http_requests_in_flight",
            "Requests being answered now (over all workers).",
            registry=None,
            multiprocess_mode="livesum",
        )
        self._predicted_class = Counter(
            "tessera_predictions_total",
            f"Rows predicted by classifiers, by predicted class (the first {self.max_classes} "
            f"classes of a model; later ones count as '{OTHER}').",
            [*variant, "class"],
            registry=None,
        )
        self._probability = Histogram(
            "tessera_prediction_probability",
            "Positive-class probability predicted by binary classifiers, per row.",
            list(variant),
            buckets=PROBABILITY_BUCKETS,
            registry=None,
        )
        self._value = Histogram(
            "tessera_prediction_value",
            "Values predicted by regressors, per row.",
            list(variant),
            buckets=value_buckets,
            registry=None,
        )
        self._feedback_total = Counter(
            "tessera_feedback_total",
            "Ground-truth labels received (POST /feedback), by the version and variant that "
            "made the prediction.",
            list(variant),
            registry=None,
        )
        self._quality = Gauge(
            "tessera_online_quality",
            "Quality of the predictions measured against feedback, by version, variant and "
            "metric (e.g. accuracy, rmse).",
            [*variant, "metric"],
            registry=None,
            multiprocess_mode="mostrecent",
        )
        self._rollout_state = Gauge(
            "tessera_rollout_state",
            "1 for the model's current rollout strategy and state, 0 for the others.",
            ["model", "strategy", "state"],
            registry=None,
            multiprocess_mode="livemostrecent",
        )
        self._rollout_step = Gauge(
            "tessera_rollout_step",
            "Current canary step of the model's rollout (0 without one).",
            ["model"],
            registry=None,
            multiprocess_mode="livemostrecent",
        )
        self._rollout_traffic = Gauge(
            "tessera_rollout_candidate_traffic_ratio",
            "Share of the model's requests sent (or mirrored) to the candidate, 0 to 1.",
            ["model"],
            registry=None,
            multiprocess_mode="livemostrecent",
        )
        self._rows_written = Counter(
            "tessera_prediction_log_rows_written_total",
            "Rows written to the prediction log, by log (predictions, feedback).",
            ["kind"],
            registry=None,
        )
        self._rows_dropped = Counter(
            "tessera_prediction_log_rows_dropped_total",
            "Rows dropped by the prediction log when its memory bound was reached, by log.",
            ["kind"],
            registry=None,
        )
        self._model_info = Gauge(
            "tessera_model_info",
            "1 for each model version a worker serves, by alias and load time (UTC).",
            ["model", "version", "alias", "loaded_at"],
            registry=None,
            multiprocess_mode="livemax",
        )
        self._metrics: list[MetricWrapperBase] = [
            self._requests_total,
            self._latency,
            self._in_flight_gauge,
            self._predicted_class,
            self._probability,
            self._value,
            self._feedback_total,
            self._quality,
            self._rollout_state,
            self._rollout_step,
            self._rollout_traffic,
            self._rows_written,
            self._rows_dropped,
            self._model_info,
        ]

    # -- the request path -------------------------------------------------------------------
    def request(
        self, model: str, version: str, variant: str, route: str, status: int, seconds: float
    ) -> None:
        """Count one answered request and observe its latency.

        Args:
            model, version, variant: who answered (``champion``, ``candidate`` or ``shadow``).
            route: the route template (``/predict``, ``/invocations``...).
            status: the HTTP status code sent.
            seconds: time from receiving the request to the answer.
        """
        key = (model, version, variant, route, status)
        children = self._requests.get(key)
        if children is None:
            children = self._requests[key] = (
                self._child(self._requests_total, model, version, variant, route, str(status)),
                self._child(self._latency, model, variant, route),
            )
        children[0].inc()
        children[1].observe(seconds)

    def in_flight(self) -> AbstractContextManager[None]:
        """A context manager counting the request it wraps as in flight (reusable)."""
        return self._in_flight

    def predictions(
        self,
        model: str,
        version: str,
        variant: str,
        task: str,
        predictions: np.ndarray,
        probabilities: np.ndarray | None,
    ) -> None:
        """Record what one request predicted.

        Args:
            model, version, variant: who predicted.
            task: ``regression`` (a histogram of the values) or anything else, a classifier
                (a counter per predicted class).
            predictions: one prediction per row.
            probabilities: positive-class probabilities of a binary classifier (one per row, or
                two columns of which the second is used), or None.
        """
        size = predictions.size
        if size == 0:
            return
        if task == "regression":
            histogram = self._histogram(self._values, self._value, model, version, variant)
            if size == 1:
                value = float(predictions.item())
                if value == value:  # not NaN
                    histogram.observe(value)
            else:
                _observe_many(histogram, self._value_bounds, np.asarray(predictions, float))
            return
        if size == 1:
            self._class_child(model, version, variant, predictions.item()).inc()
        else:
            for value, count in _tally(predictions):
                self._class_child(model, version, variant, value).inc(count)
        if probabilities is None:
            return
        if probabilities.ndim == 2 and probabilities.shape[1] == 2:
            probabilities = probabilities[:, 1]
        elif probabilities.ndim != 1:
            return  # multiclass probabilities: no single "positive" class
        histogram = self._histogram(self._probabilities, self._probability, model, version, variant)
        if probabilities.size == 1:
            probability = float(probabilities[0])
            if probability == probability:
                histogram.observe(probability)
        else:
            _observe_many(histogram, self._probability_bounds, np.asarray(probabilities, float))

    # -- everything else (off the request path) -----------------------------------------------
    def feedback(self, model: str, version: str, variant: str, count: int) -> None:
        """Count ``count`` ground-truth labels received for predictions of a version/variant."""
        key = (model, version, variant)
        child = self._feedback.get(key)
        if child is None:
            child = self._feedback[key] = self._child(self._feedback_total, *key)
        child.inc(count)

    def quality(self, model: str, version: str, variant: str, metric: str, value: float) -> None:
        """Publish the online value of a quality metric (accuracy, rmse...)."""
        self._child(self._quality, model, version, variant, metric).set(value)

    def rollout(
        self, model: str, strategy: str | None, state: str, step: int, traffic: float
    ) -> None:
        """Publish the model's rollout state.

        Args:
            model: the served model.
            strategy: ``ab``, ``canary``, ``shadow``, or None without a rollout.
            state: the rollout's state (``none`` without one); its gauge is set to 1 and every
                other strategy/state pair known to this process to 0.
            step: the canary step (0 without one).
            traffic: the candidate's share of requests in percent (0 to 100, as in
                ``serving.yaml``), exported as a 0-1 ratio.

        Raises:
            ValueError: ``traffic`` is outside 0-100.
        """
        if not 0.0 <= traffic <= 100.0:
            raise ValueError(f"traffic must be a percentage (0 to 100), got {traffic}")
        current = (strategy or NO_ROLLOUT, state)
        self._rollout_pairs.add(current)
        for pair in self._rollout_pairs:
            self._child(self._rollout_state, model, *pair).set(1.0 if pair == current else 0.0)
        self._child(self._rollout_step, model).set(step)
        self._child(self._rollout_traffic, model).set(traffic / 100.0)

    def log_rows(self, kind: str, written: int = 0, dropped: int = 0) -> None:
        """Count prediction-log rows written and dropped (``kind``: predictions or feedback)."""
        children = self._log_rows.get(kind)
        if children is None:
            children = self._log_rows[kind] = (
                self._child(self._rows_written, kind),
                self._child(self._rows_dropped, kind),
            )
        if written:
            children[0].inc(written)
        if dropped:
            children[1].inc(dropped)

    def model_info(self, model: str, version: str, alias: str) -> None:
        """Record that this process now serves ``version`` of ``model`` under ``alias``.

        The version it served before under that alias (if another) goes to 0.
        """
        before = self._info.get((model, alias))
        if before is not None:
            if before[0] == version:
                return
            before[1].set(0.0)
        loaded_at = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        child = self._child(self._model_info, model, version, alias, loaded_at)
        child.set(1.0)
        self._info[(model, alias)] = (version, child)

    def model_unloaded(self, model: str, alias: str) -> None:
        """Record that this process no longer serves ``model`` under ``alias`` (a candidate
        dropped at the end of a rollout): its info series goes to 0."""
        before = self._info.pop((model, alias), None)
        if before is not None:
            before[1].set(0.0)

    def render(self) -> tuple[bytes, str]:
        """The metrics in Prometheus' text format: (body, content type).

        In multiprocess mode these are the sums over every worker, and the live gauges of
        workers that no longer exist are dropped first.
        """
        if self.directory is not None:
            _forget_dead_processes(self.directory)
        return generate_latest(self._registry), CONTENT_TYPE

    # -- children ------------------------------------------------------------------------------
    @contextmanager
    def _creating(self) -> Iterator[None]:
        """Create metric values with this instance's value class (and directory)."""
        with _CREATION_LOCK:
            saved_class = prometheus_values.ValueClass
            saved_env = os.environ.get(ENV_VAR)
            # memory-mapped values open their file in PROMETHEUS_MULTIPROC_DIR; in a worker
            # it has not changed since __init__, so the environment is left alone
            swap_env = self.directory is not None and saved_env != self._env
            prometheus_values.ValueClass = self._value_class
            if swap_env:
                os.environ[ENV_VAR] = str(self.directory)
            try:
                yield
            finally:
                prometheus_values.ValueClass = saved_class
                if swap_env:
                    if saved_env is None:
                        os.environ.pop(ENV_VAR, None)
                    else:
                        os.environ[ENV_VAR] = saved_env

    def _child(self, metric: Any, *labels: str) -> Any:
        with self._creating():
            return metric.labels(*labels)

    def _histogram(
        self,
        cache: dict[tuple[str, str, str], Histogram],
        metric: Histogram,
        model: str,
        version: str,
        variant: str,
    ) -> Histogram:
        key = (model, version, variant)
        child = cache.get(key)
        if child is None:
            child = cache[key] = self._child(metric, *key)
        return child

    def _class_child(self, model: str, version: str, variant: str, value: Any) -> Counter:
        key = (model, version, variant, value)
        child = self._classes.get(key)
        if child is not None:
            return child
        label = _class_label(value)
        with _CREATION_LOCK:
            seen = self._class_labels.setdefault(model, set())
            if label not in seen and len(seen) >= self.max_classes:
                other = self._others.get(key[:3])
                if other is None:
                    other = self._others[key[:3]] = self._child(
                        self._predicted_class, model, version, variant, OTHER
                    )
                return other  # not cached by value: there may be any number of them
            seen.add(label)
            child = self._classes[key] = self._child(
                self._predicted_class, model, version, variant, label
            )
        return child


class _InFlight:
    """Increments a gauge on entry and decrements it on exit; one instance serves all."""

    __slots__ = ("_gauge",)

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge

    def __enter__(self) -> None:
        self._gauge.inc()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._gauge.dec()


class _Metrics:
    """A collector of metric objects that belong to no registry."""

    def __init__(self, metrics: Iterable[MetricWrapperBase]) -> None:
        self._metrics = list(metrics)

    def collect(self) -> Iterator[Metric]:
        for metric in self._metrics:
            yield from metric.collect()


class _Exposed:
    """What ``render`` shows of a collector: no ``_created`` series and none of ``hidden``.

    Multiprocess mode has no ``_created`` series; dropping them in one process too keeps the
    two modes' output alike and halves the number of counter series.
    """

    def __init__(self, source: Any, hidden: set[str]) -> None:
        self._source = source
        self._hidden = hidden

    def collect(self) -> Iterator[Metric]:
        for family in self._source.collect():
            family.samples = [
                s
                for s in family.samples
                if not s.name.endswith("_created") and s.name not in self._hidden
            ]
            yield family


def _multiprocess_directory() -> Path | None:
    """The directory of PROMETHEUS_MULTIPROC_DIR, or None (single-process mode).

    Raises:
        MetricsError: the variable is set but names no directory.
    """
    value = os.environ.get(ENV_VAR)
    if not value:
        return None
    path = Path(value).resolve()
    if not path.is_dir():
        raise MetricsError(
            f"{ENV_VAR} is set to {value!r}, which is not a directory: create it (or unset the "
            "variable to keep the metrics of each process apart)"
        )
    return path


def _multiprocess_value_class(directory: Path) -> Any:
    """The memory-mapped value class writing into ``directory`` (one per directory and process).

    prometheus_client's own class is reused when it writes into the same directory, so the
    process never has two writers of one file.
    """
    key = str(directory)
    with _CREATION_LOCK:
        value_class = _MULTIPROCESS_CLASSES.get(key)
        if value_class is None:
            current = prometheus_values.ValueClass
            if (
                getattr(current, "_multiprocess", False)
                and os.environ.get(ENV_VAR)
                and (Path(os.environ[ENV_VAR]).resolve() == directory)
            ):
                value_class = current
            else:
                value_class = prometheus_values.MultiProcessValue()
            _MULTIPROCESS_CLASSES[key] = value_class
        return value_class


def _forget_dead_processes(directory: Path) -> None:
    """Remove the live-gauge files of processes that no longer exist on this host."""
    own = os.getpid()
    try:
        names = os.listdir(directory)
    except OSError:
        return
    for name in names:
        match = _LIVE_FILE.fullmatch(name)
        if match is None:
            continue
        pid = int(match.group(1))
        if pid != own and not _alive(pid):
            mark_process_dead(pid, directory)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process
        return True
    return True


def _class_label(value: Any) -> str:
    """A predicted class as a label value, written like the feedback log writes labels."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    return str(value)


def _tally(predictions: np.ndarray) -> Iterable[tuple[Any, int]]:
    """(class, count) pairs of a batch of class predictions, as plain Python values."""
    flat = predictions.ravel()
    if flat.dtype.kind in "biuf":
        classes, counts = np.unique(flat, return_counts=True)
        return zip(classes.tolist(), counts.tolist(), strict=True)
    return Tally(flat.tolist()).items()


def _observe_many(histogram: Histogram, bounds: np.ndarray, observed: np.ndarray) -> None:
    """``histogram.observe`` for every non-NaN value, in one pass.

    Adds to the histogram's bucket and sum values directly (prometheus_client has no bulk
    observe); tests check the result equals one ``observe`` per value.
    """
    observed = observed.ravel()
    observed = observed[~np.isnan(observed)]
    if observed.size == 0:
        return
    if observed.size <= 4:
        for value in observed.tolist():
            histogram.observe(value)
        return
    # observe() puts a value in the first bucket whose upper bound is >= it
    counts = np.bincount(np.searchsorted(bounds, observed, side="left"), minlength=len(bounds))
    histogram._sum.inc(float(observed.sum()))
    for bucket, count in zip(histogram._buckets, counts.tolist(), strict=True):
        if count:
            bucket.inc(count)
