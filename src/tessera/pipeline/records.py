"""Run records: what ran, when, where, from which code and config, producing what.

Stored in SQLite (``.tessera/meta.db``) through the standard library's ``sqlite3``, which keeps
start-up fast. WAL mode lets ``tessera status`` read while a run writes.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tessera.data.errors import DataError

SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    pipeline TEXT NOT NULL,
    started REAL NOT NULL,
    ended REAL,
    status TEXT NOT NULL,
    command TEXT,
    executor TEXT,
    env TEXT,
    git_commit TEXT,
    git_dirty INTEGER,
    host TEXT,
    user TEXT
);
CREATE TABLE IF NOT EXISTS stage_runs (
    run_id TEXT NOT NULL REFERENCES runs(id),
    stage TEXT NOT NULL,
    status TEXT NOT NULL,
    key TEXT,
    uses TEXT,
    code_hash TEXT,
    config_hash TEXT,
    config TEXT,
    inputs TEXT,
    deps TEXT,
    versions TEXT,
    outputs TEXT,
    started REAL,
    duration REAL,
    host TEXT,
    error TEXT,
    log TEXT,
    PRIMARY KEY (run_id, stage)
);
CREATE INDEX IF NOT EXISTS stage_runs_by_stage ON stage_runs (stage, started);
"""

JSON_FIELDS = ("config", "inputs", "deps", "versions", "outputs")


@dataclass
class StageRecord:
    """One stage's part in one run."""

    run_id: str
    stage: str
    status: str
    key: str | None = None
    uses: str | None = None
    code_hash: str | None = None
    config_hash: str | None = None
    config: Any = None
    inputs: Any = None
    deps: Any = None
    versions: Any = None
    outputs: Any = None
    started: float | None = None
    duration: float | None = None
    host: str | None = None
    error: str | None = None
    log: str | None = None


class RunRecords:
    """Read and write run records in a SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: sqlite3.Connection | None = None

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                conn = sqlite3.connect(self.path, timeout=30, isolation_level=None)
                conn.execute("PRAGMA journal_mode=WAL")
                conn.executescript(SCHEMA)
            except sqlite3.DatabaseError as exc:
                raise DataError(
                    f"the run records in {self.path} cannot be read ({exc}); move the file "
                    "aside to start a new history (cached results are not affected)"
                ) from None
            self._conn = conn
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    @contextmanager
    def transaction(self) -> Iterator[sqlite3.Connection]:
        conn = self.conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            yield conn
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def start_run(self, run_id: str, pipeline: str, **info: Any) -> None:
        cols = ["id", "pipeline", "started", "status", *info]
        values = [run_id, pipeline, time.time(), "running", *info.values()]
        with self.transaction() as conn:
            conn.execute(
                f"INSERT INTO runs ({', '.join(cols)}) VALUES ({', '.join('?' * len(cols))})",
                values,
            )

    def finish_run(self, run_id: str, status: str, stages: list[StageRecord]) -> None:
        with self.transaction() as conn:
            for rec in stages:
                row = {k: v for k, v in rec.__dict__.items()}
                for name in JSON_FIELDS:
                    row[name] = json.dumps(row[name]) if row[name] is not None else None
                cols = list(row)
                conn.execute(
                    f"INSERT OR REPLACE INTO stage_runs ({', '.join(cols)}) "
                    f"VALUES ({', '.join('?' * len(cols))})",
                    [row[c] for c in cols],
                )
            conn.execute(
                "UPDATE runs SET status = ?, ended = ? WHERE id = ?", (status, time.time(), run_id)
            )

    def last_success(self, pipeline: str, stage: str) -> StageRecord | None:
        """The latest record of ``stage`` that produced (or reused) its outputs."""
        if not self.path.exists():
            return None
        cur = self.conn.execute(
            "SELECT s.* FROM stage_runs s JOIN runs r ON r.id = s.run_id "
            "WHERE s.stage = ? AND r.pipeline = ? AND s.status IN ('done', 'cached') "
            "ORDER BY s.started DESC LIMIT 1",
            (stage, pipeline),
        )
        row = cur.fetchone()
        if row is None:
            return None
        data = dict(zip([d[0] for d in cur.description], row, strict=True))
        for name in JSON_FIELDS:
            if data[name] is not None:
                data[name] = json.loads(data[name])
        return StageRecord(**data)
