"""Errors of the data layer."""

from __future__ import annotations

from tessera.errors import TesseraError


class DataError(TesseraError):
    """Stored or produced data is unusable (bad table shape, unreadable file...)."""


class CorruptArtifactError(DataError):
    """A stored artifact does not match its content hash (truncated, edited or bit-rotten)."""

    def __init__(self, path: str, expected: str, got: str) -> None:
        self.path, self.expected, self.got = path, expected, got
        super().__init__(
            f"artifact {path} is corrupted: its content hashes to {got}, not {expected}; "
            "it will be recomputed"
        )
