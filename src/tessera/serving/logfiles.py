"""The files of the prediction and feedback logs: which ones a query reads, and compaction.

Every worker writes a file per flush (``<host>-<pid>-<unix_ms>-<seq>.parquet``), so a day of
steady traffic leaves thousands of small files per worker in a date partition, and every query
opens them all. Once a day is over (no file can be added to its partition any more),
:func:`compact` merges its files into one file per schema:

1. the merged files are written under hidden names, then renamed to
   ``+compacted-<D>-<seq>.parquet``, where ``D`` is the newest write time (unix ms) among the
   files merged; readers ignore them while step 2 has not happened;
2. an empty marker ``+compacted-<D>.done`` is created: from then on readers take the merged
   files of the newest marker and only the files written after ``D`` (none, for a finished
   day), and ignore the files merged;
3. the files merged, and older merged files and markers, are deleted.

Readers listing the files (:func:`parquet_files`) see every row once at every step. A crash
leaves a partition that reads the same: hidden files are ignored (and removed a day later),
merged files without a marker are ignored (and replaced by the next pass), files a marker
supersedes are deleted by the next pass. A query that listed the files just before step 3 finds
one missing: the queries of :mod:`tessera.serving.predlog` then list them again. A plain glob
over the directory (``**/*.parquet``) counts a merged day twice for the instant between steps 2
and 3. One process compacts a partition at a time (an ``flock`` on ``.compact.lock`` in it);
the others skip it. Worker file names cannot start with ``+``.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import math
import os
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

PREDICTIONS = "predictions"
FEEDBACK = "feedback"
#: Slack when pruning files by date and by the write time in their names: rows are written
#: after they are recorded, but clocks of different hosts or after an adjustment may differ.
CLOCK_SLACK_SECONDS = 300.0
#: Merged files and markers start with this (a worker's file name cannot).
COMPACTED = "+compacted-"
#: Rows buffered per schema before they are written as one row group of a merged file.
ROW_GROUP_ROWS = 131_072


def written_ms(name: str) -> float:
    """The write time in a file name (unix ms), or +inf when the name does not hold one."""
    parts = name[: -len(".parquet")].rsplit("-", 2)
    try:
        return float(int(parts[-2]))
    except (IndexError, ValueError):
        return math.inf


def _marker_ms(name: str) -> int | None:
    if name.startswith(COMPACTED) and name.endswith(".done"):
        with contextlib.suppress(ValueError):
            return int(name[len(COMPACTED) : -len(".done")])
    return None


@dataclass
class _Partition:
    """The files of one date partition, as a reader and a compaction see them."""

    path: Path
    #: Files written by workers: (write time in ms, path).
    written: list[tuple[float, str]] = field(default_factory=list)
    #: Merged files: (D, path).
    merged: list[tuple[float, str]] = field(default_factory=list)
    #: Markers' D values.
    markers: list[int] = field(default_factory=list)

    @classmethod
    def scan(cls, path: Path) -> _Partition:
        partition = cls(path)
        for entry in os.scandir(path):
            name = entry.name
            if name.startswith("."):  # in-progress writes, the lock
                continue
            marker = _marker_ms(name)
            if marker is not None:
                partition.markers.append(marker)
            elif name.endswith(".parquet"):
                target = partition.merged if name.startswith(COMPACTED) else partition.written
                target.append((written_ms(name), entry.path))
        return partition

    @property
    def done(self) -> int | None:
        """D of the newest completed compaction, if any."""
        return max(self.markers) if self.markers else None

    def readable(self) -> list[tuple[float, str]]:
        """The files that hold the partition's rows, each row once."""
        done = self.done
        if done is None:
            return sorted(self.written)
        return sorted(
            [f for f in self.merged if f[0] == done] + [f for f in self.written if f[0] > done]
        )

    def superseded(self) -> list[str]:
        """Files and markers that the newest completed compaction made useless."""
        done = self.done
        if done is None:
            return []
        return (
            [p for ms, p in self.written if ms <= done]
            + [p for ms, p in self.merged if ms < done]
            + [str(self.path / f"{COMPACTED}{m}.done") for m in self.markers if m < done]
        )


def _partitions(folder: Path) -> Iterator[os.DirEntry[str]]:
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except (FileNotFoundError, NotADirectoryError):
        return
    for entry in entries:
        if entry.name.startswith("date=") and entry.is_dir():
            yield entry


def parquet_files(folders: Sequence[Path], since: float | None) -> list[str]:
    """The Parquet files that hold the rows of the date partitions ``date=YYYY-MM-DD`` of
    ``folders``, each row in one file only (see the module's documentation).

    With ``since``, partitions of earlier dates are skipped, and so are files whose name says
    they were written before it: a row is written after it is recorded (a merged file's name
    has the newest write time of what it holds). Both allow :data:`CLOCK_SLACK_SECONDS` of
    clock difference.
    """
    first_date = None if since is None else f"date={date_of(since - CLOCK_SLACK_SECONDS)}"
    first_ms = -math.inf if since is None else (since - CLOCK_SLACK_SECONDS) * 1000
    files = []
    for folder in folders:
        for entry in _partitions(folder):
            if first_date is not None and entry.name < first_date:
                continue
            for ms, path in _Partition.scan(Path(entry.path)).readable():
                if ms >= first_ms:
                    files.append(path)
    return files


def prediction_files(directory: Path, model: str | None, since: float | None) -> list[str]:
    root = Path(directory) / PREDICTIONS
    if model is not None:
        return parquet_files([root / f"model={model}"], since)
    return parquet_files(_model_folders(root), since)


def feedback_files(directory: Path, since: float | None) -> list[str]:
    return parquet_files([Path(directory) / FEEDBACK], since)


def _model_folders(root: Path) -> list[Path]:
    try:
        return sorted(Path(e.path) for e in os.scandir(root) if e.name.startswith("model="))
    except (FileNotFoundError, NotADirectoryError):
        return []


def date_of(unix: float) -> str:
    """The UTC date of a unix time, ``YYYY-MM-DD``."""
    return _day(int(unix // 86_400))


@lru_cache(maxsize=64)
def _day(day: int) -> str:
    return (dt.date(1970, 1, 1) + dt.timedelta(days=day)).isoformat()


# --- compaction ------------------------------------------------------------------------------


@dataclass
class Compaction:
    """What one :func:`compact` pass did."""

    #: Partitions merged: their path and the number of files merged.
    merged: list[tuple[str, int]] = field(default_factory=list)
    #: Files and markers deleted (superseded by a merge).
    deleted: int = 0
    #: Partitions another process was compacting.
    busy: int = 0


def compact(
    directory: Path, *, now: float | None = None, settle_seconds: float = 3600.0
) -> Compaction:
    """Merge the files of every finished day of the logs under ``directory``.

    Args:
        directory: the logs' directory (``prediction_log.dir``).
        now: the current unix time, which decides the finished days (tests).
        settle_seconds: a day is finished this long after its end (UTC), when no worker can
            still be writing rows of it (rows are written ``flush_seconds`` after they are
            recorded; clocks differ).
    """
    now = time.time() if now is None else now
    last_finished = date_of(now - settle_seconds - 86_400)
    report = Compaction()
    folders = [*_model_folders(Path(directory) / PREDICTIONS), Path(directory) / FEEDBACK]
    for folder in folders:
        for entry in _partitions(folder):
            if entry.name[len("date=") :] <= last_finished:
                _compact_partition(Path(entry.path), report)
    return report


def _compact_partition(path: Path, report: Compaction) -> None:
    with _locked(path) as locked:
        if not locked:
            report.busy += 1
            return
        partition = _Partition.scan(path)
        _remove_stale_temporaries(path)
        sources = partition.readable()
        merged = {p for _, p in partition.merged}
        if len(sources) > 1 and any(p not in merged for _, p in sources):
            _merge(path, sources)
            report.merged.append((str(path), len(sources)))
            partition = _Partition.scan(path)
        for superseded in partition.superseded():
            with contextlib.suppress(FileNotFoundError):
                os.unlink(superseded)
                report.deleted += 1


def _merge(path: Path, sources: list[tuple[float, str]]) -> None:
    """Steps 1 and 2 of the module's documentation for ``sources``."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    done = int(max(ms for ms, _ in sources))
    writers: dict[pa.Schema, tuple[Path, pq.ParquetWriter, list[pa.Table]]] = {}
    try:
        for _, source in sources:
            table = pq.read_table(source)
            slot = writers.get(table.schema)
            if slot is None:
                temporary = path / f".{COMPACTED}{done}-{len(writers)}.parquet.tmp"
                slot = (temporary, pq.ParquetWriter(temporary, table.schema), [])
                writers[table.schema] = slot
            buffer = slot[2]
            buffer.append(table)
            if sum(t.num_rows for t in buffer) >= ROW_GROUP_ROWS:
                slot[1].write_table(pa.concat_tables(buffer))
                buffer.clear()
        for _, writer, buffer in writers.values():
            if buffer:
                writer.write_table(pa.concat_tables(buffer))
            writer.close()
    except BaseException:
        for temporary, writer, _ in writers.values():
            with contextlib.suppress(Exception):
                writer.close()
            with contextlib.suppress(OSError):
                temporary.unlink()
        raise
    for seq, (temporary, _, _) in enumerate(writers.values()):
        os.replace(temporary, path / f"{COMPACTED}{done}-{seq}.parquet")
    _fsync_directory(path)
    (path / f"{COMPACTED}{done}.done").touch()
    _fsync_directory(path)


def _remove_stale_temporaries(path: Path) -> None:
    """Hidden files a crashed write or merge left, a day old."""
    now = time.time()
    for entry in os.scandir(path):
        stale = now - _mtime(Path(entry.path), now) > 86_400
        if entry.name.startswith(".") and entry.name.endswith(".tmp") and stale:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(entry.path)


def _mtime(path: Path, default: float) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return default


def _fsync_directory(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[bool]:
    """An exclusive, non-blocking ``flock`` on the partition's lock file: True when held."""
    import fcntl

    with open(path / ".compact.lock", "a+b") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            yield False
            return
        try:
            yield True
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
