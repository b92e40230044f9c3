"""Hashes of bytes, JSON-able values and files (with a stat cache, as git and DVC do)."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import xxhash

#: File content hashes are trusted from the stat cache only when the file was last modified at
#: least this long before it was hashed (a write within the same clock tick could go unseen).
_RACY_NS = 2_000_000_000


def hash_bytes(*parts: bytes | str) -> str:
    """128-bit xxh3 of the concatenated parts, as 32 hex digits."""
    h = xxhash.xxh3_128()
    for part in parts:
        h.update(part.encode() if isinstance(part, str) else part)
        h.update(b"\x1f")
    return h.hexdigest()


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no whitespace: the same value always gives the same text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def hash_json(value: Any) -> str:
    """Hash of the canonical JSON of ``value``."""
    return hash_bytes(canonical_json(value))


def hash_file(path: Path) -> str:
    """Content hash of a file, streamed in 4 MiB blocks."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as fh:
        while block := fh.read(4 << 20):
            h.update(block)
    return h.hexdigest()


class FileHasher:
    """Content hashes of files, remembered by (size, mtime, inode) across runs.

    The cache is a JSON file; it is only a cache, so losing or corrupting it costs a re-hash.
    """

    def __init__(self, cache_file: Path | None = None) -> None:
        self.cache_file = cache_file
        self._entries: dict[str, list[Any]] = {}
        self._dirty = False
        if cache_file is not None:
            try:
                self._entries = json.loads(cache_file.read_text())
            except (OSError, ValueError):
                self._entries = {}

    def hash(self, path: Path) -> str | None:
        """Content hash of ``path``, or None when it does not exist."""
        try:
            st = os.stat(path)
        except OSError:
            return None
        key = str(Path(path).absolute())
        sig = [st.st_size, st.st_mtime_ns, st.st_ino]
        entry = self._entries.get(key)
        if entry is not None and entry[:3] == sig and entry[4] - st.st_mtime_ns > _RACY_NS:
            return str(entry[3])
        digest = hash_file(path)
        self._entries[key] = [*sig, digest, time.time_ns()]
        self._dirty = True
        return digest

    def save(self) -> None:
        """Persist the cache (atomically) if anything was hashed."""
        if not self._dirty or self.cache_file is None:
            return
        from tessera.data.atomic import atomic_write_text

        atomic_write_text(self.cache_file, json.dumps(self._entries))
        self._dirty = False
