"""Execution on a Dask cluster (``--executor dask``).

With ``executor.address`` in tessera.yaml, jobs go to that scheduler; otherwise a LocalCluster
of worker processes is started for the run. Workers must see the project directory and its
store at the same path (a shared file system), which is how Dask clusters are usually run; an
object-store remote for artifacts arrives with data remotes.
"""

from __future__ import annotations

import logging
import signal
from concurrent.futures import Future
from typing import Any

from tessera.errors import UsageError
from tessera.pipeline.execute import StageJob, StageResult, run_job
from tessera.pipeline.runners.base import Executor


class DaskExecutor(Executor):
    name = "dask"

    def __init__(self, address: str | None, n_workers: int) -> None:
        self.address = address
        self.capacity = n_workers
        self._client: Any = None
        self._cluster: Any = None

    def _connect(self) -> Any:
        try:
            from distributed import Client, LocalCluster
        except ImportError:
            raise UsageError("the dask executor needs Dask: pip install 'tessera[dask]'") from None
        if self.address:
            try:
                self._client = Client(self.address, timeout="10s")
            except OSError as exc:
                raise UsageError(
                    f"cannot reach the Dask scheduler at {self.address}: {exc}"
                ) from None
            self.capacity = max(1, len(self._client.scheduler_info().get("workers", {})))
        else:
            # Workers started while SIGINT is ignored keep ignoring it (Python installs its
            # Ctrl-C handler only when the signal was not ignored at start-up), so Ctrl-C
            # reaches this process alone, which closes the cluster without worker tracebacks.
            previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
            try:
                self._cluster = LocalCluster(
                    n_workers=self.capacity,
                    threads_per_worker=1,
                    processes=True,
                    dashboard_address=None,
                    silence_logs=logging.ERROR,
                )
            finally:
                signal.signal(signal.SIGINT, previous)
            self._client = Client(self._cluster)
        return self._client

    def submit(self, job: StageJob) -> Future[StageResult]:
        client = self._client or self._connect()
        future: Future[StageResult] = Future()
        remote = client.submit(run_job, job, pure=False, key=f"{job.stage.name}-{job.key[:12]}")

        def done(f: Any) -> None:
            try:
                future.set_result(f.result())
            except Exception as exc:
                future.set_result(
                    StageResult(job.stage.name, ok=False, error=f"{type(exc).__name__}: {exc}")
                )

        remote.add_done_callback(done)
        return future

    def close(self, *, cancel: bool = False) -> list[str]:
        if cancel:  # the shutdown after Ctrl-C may log about cancelled work: not news to the user
            logging.getLogger("distributed").setLevel(logging.CRITICAL)
        if self._client is not None:
            self._client.close()
        if self._cluster is not None:
            self._cluster.close()
        self._client = self._cluster = None
        return []
