"""Errors of the pipeline engine."""

from __future__ import annotations

from tessera.errors import TesseraError


class PipelineError(TesseraError):
    """The pipeline cannot be built or run as defined (exit code 2: fix the definition)."""

    exit_code = 2


class TransformationDefinitionError(PipelineError):
    """A function decorated with ``@transformation`` has an unusable signature."""


class StageFailedError(TesseraError):
    """A stage raised, or returned something that is not a table (exit code 1)."""

    exit_code = 1
