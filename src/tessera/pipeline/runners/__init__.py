"""Executors: where stage jobs run. One small class per strategy behind ``Executor``."""

from __future__ import annotations

from tessera.pipeline.runners.base import Executor


def make_executor(
    kind: str, jobs: int, address: str | None = None, n_workers: int | None = None
) -> Executor:
    """The executor for ``--executor KIND -j JOBS``.

    ``local`` with one job runs stages in this process (outputs stay in memory for the next
    stage, storage happens in background threads); with more, in a pool of worker processes.
    ``dask`` runs them on a Dask cluster: ``address`` or a LocalCluster of ``n_workers``.
    """
    if kind == "dask":
        from tessera.pipeline.runners.dask import DaskExecutor

        return DaskExecutor(address=address, n_workers=n_workers or max(jobs, 2))
    if jobs > 1:
        from tessera.pipeline.runners.processes import ProcessExecutor

        return ProcessExecutor(jobs)
    from tessera.pipeline.runners.inprocess import InProcessExecutor

    return InProcessExecutor()


__all__ = ["Executor", "make_executor"]
