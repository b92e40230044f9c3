"""Errors of the pipeline engine."""

from __future__ import annotations

from typing import Any

from tessera.errors import TesseraError


class PipelineError(TesseraError):
    """The pipeline cannot be built or run as defined (exit code 2: fix the definition)."""

    exit_code = 2


class TransformationDefinitionError(PipelineError):
    """A function decorated with ``@transformation`` has an unusable signature."""


class StageFailedError(TesseraError):
    """A stage raised, or returned something that is not a table (exit code 1)."""

    exit_code = 1


class StageReportError(StageFailedError):
    """A stage failed and produced a report worth keeping (a validation report, say).

    The runner stores ``report`` (a DataFrame) in the artifact store, records its version id with
    the failed stage, and the CLI prints it as a table. ``str(exc)`` is the one-line summary.
    """

    def __init__(self, message: str, report: Any) -> None:
        super().__init__(message)
        self.report = report
