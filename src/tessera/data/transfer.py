"""Bookkeeping of artifact transfers: summaries, progress, and checking files by their names.

Used by ``tessera.data.remote``; kept apart so the transport (fsspec) and the accounting and
verification rules can be read separately.
"""

from __future__ import annotations

import importlib
import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from tessera.data.errors import DataError

#: The content-addressed directories a remote mirrors, in transfer order.
PREFIXES = ("objects", "files", "keys")

_HASH = re.compile(r"^[0-9a-f]{32}$")


class RemoteError(DataError):
    """Some transfers failed; what did arrive is complete and verified (``summary`` says what)."""

    def __init__(self, message: str, summary: TransferSummary) -> None:
        super().__init__(message)
        self.summary = summary


class TransferProgress(Protocol):
    """Receives the plan and the bytes as they move (called from worker threads)."""

    def start(self, files: int, nbytes: int) -> None: ...

    def advance(self, nbytes: int) -> None: ...


@dataclass
class TransferSummary:
    """What a push or pull did."""

    action: str  # "push" or "pull"
    remote: str
    url: str
    transferred: dict[str, int] = field(default_factory=lambda: dict.fromkeys(PREFIXES, 0))
    bytes: int = 0
    seconds: float = 0.0
    #: Files not sent because the other side already had them.
    skipped: int = 0
    #: Files that did not match their name (pull: remote files, not installed).
    corrupt: list[str] = field(default_factory=list)
    #: Requested cache keys that the sending side does not have.
    missing_keys: list[str] = field(default_factory=list)
    #: Key entries not sent because a table they point to is missing on the sending side.
    incomplete_keys: list[str] = field(default_factory=list)
    #: Transfers that failed (path: error); what arrived is complete.
    failed: list[str] = field(default_factory=list)

    @property
    def files(self) -> int:
        return sum(self.transferred.values())

    def merge(self, other: TransferSummary) -> TransferSummary:
        """Add ``other``'s counts to this summary (for a command made of several transfers)."""
        for kind, n in other.transferred.items():
            self.transferred[kind] = self.transferred.get(kind, 0) + n
        self.bytes += other.bytes
        self.seconds += other.seconds
        self.skipped += other.skipped
        for name in ("corrupt", "missing_keys", "incomplete_keys", "failed"):
            mine: list[str] = getattr(self, name)
            mine.extend(x for x in getattr(other, name) if x not in mine)
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "remote": self.remote,
            "url": self.url,
            "files": self.files,
            "objects": self.transferred.get("objects", 0),
            "keys": self.transferred.get("keys", 0),
            "file_blobs": self.transferred.get("files", 0),
            "bytes": self.bytes,
            "seconds": round(self.seconds, 3),
            "skipped": self.skipped,
            "corrupt": self.corrupt,
            "missing_keys": self.missing_keys,
            "incomplete_keys": self.incomplete_keys,
            "failed": self.failed,
        }

    def line(self) -> str:
        """``pushed 21 objects, 21 keys (742 MB) to origin in 3.1 s; 0 already there``."""
        verb, prep = ("pushed", "to") if self.action == "push" else ("pulled", "from")
        counts = [
            _plural(self.transferred.get("objects", 0), "object"),
            _plural(self.transferred.get("keys", 0), "key"),
        ]
        if self.transferred.get("files"):
            counts.append(_plural(self.transferred["files"], "file"))
        return (
            f"{verb} {', '.join(counts)} ({human_bytes(self.bytes)}) {prep} {self.remote} "
            f"in {self.seconds:.1f} s; {self.skipped} already there"
        )


def _plural(n: int, word: str) -> str:
    return f"{n} {word}{'' if n == 1 else 's'}"


def human_bytes(n: float) -> str:
    """Decimal units, as disks and networks are sold: ``742 MB``."""
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit in ("B", "kB", "MB") else f"{n:.2f} {unit}"
        n /= 1000
    raise AssertionError("unreachable")


def expand_vars(value: Any, remote: str, where: str) -> Any:
    """Replace ``${VAR}`` in strings (recursively) by the environment variable VAR.

    Raises:
        UsageError: naming the setting and the variable that is not set.
    """
    from tessera.envvars import expand

    if isinstance(value, str):
        return expand(value, what=f"remotes.{remote}.{where} in tessera.yaml")
    if isinstance(value, Mapping):
        return {k: expand_vars(v, remote, f"{where}.{k}") for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [expand_vars(v, remote, f"{where}[{i}]") for i, v in enumerate(value)]
    return value


def referenced_hashes(entry: Any) -> set[str]:
    """Every content hash (32 hex digits) anywhere in a key entry: tables and file blobs."""
    found: set[str] = set()
    stack = [entry]
    while stack:
        item = stack.pop()
        if isinstance(item, str):
            if _HASH.match(item):
                found.add(item)
        elif isinstance(item, Mapping):
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return found


def required_objects(entry: Mapping[str, Any]) -> set[str]:
    """Fingerprints of the tables a key entry needs to be a cache hit (its ``outputs``)."""
    outputs = entry.get("outputs")
    if not isinstance(outputs, Mapping):
        return set()
    return {fp for fp in outputs.values() if isinstance(fp, str)}


def stem(rel: str) -> str:
    return rel.rsplit("/", 1)[-1].split(".", 1)[0]


def valid_name(rel: str) -> bool:
    """``prefix/ab/abcd...``: temporary files (``.name.xxx.tmp``) and strays are not listed."""
    parts = rel.split("/")
    return (
        len(parts) == 3
        and parts[0] in PREFIXES
        and not parts[2].startswith(".")
        and parts[2][:2] == parts[1]
    )


def list_store(root: Path, prefixes: Iterable[str] = PREFIXES) -> dict[str, int]:
    """``{relative path: size}`` of the content-addressed files of a local store."""
    found: dict[str, int] = {}
    for prefix in prefixes:
        try:
            shards = list(os.scandir(root / prefix))
        except (FileNotFoundError, NotADirectoryError):
            continue
        for shard in shards:
            if not shard.is_dir():
                continue
            with os.scandir(shard.path) as entries:
                for entry in entries:
                    rel = f"{prefix}/{shard.name}/{entry.name}"
                    if valid_name(rel) and entry.is_file():
                        found[rel] = entry.stat().st_size
    return found


class CorruptFile(Exception):
    def __init__(self, got: str) -> None:
        super().__init__(got)
        self.got = got


def verify_file(rel: str, path: Path) -> None:
    """Check that a downloaded file matches its name; raises ``CorruptFile`` (the content found)."""
    prefix, name = rel.split("/", 1)[0], rel.rsplit("/", 1)[-1]
    expected = stem(rel)
    if prefix == "keys":
        try:
            value = json.loads(path.read_bytes())
        except (ValueError, UnicodeDecodeError) as exc:
            raise CorruptFile(f"not JSON ({exc})") from None
        if not isinstance(value, dict):
            raise CorruptFile(f"not a JSON object ({type(value).__name__})")
        return
    if prefix == "objects" and name.endswith(".parquet"):
        import pyarrow as pa
        import pyarrow.parquet as pq

        from tessera.data.fingerprint import fingerprint_table

        try:
            got = fingerprint_table(pq.read_table(path))
        except (OSError, pa.ArrowException) as exc:
            raise CorruptFile(f"unreadable Parquet ({exc})") from None
    else:
        from tessera.data.hashing import hash_file

        got = hash_file(path)
    if got != expected:
        raise CorruptFile(f"content {got}")


class ByteCounter:
    """An fsspec callback that forwards byte increments to a ``TransferProgress``."""

    def __init__(self, progress: TransferProgress | None) -> None:
        self.progress = progress
        self.sent = 0

    def callback(self) -> Any:
        # fsspec ships no type information: load it untyped rather than ignore a missing stub
        callback_base: Any = importlib.import_module("fsspec.callbacks").Callback
        outer = self

        class _CB(callback_base):
            def call(self, *args: Any, **kwargs: Any) -> None:
                value = int(self.value or 0)
                if value > outer.sent:
                    outer._advance(value - outer.sent)

        return _CB()

    def _advance(self, n: int) -> None:
        self.sent += n
        if self.progress is not None:
            self.progress.advance(n)

    def finish(self, size: int) -> None:
        """Account for what the file system did not report (local copies report nothing)."""
        if size > self.sent:
            self._advance(size - self.sent)
