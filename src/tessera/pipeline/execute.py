"""Running one stage: load inputs, call the transformation, fingerprint and store the outputs.

This is the unit every executor runs, in this process, in a worker process or on a Dask worker.
A job is plain data, so it pickles; a worker sets itself up from the job (project root on
``sys.path``, working directory, registry) the first time it sees a project.
"""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera.data.hashing import FileHasher
from tessera.data.store import ArtifactStore
from tessera.pipeline.context import ProjectSettings, StageContext, entered
from tessera.pipeline.errors import StageReportError
from tessera.pipeline.model import ResolvedStage

#: Name under which a failing stage's report table travels with its (absent) outputs.
REPORT = "__report__"


@dataclass
class StageJob:
    """Everything needed to run one stage, anywhere that sees the project and its store."""

    root: str
    transforms: str
    store_root: str
    stage: ResolvedStage
    key: str
    key_parts: dict[str, Any]
    inputs: list[str]  # fingerprints, in parameter order
    log: str
    run_id: str = ""
    settings: ProjectSettings | None = None

    def context(self) -> StageContext | None:
        """The stage context the transformation sees (None without project settings)."""
        if self.settings is None:
            return None
        refs = [str(r) for r in self.stage.inputs]
        return StageContext(
            project=self.settings,
            stage=self.stage.name,
            uses=self.stage.uses,
            run_id=self.run_id,
            key=self.key,
            code_hash=self.stage.code_hash,
            config_hash=self.stage.config_hash,
            inputs=dict(zip(refs, self.inputs, strict=False)),
        )


@dataclass
class StageResult:
    """The outcome of a stage job."""

    stage: str
    ok: bool
    outputs: dict[str, str] = field(default_factory=dict)
    shapes: dict[str, list[int]] = field(default_factory=dict)
    outs: dict[str, str] = field(default_factory=dict)
    started: float = 0.0
    duration: float = 0.0
    host: str = ""
    error: str | None = None
    where: str | None = None
    report: str | None = None  # version id of the report table a failing stage left
    #: An input failed verification and was moved aside: running again recomputes it.
    corrupt_input: bool = False


_REGISTRIES: dict[tuple[str, str], Any] = {}


def registry_for(root: str, transforms: str) -> Any:
    """The registry of a project for a worker process, rediscovered when its files change.

    Worker processes (and long-lived Dask workers) serve many jobs; the transformation files'
    names, sizes and modification times decide whether what they imported is still current.
    """
    from tessera.pipeline.registry import discover

    if os.getcwd() != root:
        os.chdir(root)
    directory = Path(root) / transforms
    files = sorted(directory.glob("*.py")) if directory.is_dir() else []
    signature = repr([(f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files])
    cache_key = (root, signature)
    if cache_key not in _REGISTRIES:
        _REGISTRIES.clear()
        _REGISTRIES[cache_key] = discover(Path(root), transforms)
    return _REGISTRIES[cache_key]


def compute(job: StageJob, tables: list[Any], registry: Any) -> tuple[StageResult, dict[str, Any]]:
    """Call the transformation on input tables; returns output Arrow tables (not yet stored)."""
    from tessera.data.fingerprint import fingerprint_table
    from tessera.data.tables import to_frame, to_table
    from tessera.pipeline.registry import require

    stage = job.stage
    result = StageResult(stage.name, ok=False, started=time.time(), host=socket.gethostname())
    t0 = time.perf_counter()
    out_tables: dict[str, Any] = {}
    Path(job.log).parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "w", encoding="utf-8") as log, _captured(log), entered(job.context()):
        try:
            t = require(registry, stage.uses)
            config = t.config_model.model_validate(stage.params)
            frames = [to_frame(tb) for tb in tables]
            outputs = t.call(frames, config)
            for name, value in outputs.items():
                table = to_table(value, what=f"output '{name}' of stage '{stage.name}'")
                fp = fingerprint_table(table)
                out_tables[name] = table
                result.outputs[name] = fp
                result.shapes[name] = [table.num_rows, table.num_columns]
            result.ok = True
        except StageReportError as exc:
            result.error = str(exc)
            result.where = _user_frame(exc, job.root)
            report = to_table(exc.report, what=f"the report of stage '{stage.name}'")
            result.report = fingerprint_table(report)
            out_tables = {REPORT: report}
        except Exception as exc:
            traceback.print_exc(file=log)
            result.error = f"{type(exc).__name__}: {exc}"
            result.where = _user_frame(exc, job.root)
    result.duration = time.perf_counter() - t0
    return result, out_tables


def store_report(result: StageResult, store: ArtifactStore, tables: dict[str, Any]) -> None:
    """Keep the report table of a failed stage (the run record points to it)."""
    if result.report is not None and REPORT in tables:
        store.put_table(tables[REPORT], result.report)


def finish(
    job: StageJob, result: StageResult, store: ArtifactStore, tables: dict[str, Any]
) -> None:
    """Store output tables and the cache entry. Objects first, so an entry never dangles."""
    for name, table in tables.items():
        store.put_table(table, result.outputs[name])
    hasher = FileHasher()
    result.outs = {p: hasher.hash(Path(job.root) / p) or "missing" for p in job.stage.outs}
    store.put_key(
        job.key,
        {
            "stage": job.stage.name,
            "outputs": result.outputs,
            "shapes": result.shapes,
            "outs": result.outs,
            "created": time.time(),
        },
    )


def failed(job: StageJob, exc: BaseException) -> StageResult:
    """A result for a stage that could not even start (its inputs could not be read...)."""
    Path(job.log).parent.mkdir(parents=True, exist_ok=True)
    with open(job.log, "w", encoding="utf-8") as log:
        traceback.print_exception(exc, file=log)
    from tessera.data.errors import CorruptArtifactError

    return StageResult(
        job.stage.name,
        ok=False,
        error=f"{type(exc).__name__}: {exc}",
        host=socket.gethostname(),
        corrupt_input=isinstance(exc, CorruptArtifactError) and exc.moved_to is not None,
    )


def run_job(job: StageJob) -> StageResult:
    """Run a stage job start to finish, reading inputs from and writing outputs to the store.

    This is what worker processes and Dask workers execute.
    """
    store = ArtifactStore(Path(job.store_root))
    registry = registry_for(job.root, job.transforms)
    try:
        tables = [store.get_table(fp) for fp in job.inputs]
    except Exception as exc:
        return failed(job, exc)
    result, out = compute(job, tables, registry)
    try:
        if result.ok:
            finish(job, result, store, out)
        else:
            store_report(result, store, out)
    except Exception as exc:
        result.ok, result.error = False, f"{type(exc).__name__}: {exc}"
    return result


@contextlib.contextmanager
def _captured(log: Any) -> Any:
    """Send the stage's prints and log records to its log file."""
    handler = logging.StreamHandler(log)
    root = logging.getLogger()
    root.addHandler(handler)
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = log
    try:
        yield
    finally:
        sys.stdout, sys.stderr = old_out, old_err
        root.removeHandler(handler)


def _user_frame(exc: BaseException, root: str) -> str | None:
    """``file:line`` of the deepest frame in the project's own code, if any.

    For a built-in transformation there is none; the scheduler then points at the stage in the
    pipeline file instead, which is where the user can act.
    """
    where = None
    tb = exc.__traceback__
    prefix = root.rstrip(os.sep) + os.sep
    while tb is not None:
        file = tb.tb_frame.f_code.co_filename
        if file.startswith(prefix) and "site-packages" not in file:
            where = f"{os.path.relpath(file, root)}:{tb.tb_lineno}"
        tb = tb.tb_next
    return where
