"""Local parallel execution in worker processes (``-j N``).

Workers are started with ``spawn`` (safe with threads, same on every OS) and discover the
project's transformations once each. Independent stages run at the same time; each worker reads
its inputs from the store and writes its outputs there, so results are identical to a
sequential run.
"""

from __future__ import annotations

import multiprocessing
import signal
from concurrent.futures import Future, ProcessPoolExecutor

from tessera.pipeline.execute import StageJob, StageResult, run_job
from tessera.pipeline.runners.base import Executor


class ProcessExecutor(Executor):
    name = "local"

    def __init__(self, jobs: int) -> None:
        self.capacity = jobs
        self._pool: ProcessPoolExecutor | None = None

    def submit(self, job: StageJob) -> Future[StageResult]:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(
                self.capacity,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_ignore_interrupts,
            )
        return self._pool.submit(run_job, job)

    def close(self, *, cancel: bool = False) -> list[str]:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=cancel)
            self._pool = None
        return []


def _ignore_interrupts() -> None:
    """Ctrl-C is the parent's to handle: workers finish their stage instead of dumping a trace."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
