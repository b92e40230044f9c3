"""In-process execution: outputs go straight to the next stage, storage in the background.

This is the fast path for a laptop: no process start-up, no re-reading of what was just computed.
Fingerprints are computed before a stage counts as done (downstream keys need them); writing the
Parquet files and the cache entry happens on two background threads while later stages compute.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

from tessera.data.store import ArtifactStore
from tessera.pipeline.execute import (
    StageJob,
    StageResult,
    compute,
    failed,
    finish,
    store_report,
)
from tessera.pipeline.registry import Registry
from tessera.pipeline.runners.base import Executor


class InProcessExecutor(Executor):
    name = "local"
    capacity = 1

    def __init__(self) -> None:
        self._tables: dict[tuple[str, str], Any] = {}
        self._writers: ThreadPoolExecutor | None = None
        self._writes: list[tuple[str, Future[None]]] = []
        self._registry: Callable[[], Registry] | None = None

    def prepare(self, registry: Callable[[], Registry]) -> None:
        self._registry = registry

    def submit(self, job: StageJob) -> Future[StageResult]:
        store = ArtifactStore(Path(job.store_root))
        assert self._registry is not None, "prepare() must be called before submit()"
        registry = self._registry()
        future: Future[StageResult] = Future()
        try:
            tables = []
            for ref, fp in zip(job.stage.inputs, job.inputs, strict=True):
                table = self._tables.get((ref.stage, ref.output))
                tables.append(store.get_table(fp) if table is None else table)
        except Exception as exc:
            future.set_result(failed(job, exc))
            return future
        result, out = compute(job, tables, registry)
        if not result.ok:
            store_report(result, store, out)
        if result.ok:
            for name, table in out.items():
                self._tables[(job.stage.name, name)] = table
            if self._writers is None:
                self._writers = ThreadPoolExecutor(2, thread_name_prefix="tessera-store")
            self._writes.append(
                (job.stage.name, self._writers.submit(finish, job, result, store, out))
            )
        future.set_result(result)
        return future

    def release(self, stage: str) -> None:
        for key in [k for k in self._tables if k[0] == stage]:
            del self._tables[key]

    def close(self, *, cancel: bool = False) -> list[str]:
        errors = []
        for stage, write in self._writes:
            exc = write.exception()
            if exc is not None:
                errors.append(f"stage '{stage}': storing outputs failed: {exc}")
        if self._writers is not None:
            self._writers.shutdown()
            self._writers = None  # usable again: a new pool starts on the next submit
        self._writes.clear()
        self._tables.clear()
        return errors
