"""The root of Tessera's exception tree.

Each component has its own subclass (``ConfigError``, ``PipelineError``, ``DataError``...). The CLI
turns any ``TesseraError`` into one clean message and the error's ``exit_code``: 2 for bad usage or
bad configuration, 1 for work that failed.
"""

from __future__ import annotations


class TesseraError(Exception):
    """Base class of every error Tessera raises on purpose."""

    exit_code: int = 1

    def render(self) -> str:
        """The message shown to the user."""
        return str(self)


class UsageError(TesseraError):
    """The command was used wrongly (bad flag value, no project found...)."""

    exit_code = 2
