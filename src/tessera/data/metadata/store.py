"""Reading and writing run records and lineage.

SQLite in the state directory by default (WAL mode, so ``tessera status`` reads while a run
writes); any SQLAlchemy URL in ``stores.metadata`` otherwise, PostgreSQL for a team. The schema
is versioned with Alembic: a store is migrated to the newest revision the first time this
version of Tessera opens it. SQLAlchemy and Alembic are imported only when a command needs the
records, never on the no-op path.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera.data.errors import DataError, StoreConfigError

#: The newest migration in ``migrations/versions`` (a test keeps the two in step).
HEAD_REVISION = "0003"


@dataclass
class StageRecord:
    """One stage's part in one run."""

    run_id: str
    stage: str
    status: str  # done, cached, failed, skipped
    key: str | None = None
    uses: str | None = None
    code_hash: str | None = None
    config_hash: str | None = None
    config: Any = None
    inputs: Any = None  # [[ref, fingerprint], ...] in parameter order
    deps: Any = None  # {path: hash} of files read
    outs: Any = None  # {path: hash} of files written
    versions: Any = None
    outputs: Any = None  # {output: fingerprint}
    shapes: Any = None  # {output: [rows, columns]}
    started: float | None = None
    duration: float | None = None
    host: str | None = None
    error: str | None = None
    log: str | None = None
    report: str | None = None  # fingerprint of a failure report table
    #: Run-level facts, filled in when a record is read back.
    run: dict[str, Any] = field(default_factory=dict)


def default_url(state_dir: Path) -> str:
    return f"sqlite:///{state_dir / 'metadata.db'}"


class MetadataStore:
    """Run records and lineage in a SQL database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._engine: Any = None

    # -- connection and migrations -------------------------------------------------------
    @property
    def sqlite_path(self) -> Path | None:
        if self.url.startswith("sqlite:///"):
            return Path(self.url.removeprefix("sqlite:///"))
        return None

    def exists(self) -> bool:
        """False for a local SQLite store not created yet (reads then return nothing)."""
        path = self.sqlite_path
        return path is None or path.exists()

    @property
    def engine(self) -> Any:
        if self._engine is None:
            self._engine = self._connect()
        return self._engine

    def _connect(self) -> Any:
        import sqlalchemy as sa
        from sqlalchemy import event
        from sqlalchemy.exc import ArgumentError, NoSuchModuleError, OperationalError

        path = self.sqlite_path
        kwargs: dict[str, Any] = {"future": True}
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            kwargs["connect_args"] = {"timeout": 30}
        else:
            kwargs["pool_pre_ping"] = True
        try:
            engine = sa.create_engine(self.url, **kwargs)
        except (ArgumentError, NoSuchModuleError, ValueError) as exc:
            raise StoreConfigError(
                f"metadata store URL {self._safe_url()!r} (stores.metadata in tessera.yaml) is "
                f"not usable: {exc}"
            ) from None
        except ImportError as exc:
            raise StoreConfigError(
                f"the metadata store {self._safe_url()!r} needs a driver: {exc}; for "
                "PostgreSQL, pip install 'tessera[postgres]'"
            ) from None
        if path is not None:

            @event.listens_for(engine, "connect")
            def _pragmas(dbapi_conn: Any, _: Any) -> None:
                cur = dbapi_conn.cursor()
                cur.execute("PRAGMA journal_mode=WAL")
                cur.execute("PRAGMA foreign_keys=ON")
                cur.close()

        try:
            self._migrate(engine)
        except ValueError as exc:  # e.g. a port that is not a number, found when connecting
            raise StoreConfigError(
                f"metadata store URL {self._safe_url()!r} (stores.metadata in tessera.yaml) is "
                f"not usable: {exc}"
            ) from None
        except OperationalError as exc:
            raise DataError(
                f"cannot use the metadata store {self._safe_url()}: {exc.orig}"
            ) from None
        except sa.exc.DatabaseError as exc:
            raise DataError(
                f"the metadata store {self._safe_url()} cannot be read ({exc.orig}); move it "
                "aside to start a new history (cached results are not affected)"
            ) from None
        return engine

    def _safe_url(self) -> str:
        from sqlalchemy.engine import make_url

        try:
            return make_url(self.url).render_as_string(hide_password=True)
        except Exception:
            return "<invalid URL>"

    def _migrate(self, engine: Any) -> None:
        import sqlalchemy as sa

        with engine.begin() as conn:
            inspector = sa.inspect(conn)
            current = None
            if inspector.has_table("alembic_version"):
                current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
            elif not inspector.has_table("runs"):
                create_fresh(conn)  # a new database: the newest schema directly, stamped
                return
        if current == HEAD_REVISION:
            return
        migrate(engine)

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()
            self._engine = None

    def transaction(self) -> AbstractContextManager[Any]:
        """A connection in a transaction, committed when the block ends without an exception.

        Raises:
            DataError: the database refused a statement (the transaction is rolled back).
        """
        return self._tx()

    @contextmanager
    def _tx(self) -> Iterator[Any]:
        from sqlalchemy.exc import DBAPIError

        try:
            with self.engine.begin() as conn:
                yield conn
        except DBAPIError as exc:
            raise DataError(
                f"cannot write to the metadata store {self._safe_url()}: {exc.orig}"
            ) from None

    # -- writing ---------------------------------------------------------------------------
    def start_run(self, run_id: str, pipeline: str, **info: Any) -> None:
        from tessera.data.metadata.schema import runs

        with self._tx() as conn:
            conn.execute(
                runs.insert().values(
                    id=run_id, pipeline=pipeline, started=time.time(), status="running", **info
                )
            )

    def finish_run(self, run_id: str, status: str, stages: Iterable[StageRecord]) -> None:
        from tessera.data.metadata.schema import (
            runs,
            stage_files,
            stage_inputs,
            stage_outputs,
            stage_runs,
        )

        with self._tx() as conn:
            for rec in stages:
                row = {
                    "run_id": run_id,
                    "stage": rec.stage,
                    "status": rec.status,
                    "key": rec.key,
                    "uses": rec.uses,
                    "code_hash": rec.code_hash,
                    "config_hash": rec.config_hash,
                    "config": rec.config,
                    "versions": rec.versions,
                    "started": rec.started,
                    "duration": rec.duration,
                    "host": rec.host,
                    "error": rec.error,
                    "log": rec.log,
                    "report": rec.report,
                }
                sid = conn.execute(stage_runs.insert().values(**row)).inserted_primary_key[0]
                shapes = rec.shapes or {}
                outputs = [
                    {
                        "stage_run_id": sid,
                        "output": name,
                        "fingerprint": fp,
                        "rows": (shapes.get(name) or [None, None])[0],
                        "columns": (shapes.get(name) or [None, None])[1],
                    }
                    for name, fp in (rec.outputs or {}).items()
                ]
                if outputs:
                    conn.execute(stage_outputs.insert(), outputs)
                inputs = [
                    {"stage_run_id": sid, "position": i, "ref": ref, "fingerprint": fp}
                    for i, (ref, fp) in enumerate(rec.inputs or [])
                ]
                if inputs:
                    conn.execute(stage_inputs.insert(), inputs)
                files = [
                    {"stage_run_id": sid, "role": role, "path": path, "hash": digest}
                    for role, mapping in (("in", rec.deps), ("out", rec.outs))
                    for path, digest in (mapping or {}).items()
                ]
                if files:
                    conn.execute(stage_files.insert(), files)
            conn.execute(
                runs.update().where(runs.c.id == run_id).values(status=status, ended=time.time())
            )

    # -- reading ---------------------------------------------------------------------------
    def _records(
        self, where: Any, limit: int | None = None, order_desc: bool = True
    ) -> list[StageRecord]:
        import sqlalchemy as sa

        from tessera.data.metadata.schema import (
            runs,
            stage_files,
            stage_inputs,
            stage_outputs,
            stage_runs,
        )

        if not self.exists():
            return []
        query = (
            sa.select(
                stage_runs,
                runs.c.pipeline,
                runs.c.git_commit,
                runs.c.git_dirty,
                runs.c.user,
                runs.c.command,
                runs.c.started.label("run_started"),
            )
            .join(runs, runs.c.id == stage_runs.c.run_id)
            .where(where)
            .order_by(
                stage_runs.c.started.desc() if order_desc else stage_runs.c.started,
                stage_runs.c.id.desc() if order_desc else stage_runs.c.id,
            )
        )
        if limit is not None:
            query = query.limit(limit)
        with self.engine.connect() as conn:
            rows = [dict(r._mapping) for r in conn.execute(query)]
            ids = [r["id"] for r in rows]
            if not ids:
                return []
            outs = conn.execute(
                sa.select(stage_outputs).where(stage_outputs.c.stage_run_id.in_(ids))
            ).all()
            ins = conn.execute(
                sa.select(stage_inputs)
                .where(stage_inputs.c.stage_run_id.in_(ids))
                .order_by(stage_inputs.c.position)
            ).all()
            files = conn.execute(
                sa.select(stage_files).where(stage_files.c.stage_run_id.in_(ids))
            ).all()
        by_id: dict[int, StageRecord] = {}
        for r in rows:
            run_info = {
                k: r.pop(k)
                for k in ("pipeline", "git_commit", "git_dirty", "user", "command", "run_started")
            }
            sid = r.pop("id")
            by_id[sid] = StageRecord(
                **r, inputs=[], deps={}, outs={}, outputs={}, shapes={}, run=run_info
            )
        for o in outs:
            rec = by_id[o.stage_run_id]
            rec.outputs[o.output] = o.fingerprint
            rec.shapes[o.output] = [o.rows, o.columns]
        for i in ins:
            by_id[i.stage_run_id].inputs.append([i.ref, i.fingerprint])
        for f in files:
            target = by_id[f.stage_run_id].deps if f.role == "in" else by_id[f.stage_run_id].outs
            target[f.path] = f.hash
        return list(by_id.values())

    def last_success(self, pipeline: str, stage: str) -> StageRecord | None:
        """The latest record of ``stage`` that produced (or reused) its outputs."""
        from tessera.data.metadata.schema import runs, stage_runs

        found = self._records(
            (stage_runs.c.stage == stage)
            & (runs.c.pipeline == pipeline)
            & stage_runs.c.status.in_(["done", "cached"]),
            limit=1,
        )
        return found[0] if found else None

    def producer(self, fingerprint: str) -> StageRecord | None:
        """The latest stage record that produced (or reused) the table ``fingerprint``."""
        import sqlalchemy as sa

        from tessera.data.metadata.schema import stage_outputs, stage_runs

        if not self.exists():
            return None
        ids = sa.select(stage_outputs.c.stage_run_id).where(
            stage_outputs.c.fingerprint == fingerprint
        )
        # Prefer the run that computed it over runs that found it cached.
        found = self._records(stage_runs.c.id.in_(ids) & (stage_runs.c.status == "done"), limit=1)
        if not found:
            found = self._records(stage_runs.c.id.in_(ids), limit=1)
        return found[0] if found else None

    def ancestry(self, fingerprint: str) -> dict[tuple[str, str], StageRecord]:
        """Records of every stage that produced ``fingerprint`` or a table upstream of it.

        Keyed by (stage, version): two stages can produce the same version (a filter that keeps
        every row, a validation that passes its input on), and lineage must tell them apart.
        One recursive query finds every ancestor version; one batch reads their records (a
        version made by a run is preferred to runs that found it cached; the latest wins).
        """
        import sqlalchemy as sa

        from tessera.data.metadata.schema import stage_inputs, stage_outputs, stage_runs

        if not self.exists():
            return {}
        walk = sa.select(sa.literal(fingerprint).label("fp")).cte("walk", recursive=True)
        walk = walk.union(
            sa.select(stage_inputs.c.fingerprint)
            .join(stage_outputs, stage_outputs.c.stage_run_id == stage_inputs.c.stage_run_id)
            .join(walk, stage_outputs.c.fingerprint == walk.c.fp)
        )
        ids = sa.select(stage_outputs.c.stage_run_id).where(
            stage_outputs.c.fingerprint.in_(sa.select(walk.c.fp))
        )
        found: dict[tuple[str, str], StageRecord] = {}
        # Newest first: the first record seen for a version wins, a "done" one over "cached".
        for rec in self._records(stage_runs.c.id.in_(ids)):
            for fp in (rec.outputs or {}).values():
                current = found.get((rec.stage, fp))
                if current is None or (current.status != "done" and rec.status == "done"):
                    found[(rec.stage, fp)] = rec
        return found

    def history(self, stage: str, pipeline: str | None = None) -> list[StageRecord]:
        """Every record of ``stage`` that has outputs, oldest first."""
        from tessera.data.metadata.schema import runs, stage_runs

        where = (stage_runs.c.stage == stage) & stage_runs.c.status.in_(["done", "cached"])
        if pipeline is not None:
            where = where & (runs.c.pipeline == pipeline)
        return self._records(where, order_desc=False)

    def file_history(self, path: str) -> list[StageRecord]:
        """Every stage record that read the file ``path``, oldest first."""
        import sqlalchemy as sa

        from tessera.data.metadata.schema import stage_files, stage_runs

        ids = sa.select(stage_files.c.stage_run_id).where(
            (stage_files.c.path == path) & (stage_files.c.role == "in")
        )
        return self._records(stage_runs.c.id.in_(ids), order_desc=False)

    def find_versions(self, prefix: str) -> list[str]:
        """Table versions (fingerprints) and file hashes starting with ``prefix``."""
        import sqlalchemy as sa

        from tessera.data.metadata.schema import stage_files, stage_outputs

        if not self.exists():
            return []
        pattern = prefix.replace("%", "").replace("_", "") + "%"
        with self.engine.connect() as conn:
            tables = conn.execute(
                sa.select(stage_outputs.c.fingerprint)
                .where(stage_outputs.c.fingerprint.like(pattern))
                .distinct()
            ).scalars()
            files = conn.execute(
                sa.select(stage_files.c.hash).where(stage_files.c.hash.like(pattern)).distinct()
            ).scalars()
            return sorted(set(tables) | set(files))

    def referenced(self) -> tuple[set[str], set[str], set[str]]:
        """Everything a recorded run refers to: table versions, file hashes, report tables."""
        import sqlalchemy as sa

        from tessera.data.metadata.schema import stage_files, stage_outputs, stage_runs

        if not self.exists():
            return set(), set(), set()
        with self.engine.connect() as conn:
            tables = set(conn.execute(sa.select(stage_outputs.c.fingerprint)).scalars())
            files = set(conn.execute(sa.select(stage_files.c.hash)).scalars())
            reports = set(
                conn.execute(
                    sa.select(stage_runs.c.report).where(stage_runs.c.report.is_not(None))
                ).scalars()
            )
        return tables, files, reports

    def runs(self, limit: int = 20) -> list[dict[str, Any]]:
        import sqlalchemy as sa

        from tessera.data.metadata.schema import runs

        if not self.exists():
            return []
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(runs).order_by(runs.c.started.desc()).limit(limit))
            return [dict(r._mapping) for r in rows]

    # -- model registry audit trail ------------------------------------------------------------
    def record_model_event(self, model: str, action: str, **fields: Any) -> None:
        """Append one event (register, promote, rollback, gate) to a model's audit trail.

        Args:
            model: the registered model's name.
            action: what happened.
            fields: ``alias``, ``version``, ``previous``, ``actor``, ``reason``, ``details``
                (the numbers behind the decision) and ``run_id``; ``at`` defaults to now.
        """
        from tessera.data.metadata.schema import model_events

        fields.setdefault("at", time.time())
        with self._tx() as conn:
            conn.execute(model_events.insert().values(model=model, action=action, **fields))

    def model_events(
        self, model: str, *, alias: str | None = None, actions: Iterable[str] = ()
    ) -> list[dict[str, Any]]:
        """A model's audit trail, oldest first (optionally one alias' moves, some actions)."""
        import sqlalchemy as sa

        from tessera.data.metadata.schema import model_events

        if not self.exists():
            return []
        query = sa.select(model_events).where(model_events.c.model == model)
        if alias is not None:
            query = query.where(model_events.c.alias == alias)
        if actions:
            query = query.where(model_events.c.action.in_(list(actions)))
        with self.engine.connect() as conn:
            rows = conn.execute(query.order_by(model_events.c.at, model_events.c.id))
            return [dict(r._mapping) for r in rows]


def create_fresh(conn: Any) -> None:
    """Create the newest schema in an empty database and stamp it with ``HEAD_REVISION``.

    Equivalent to running every migration (a test checks that both give the same tables) but
    without importing Alembic, which matters on a project's first run.
    """
    import sqlalchemy as sa

    from tessera.data.metadata.schema import metadata

    metadata.create_all(conn)
    version = sa.Table(
        "alembic_version",
        sa.MetaData(),
        sa.Column("version_num", sa.String(32), primary_key=True),
    )
    version.create(conn)
    conn.execute(version.insert().values(version_num=HEAD_REVISION))


def upsert(conn: Any, table: Any, row: Mapping[str, Any], keys: Sequence[str]) -> None:
    """Insert ``row`` into ``table``, or update the row with the same ``keys`` columns.

    One atomic statement on SQLite and PostgreSQL (``INSERT ... ON CONFLICT DO UPDATE``, so
    concurrent writers never collide); an update, then an insert when nothing was updated, on
    other databases.
    """
    values = {k: v for k, v in row.items() if k not in keys}
    if conn.dialect.name in ("sqlite", "postgresql"):
        import importlib

        dialect = importlib.import_module(f"sqlalchemy.dialects.{conn.dialect.name}")
        stmt = dialect.insert(table).values(**row)
        conn.execute(stmt.on_conflict_do_update(index_elements=list(keys), set_=values))
        return
    where = [table.c[k] == row[k] for k in keys]
    if conn.execute(table.update().where(*where).values(**values)).rowcount == 0:
        conn.execute(table.insert().values(**row))


def migrate(engine: Any) -> None:
    """Bring the database behind ``engine`` to the newest schema revision."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "head")
