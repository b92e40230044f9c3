"""The executor interface."""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable
from concurrent.futures import Future

from tessera.pipeline.execute import StageJob, StageResult
from tessera.pipeline.registry import Registry


class Executor(ABC):
    """Runs stage jobs and reports their results through futures.

    Executors start their resources lazily, on the first ``submit``, so a run where everything
    is cached costs nothing.
    """

    name: str = "executor"
    #: How many jobs it can usefully run at once (the scheduler submits up to this many).
    capacity: int = 1

    def prepare(self, registry: Callable[[], Registry]) -> None:  # noqa: B027 - optional hook
        """Called before the first job with a way to get the run's (already loaded) registry."""

    @abstractmethod
    def submit(self, job: StageJob) -> Future[StageResult]:
        """Start ``job``; the future resolves when its outputs are known."""

    def release(self, stage: str) -> None:  # noqa: B027 - optional hook
        """No stage that is still to run needs the outputs of ``stage`` any more."""

    def close(self, *, cancel: bool = False) -> list[str]:
        """Wait for pending work (such as background writes); returns errors, if any.

        With ``cancel``, jobs not started yet are dropped; running ones finish (their writes are
        atomic, so stopping them half-way would gain nothing).
        """
        return []
