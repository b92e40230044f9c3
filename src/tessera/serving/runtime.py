"""What one server process holds: the loaded model versions, their hot reload, and the rollout,
metrics and prediction-log machinery around them.

Each served model (a ``models:`` entry of ``serving.yaml``) is a :class:`ModelEntry` with a
champion and, while a rollout runs, a candidate :class:`LoadedModel`. Requests read those two
attributes once and use what they got, so replacing one is a single reference assignment: an
atomic swap that never disturbs a request in flight.

One control thread per process (:class:`Server`) does the slow work off the request path:

- every ``rollout.tick_seconds``: each model's :class:`~tessera.serving.rollout.RolloutRuntime`
  shares this process's statistics through the metadata store, refreshes the running rollout,
  and judges it when this process holds the lease; the candidate version is loaded when a
  rollout starts and dropped when it ends;
- every ``reload_seconds``: the registry alias of each model is resolved; when it moved, the new
  version is downloaded, hash-checked, loaded and warmed up on a loader thread, then swapped in;
- every ``QUALITY_SECONDS``: online quality per version and variant, from the prediction log
  joined to feedback, is published as a metric.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import gc
import os
import socket
import sys
import tempfile
import threading
import time
from collections import OrderedDict, deque
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from tessera.serving.inputs import InputSchema, native_frame, parse_json, uniform_values

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from tessera.registry.models import ModelRegistry
    from tessera.serving.config import ServedModel, ServingConfig
    from tessera.serving.metrics import ServingMetrics
    from tessera.serving.predlog import FeedbackLog, PredictionLog
    from tessera.serving.rollout import RolloutRuntime

#: Seconds between two online-quality refreshes.
QUALITY_SECONDS = 30.0
#: The collector's thresholds in a server process. A young collection costs what survives
#: (requests in flight, records waiting for the log), not what was allocated, so collecting
#: every 10,000 net allocations instead of every 700 (Python's default) cuts the collector's
#: time about tenfold; with the default, its pauses of several milliseconds made a fifth of
#: the p99 latency under load.
GC_THRESHOLDS = (10_000, 20, 20)
#: How long another thread (the log writer building a table, the control thread) may hold the
#: interpreter lock while the event loop waits for it: 1 ms instead of Python's 5. Each time
#: the loop blocks in a system call the lock may go to such a thread, so under load a request
#: could wait several 5 ms turns (p99 measured 8.4 ms instead of 10.2 ms at c16 with 1 ms).
SWITCH_INTERVAL_SECONDS = 0.001
#: Seconds between two compactions of the logs, and before the first one.
COMPACT_SECONDS = 3600.0
COMPACT_DELAY_SECONDS = 60.0
#: Request ids remembered per process to attribute feedback in the metrics.
RECENT_REQUESTS = 100_000

#: Final estimators whose ``predict`` is the class of the highest ``predict_proba``; for them the
#: labels are derived from the probabilities instead of running the model twice.
_ARGMAX_ESTIMATORS = frozenset(
    {
        "LogisticRegression",
        "RandomForestClassifier",
        "ExtraTreesClassifier",
        "DecisionTreeClassifier",
        "GradientBoostingClassifier",
        "HistGradientBoostingClassifier",
        "LGBMClassifier",
        "GaussianNB",
    }
)


def quiet_sklearn_thread_warning() -> None:
    """Drop the one warning scikit-learn emits wrongly when two threads score at once.

    ``sklearn.utils.parallel`` saves and restores the process-wide warning filters around every
    task, which races between threads (the champion's and the candidate's batches), after which
    it reports "`sklearn.utils.parallel.delayed` should be used with ..." on nearly every call:
    100,000 lines a minute under load. The warning says nothing about the predictions.
    """
    import warnings

    original = warnings.showwarning
    if getattr(original, "_tessera_quiet", False):
        return

    def showwarning(
        message: Warning | str,
        category: type[Warning],
        filename: str,
        lineno: int,
        file: TextIO | None = None,
        line: str | None = None,
    ) -> None:
        if "sklearn.utils.parallel.delayed" not in str(message):
            original(message, category, filename, lineno, file, line)

    showwarning._tessera_quiet = True  # type: ignore[attr-defined]
    warnings.showwarning = showwarning


def worker_id() -> str:
    """This process among the server's workers and replicas: ``host:pid``."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _log(message: str) -> None:
    print(f"tessera serve [{os.getpid()}]: {message}", file=sys.stderr, flush=True)


class LoadedModel:
    """One registered model version, loaded (trusted types only) and warmed up.

    Attributes:
        name, version: the registered model version.
        task: ``classification`` or ``regression`` (from the registry's tags).
        schema: its input columns, from the MLflow signature.
        binary: a classifier of two classes: probabilities of the second are returned.
        call_seconds: what scoring one row takes (the median of a few calls at warm-up).
        scorer: what scores: the pipeline's compiled form (:mod:`tessera.serving.compiled`)
            when it compiles and matches scikit-learn on the input example, else the pipeline.
        scoring: ``compiled``, or why scikit-learn scores.
    """

    def __init__(self, model_dir: Path, info: dict[str, Any]) -> None:
        from tessera.registry.models import RegistryError, load_directory

        self.model_dir = model_dir
        self.info = info
        self.name = str(info.get("name"))
        self.version = str(info.get("version"))
        self.task = str(info.get("task") or "classification")
        self.classes = info.get("classes")
        self.identity = {"name": self.name, "version": self.version}
        self.schema = InputSchema.from_model_dir(model_dir)
        self.pipeline = load_directory(model_dir, RegistryError)
        classes = getattr(self.pipeline, "classes_", None)
        self.binary = (
            self.task != "regression"
            and hasattr(self.pipeline, "predict_proba")
            and classes is not None
            and len(classes) == 2
        )
        final = self.pipeline.steps[-1][1] if hasattr(self.pipeline, "steps") else self.pipeline
        self._argmax = self.binary and type(final).__name__ in _ARGMAX_ESTIMATORS
        self.scorer: Any = self.pipeline
        self.scoring = "scikit-learn: the model has no input example"
        self.call_seconds = float("inf")  # of one row, measured at warm-up
        self._warm_up()
        self.batcher = Batcher(self)

    def _warm_up(self) -> None:
        """Compile the pipeline and predict the MLmodel's input example, checking the compiled
        form and the argmax shortcut on it."""
        import numpy as np

        from tessera.serving.compiled import NotCompiled, compile_pipeline

        example = self.model_dir / "input_example.json"
        if not example.is_file():
            return
        data = parse_json(example.read_bytes())  # NaN for missing values
        frame = native_frame(
            {"columns": data["columns"], "data": data["data"]}, self.schema, 1 << 30
        )
        try:
            self.scorer = compile_pipeline(self.pipeline, frame)
            self.scoring = "compiled"
        except NotCompiled as exc:
            self.scoring = f"scikit-learn: {exc}"
        predictions, _ = self.predict(frame)
        if self._argmax and not np.array_equal(predictions, self.pipeline.predict(frame)):
            self._argmax = False
        row = frame.head(1)
        timings = []
        for _ in range(5):
            started = time.perf_counter()
            self.predict(row)
            timings.append(time.perf_counter() - started)
        self.call_seconds = sorted(timings)[2]

    def predict(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """Predictions and, for a binary classifier, the probabilities of its second class."""
        import numpy as np

        if len(frame) == 0:
            return np.empty(0), (np.empty(0) if self.binary else None)
        scorer = self.scorer
        if not self.binary:
            return np.asarray(scorer.predict(frame)), None
        proba = scorer.predict_proba(frame)
        if self._argmax:
            predictions = self.pipeline.classes_[proba.argmax(axis=1)]
        else:
            predictions = np.asarray(scorer.predict(frame))
        return predictions, np.ascontiguousarray(proba[:, 1])


class Batcher:
    """Scores the small requests of one model version together: adaptive micro-batching.

    A request's table joins the queue, and a flush is scheduled on the event loop right after
    the handlers already runnable: requests whose bodies arrived together form one batch (up to
    ``max_rows``), without any request waiting for a timer. Under concurrency the fixed cost of
    a model call is paid once per batch instead of once per request. Rows are scored
    independently, so a row's prediction does not depend on its batch. When a batch fails, its
    requests are scored one by one, so a bad request fails alone.

    A model that scores a row in under ``INLINE_SECONDS`` (a compiled pipeline: about 0.1 ms) is
    called on the event loop itself: a hand-off to a thread would cost more than the call. A
    slower one is called on a worker thread, one batch at a time per version, so the loop keeps
    reading requests (which form the next batch) meanwhile.
    """

    #: Models faster than this (one row) are scored on the event loop.
    INLINE_SECONDS = 0.001

    def __init__(self, model: LoadedModel, max_rows: int = 256) -> None:
        self.model = model
        self.max_rows = max_rows
        self.inline = model.call_seconds < self.INLINE_SECONDS
        self._queue: deque[tuple[pd.DataFrame, asyncio.Future[Any]]] = deque()
        self._scheduled = False
        self._drainer: asyncio.Task[None] | None = None

    async def predict(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray | None]:
        """The model's answer for ``frame``, scored in a batch with concurrent requests."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        self._queue.append((frame, future))
        if self.inline:
            if not self._scheduled:
                self._scheduled = True
                loop.call_soon(self._flush)
        elif self._drainer is None:
            self._drainer = loop.create_task(self._drain())
        result: tuple[np.ndarray, np.ndarray | None] = await future
        return result

    def _take(self) -> list[tuple[pd.DataFrame, asyncio.Future[Any]]]:
        batch: list[tuple[pd.DataFrame, asyncio.Future[Any]]] = []
        rows = 0
        while self._queue and (not batch or rows + len(self._queue[0][0]) <= self.max_rows):
            item = self._queue.popleft()
            batch.append(item)
            rows += len(item[0])
        return batch

    @staticmethod
    def _settle(batch: list[tuple[pd.DataFrame, asyncio.Future[Any]]], results: list[Any]) -> None:
        for (_, future), result in zip(batch, results, strict=True):
            if future.done():  # the client went away
                continue
            if isinstance(result, BaseException):
                future.set_exception(result)
            else:
                future.set_result(result)

    def _flush(self) -> None:
        self._scheduled = False
        while self._queue:
            batch = self._take()
            self._settle(batch, self._score(batch))

    async def _drain(self) -> None:
        loop = asyncio.get_running_loop()
        try:
            while self._queue:
                batch = self._take()
                self._settle(batch, await loop.run_in_executor(None, self._score, batch))
        finally:
            self._drainer = None

    def _score(self, batch: list[tuple[pd.DataFrame, Any]]) -> list[Any]:
        frames = [frame for frame, _ in batch]
        if len(frames) > 1:
            try:
                predictions, probabilities = self.model.predict(_concat(frames))
            except Exception:  # score one by one: only the bad request fails
                pass
            else:
                out: list[Any] = []
                start = 0
                for frame in frames:
                    end = start + len(frame)
                    out.append(
                        (
                            predictions[start:end],
                            None if probabilities is None else probabilities[start:end],
                        )
                    )
                    start = end
                return out
        results: list[Any] = []
        for frame in frames:
            try:
                results.append(self.model.predict(frame))
            except Exception as exc:
                results.append(exc)
        return results


def _concat(frames: list[pd.DataFrame]) -> pd.DataFrame:
    """The frames one under the other: stacked as one array when they share their columns (the
    same index object) and one type, as the tables of a model's fast input path do (pandas'
    concat costs about 10 µs a frame)."""
    import numpy as np
    import pandas as pd

    columns = frames[0].columns
    if all(f.columns is columns for f in frames):
        arrays = [v for v in map(uniform_values, frames) if v is not None]
        if len(arrays) == len(frames) and len({a.dtype for a in arrays}) == 1:
            return pd.DataFrame(np.vstack(arrays), columns=columns)
    return pd.concat(frames, ignore_index=True)


class ModelEntry:
    """A served model: its champion, the candidate of a running rollout, and their loading.

    Attributes:
        champion: the version the alias points to (None until the first load finished).
        candidate: the running rollout's candidate version, once loaded.
        rollout: the model's rollout runtime (None when rollouts are unavailable).
    """

    def __init__(self, spec: ServedModel, server: Server) -> None:
        self.name = spec.name
        self.alias = spec.alias
        self.server = server
        self.champion: LoadedModel | None = None
        self.candidate: LoadedModel | None = None
        self.rollout: RolloutRuntime | None = None
        self.failure: str | None = None
        self._loading: set[str] = set()

    # -- loading ------------------------------------------------------------------------
    def install(self, version: str, *, as_candidate: bool) -> None:
        """Load ``version`` on the loader thread, then make it the champion or the candidate."""
        if version in self._loading:
            return
        self._loading.add(version)
        self.server.loader.submit(self._install, version, as_candidate)

    def _install(self, version: str, as_candidate: bool) -> None:
        try:
            model = self.server.load_version(self.name, version)
            # The model's objects live as long as it serves: out of the collector's way, or
            # every full collection walks them (pauses of 200 ms were measured under load).
            gc.collect()
            gc.freeze()
        except Exception as exc:
            message = f"cannot load {self.name}/{version}: {type(exc).__name__}: {exc}"
            _log(message + ("" if self.champion is None else "; still serving the old version"))
            if self.champion is None and not as_candidate:
                self.failure = message
            return
        finally:
            self._loading.discard(version)
        if as_candidate:
            current = self.rollout.current if self.rollout else None
            if current is not None and str(current.candidate_version) == version:
                self.candidate = model
        else:
            previous = self.champion
            self.champion = model
            self.failure = None
            self.server.metrics.model_info(self.name, version, self.alias)
            if previous is not None:
                was = previous.version
                _log(f"{self.name}@{self.alias} now serves version {version} (was {was})")

    def refresh_alias(self) -> None:
        """Swap in the version the alias points to now, when it moved."""
        version = self.server.registry.alias(self.name, self.alias)
        if version is None or (self.champion is not None and self.champion.version == version):
            return
        candidate = self.candidate
        if candidate is not None and candidate.version == version:  # a promoted candidate
            self.champion = candidate
            self.server.metrics.model_info(self.name, version, self.alias)
            _log(f"{self.name}@{self.alias} now serves version {version} (promoted)")
            return
        self.install(version, as_candidate=False)

    def sync_rollout(self) -> bool:
        """Follow the running rollout: load its candidate, or drop it when the rollout ended.

        Returns:
            True when a rollout ended since the last call (the alias may have moved).
        """
        current = self.rollout.current if self.rollout else None
        if current is None:
            ended = self.candidate is not None
            if ended:
                self.refresh_alias()  # a promotion: the candidate becomes the champion now
                self.candidate = None
            return ended
        version = str(current.candidate_version)
        if self.candidate is None or self.candidate.version != version:
            self.candidate = None
            self.install(version, as_candidate=True)
        return False


class Server:
    """Everything one server process holds besides the routes.

    Args:
        root: the project root (registry, metadata store, prediction log).
        config: ``serving.yaml``.
        initial: model name -> (version info, downloaded and hash-checked model directory) for
            the versions the command line already fetched; others are fetched here.
    """

    def __init__(
        self,
        root: Path,
        config: ServingConfig,
        initial: dict[str, tuple[dict[str, Any], Path]] | None = None,
    ) -> None:
        from tessera.serving.metrics import ServingMetrics

        self.root = root
        self.config = config
        self.initial = dict(initial or {})
        self.worker = worker_id()
        self.metrics: ServingMetrics = ServingMetrics()
        self.entries = {m.name: ModelEntry(m, self) for m in config.models}
        self.default = self.entries[config.models[0].name]
        self.loader = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="tessera-load")
        self.log_dir = root / config.prediction_log.dir
        self.predictions: PredictionLog | None = None
        self.feedback: FeedbackLog | None = None
        self.recent: OrderedDict[str, tuple[str, str, str, int]] = OrderedDict()
        self._registry: ModelRegistry | None = None
        self._downloads = tempfile.TemporaryDirectory(prefix="tessera-models-")
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._compaction: threading.Thread | None = None
        self._gc_thresholds = gc.get_threshold()  # restored by stop()
        self._switch_interval = sys.getswitchinterval()
        self._thread: threading.Thread | None = None

    @property
    def registry(self) -> ModelRegistry:
        if self._registry is None:
            from tessera.registry.models import project_registry

            self._registry = project_registry(self.root)
        return self._registry

    @property
    def ready(self) -> bool:
        """Every served model has its champion loaded and warmed up."""
        return all(e.champion is not None for e in self.entries.values())

    def load_version(self, name: str, version: str) -> LoadedModel:
        """Download (hash-checked), load and warm up one version (on the loader thread)."""
        if name in self.initial and str(self.initial[name][0].get("version")) == version:
            info, model_dir = self.initial.pop(name)
            return LoadedModel(model_dir, info)
        target = Path(self._downloads.name) / f"{name}-{version}-{time.monotonic_ns()}"
        info_obj, model_dir = self.registry.download(f"{name}/{version}", target)
        return LoadedModel(model_dir, info_obj.to_dict())

    # -- life cycle ---------------------------------------------------------------------
    def start(self) -> None:
        """Open the logs, load the champions in the background, start the control thread."""
        from tessera.serving.predlog import FeedbackLog, PredictionLog

        quiet_sklearn_thread_warning()
        gc.set_threshold(*GC_THRESHOLDS)
        sys.setswitchinterval(SWITCH_INTERVAL_SECONDS)
        log = self.config.prediction_log
        if log.enabled:
            options: dict[str, Any] = {
                "flush_rows": log.flush_rows,
                "flush_seconds": log.flush_seconds,
                "max_pending_rows": log.max_pending_rows,
                "worker": self.worker,
            }
            self.predictions = PredictionLog(
                self.log_dir,
                on_written=lambda n: self.metrics.log_rows("predictions", written=n),
                on_dropped=lambda n: self.metrics.log_rows("predictions", dropped=n),
                **options,
            )
            self.feedback = FeedbackLog(
                self.log_dir,
                on_written=lambda n: self.metrics.log_rows("feedback", written=n),
                on_dropped=lambda n: self.metrics.log_rows("feedback", dropped=n),
                **options,
            )
            self.predictions.start()
            self.feedback.start()
        self._thread = threading.Thread(target=self._control, name="tessera-control", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the control thread and flush the logs (a graceful shutdown loses nothing)."""
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(30)
        self.loader.shutdown(wait=False, cancel_futures=True)
        for log in (self.predictions, self.feedback):
            if log is not None:
                log.close()
        self._downloads.cleanup()
        # What gc.freeze() set aside is never collected otherwise, and DuckDB's bindings then
        # report dozens of "leaked instances" at interpreter exit.
        gc.unfreeze()
        gc.set_threshold(*self._gc_thresholds)
        sys.setswitchinterval(self._switch_interval)

    def wake(self) -> None:
        """Run the control loop now (an admin reload, a rollout started through the API)."""
        self._wake.set()

    # -- the control thread ---------------------------------------------------------------
    def _control(self) -> None:
        for name, entry in self.entries.items():
            info = self.initial.get(name)
            if info is not None:
                entry.install(str(info[0].get("version")), as_candidate=False)
        try:
            self._setup_rollouts()
        except Exception as exc:
            _log(f"rollouts are unavailable: {type(exc).__name__}: {exc}")
        tick = self.config.rollout.tick_seconds
        next_reload = next_quality = 0.0
        next_compaction = time.monotonic() + COMPACT_DELAY_SECONDS
        while not self._stop.is_set():
            now = time.monotonic()
            woken = self._wake.is_set()
            self._wake.clear()
            ended = False
            for entry in self.entries.values():
                if entry.rollout is not None:
                    entry.rollout.tick()
                    self._publish_rollout(entry)
                try:
                    ended = entry.sync_rollout() or ended
                except Exception as exc:
                    _log(f"cannot follow the rollout of {entry.name}: {exc}")
            if woken or ended or now >= next_reload:
                next_reload = now + self.config.reload_seconds
                for entry in self.entries.values():
                    try:
                        entry.refresh_alias()
                    except Exception as exc:
                        _log(f"cannot check {entry.name}@{entry.alias}: {exc}")
            if now >= next_quality and self.predictions is not None and self.ready:
                next_quality = now + QUALITY_SECONDS
                self._publish_quality()
            if now >= next_compaction and self.predictions is not None:
                next_compaction = now + COMPACT_SECONDS
                self._start_compaction()
            self._wake.wait(tick)

    def _start_compaction(self) -> None:
        """Compact the logs on a thread of its own (a day's files take a while to merge)."""
        if not self.config.prediction_log.compact or (
            self._compaction is not None and self._compaction.is_alive()
        ):
            return

        def run() -> None:
            from tessera.serving.logfiles import compact

            try:
                done = compact(self.log_dir)
            except Exception as exc:
                _log(f"cannot compact the logs in {self.log_dir}: {type(exc).__name__}: {exc}")
                return
            for partition, files in done.merged:
                _log(f"merged {files} files of {partition}")

        self._compaction = threading.Thread(target=run, name="tessera-compaction", daemon=True)
        self._compaction.start()

    def _setup_rollouts(self) -> None:
        from tessera.serving.rollout import RolloutRuntime

        for entry in self.entries.values():
            entry.rollout = RolloutRuntime(
                self.registry.records,
                self.registry,
                entry.name,
                self.config.rollout,
                worker=self.worker,
                log_dir=self.log_dir if self.predictions is not None else None,
            )

    def _publish_rollout(self, entry: ModelEntry) -> None:
        current = entry.rollout.current if entry.rollout else None
        if current is None:
            self.metrics.rollout(entry.name, None, "none", 0, 0.0)
        else:
            self.metrics.rollout(
                entry.name, current.strategy, current.state, current.step, current.traffic
            )

    def _publish_quality(self) -> None:
        from tessera.serving.predlog import online_quality

        for entry in self.entries.values():
            champion = entry.champion
            if champion is None:
                continue
            metric = "rmse" if champion.task == "regression" else "accuracy"
            try:
                quality = online_quality(
                    self.log_dir,
                    entry.name,
                    task=champion.task,
                    classes=champion.classes,
                    metric=metric,
                    since=time.time() - 86_400,
                )
            except Exception as exc:
                _log(f"cannot compute the online quality of {entry.name}: {exc}")
                continue
            for (version, variant), stats in quality.items():
                self.metrics.quality(entry.name, version, variant, metric, stats.value)

    # -- feedback attribution -------------------------------------------------------------
    def remember(self, request_id: str, model: str, version: str, variant: str, rows: int) -> None:
        """Remember who answered a request and its rows, to attribute and check its feedback."""
        recent = self.recent
        recent[request_id] = (model, version, variant, rows)
        if len(recent) > RECENT_REQUESTS:
            recent.popitem(last=False)
