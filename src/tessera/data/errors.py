"""Errors of the data layer."""

from __future__ import annotations

from pathlib import Path

from tessera.errors import TesseraError


class DataError(TesseraError):
    """Stored or produced data is unusable (bad table shape, unreadable file...)."""


class StoreConfigError(DataError):
    """A store or remote is configured in a way that cannot work (bad URL, missing driver).

    A configuration mistake, so exit code 2, unlike an unreachable server or a full disk.
    """

    exit_code = 2


class CorruptArtifactError(DataError):
    """A stored artifact does not match its content hash (truncated, edited or bit-rotten)."""

    def __init__(self, path: str, expected: str, got: str, moved_to: Path | None = None) -> None:
        self.path, self.expected, self.got, self.moved_to = path, expected, got, moved_to
        what = f"artifact {path} is corrupted: expected content {expected}, got {got}"
        if moved_to is not None:
            what += f"; it was moved to {moved_to} and the stage that made it will run again"
        super().__init__(what)
