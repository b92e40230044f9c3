"""The scheduler: walks the DAG, reuses cached results, dispatches the rest to an executor.

Cache keys are computed just before a stage would run, from the fingerprints its upstream stages
actually produced. So a stage whose upstream re-ran but produced identical data is still a cache
hit (early cut-off), and nothing is recomputed that does not need to be.
"""

from __future__ import annotations

import contextlib
import getpass
import graphlib
import os
import socket
import subprocess
import time
import uuid
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera.data.metadata import StageRecord
from tessera.pipeline.context import git_commit
from tessera.pipeline.execute import StageJob, StageResult
from tessera.pipeline.keys import stage_key
from tessera.pipeline.lock import run_lock
from tessera.pipeline.plan import cached_entry, file_deps, save_last_state
from tessera.pipeline.runners.base import Executor
from tessera.pipeline.workspace import Workspace, project_settings


@dataclass
class StageEvent:
    """Something happened to a stage: queued, running, cached, done, failed or skipped."""

    kind: str
    stage: str
    duration: float | None = None
    error: str | None = None
    where: str | None = None
    log: str | None = None
    rows: int | None = None
    report: str | None = None  # version id of a failure report table (a validation report...)
    corrupt_input: bool = False


@dataclass
class RunSummary:
    """What a run did."""

    run_id: str | None
    status: str  # "success" or "failed"
    stages: dict[str, str] = field(default_factory=dict)  # stage -> done/cached/failed/skipped
    durations: dict[str, float] = field(default_factory=dict)
    outputs: dict[str, dict[str, str]] = field(default_factory=dict)
    failures: list[StageEvent] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0
    #: Corrupted stored tables that were detected, moved aside and recomputed in this run.
    recovered: list[str] = field(default_factory=list)

    def count(self, kind: str) -> int:
        return sum(1 for v in self.stages.values() if v == kind)

    def to_dict(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "status": self.status,
            "seconds": round(self.seconds, 3),
            "stages": [
                {
                    "stage": name,
                    "status": status,
                    "seconds": round(self.durations.get(name, 0.0), 4),
                    "outputs": self.outputs.get(name, {}),
                }
                for name, status in self.stages.items()
            ],
            "failures": [
                {"stage": f.stage, "error": f.error, "where": f.where, "log": f.log}
                for f in self.failures
            ],
            "errors": self.errors,
            "recovered": self.recovered,
        }


def new_run_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + "-" + uuid.uuid4().hex[:6]


def _git(root: Path) -> tuple[str | None, bool | None]:
    commit = git_commit(root)
    if commit is None:
        return None, None
    try:
        dirty = subprocess.run(
            ["git", "status", "--porcelain"], cwd=root, capture_output=True, text=True, timeout=10
        )
    except (OSError, subprocess.SubprocessError):
        return commit, None
    return commit, bool(dirty.stdout.strip())


def run_pipeline(
    ws: Workspace,
    executor: Executor,
    *,
    on_wait: Callable[[dict[str, Any]], None] = lambda holder: None,
    **options: Any,
) -> RunSummary:
    """Run the pipeline while holding the project's run lock (see ``_run`` for the options).

    A second run on the same project waits for the first to finish, after calling
    ``on_wait(holder)`` with what is known of the run holding the lock (pid, command, since).
    """
    cwd = os.getcwd()
    os.chdir(ws.root)  # stages resolve relative paths against the project root
    try:
        with run_lock(ws.project.state_dir, options.get("command", "tessera run"), on_wait):
            summary = _run(ws, executor, **options)
            if summary.failures and all(f.corrupt_input for f in summary.failures):
                # Damaged inputs were moved aside: their stages are simply stale now. One more
                # pass recomputes them and finishes the work (a second damage would not loop).
                first = summary
                summary = _run(ws, executor, **options)
                summary.recovered = [f.error or "" for f in first.failures]
                summary.seconds += first.seconds
            return summary
    finally:
        os.chdir(cwd)


def _run(
    ws: Workspace,
    executor: Executor,
    *,
    targets: list[str] | None = None,
    force: bool = False,
    on_event: Callable[[StageEvent], None] = lambda e: None,
    command: str = "tessera run",
    env: str | None = None,
) -> RunSummary:
    """Run ``targets`` (default: every stage) and what they need.

    Args:
        ws: the workspace.
        executor: where stage jobs run.
        targets: stages to bring up to date, with everything they depend on.
        force: re-run the targets (all selected stages when no targets are given) even if cached.
        on_event: called for every state change of a stage (for progress displays).
        command: the command line, for the run record.
        env: the environment overlay in use, for the run record.
    """
    t_start = time.perf_counter()
    pipeline = ws.pipeline
    selected = pipeline.with_ancestors(targets) if targets else list(pipeline.order)
    check_input_files(ws, selected)
    forced = set(targets or selected) if force else set()
    summary = RunSummary(run_id=None, status="success")
    known: dict[str, dict[str, str]] = {}
    records: list[StageRecord] = []
    consumers = {s: {d for d in pipeline.downstream(s) if d in selected} for s in selected}
    run_id: str | None = None
    log_dir: Path | None = None
    failed = False
    settings = project_settings(ws.project)

    sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
    for name in selected:
        sorter.add(name, *pipeline.upstream(name))
        on_event(StageEvent("queued", name))
    sorter.prepare()
    executor.prepare(ws.resolver.get_registry)
    running: dict[Future[StageResult], tuple[str, str, dict[str, Any], float]] = {}

    def settle(name: str, status: str) -> None:
        summary.stages[name] = status
        sorter.done(name)
        for up in pipeline.upstream(name):
            consumers[up].discard(name)
            if not consumers[up]:
                executor.release(up)

    opening: list[Future[None]] = []

    def start_run() -> str:
        """A run id now; the run's first record is written in the background.

        Opening the metadata store (importing SQLAlchemy, maybe creating the database) and asking
        git for the commit take a good part of a second: they overlap with the first stages
        instead of delaying them. ``finish`` waits for it.
        """
        nonlocal log_dir
        rid = new_run_id()

        def record_start() -> None:
            commit, dirty = _git(ws.root)
            ws.records.start_run(
                rid,
                pipeline.file,
                command=command,
                executor=executor.name,
                env=env,
                git_commit=commit,
                git_dirty=dirty,
                host=socket.gethostname(),
                user=getpass.getuser(),
            )

        pool = ThreadPoolExecutor(1, thread_name_prefix="tessera-records")
        opening.append(pool.submit(record_start))
        pool.shutdown(wait=False)
        log_dir = ws.project.state_dir / "logs" / rid
        summary.run_id = rid
        return rid

    try:
        while sorter.is_active():
            for name in sorter.get_ready():
                stage = pipeline.stages[name]
                blocked = [u for u in pipeline.upstream(name) if u not in known]
                if blocked or (failed and name not in known):
                    on_event(StageEvent("skipped", name))
                    settle(name, "skipped")
                    continue
                inputs = [(str(r), known[r.stage][r.output]) for r in stage.inputs]
                deps = file_deps(ws, stage)
                key, parts = stage_key(stage, inputs, deps)
                if name not in forced:
                    entry = cached_entry(ws, stage, key)
                    if entry is not None:
                        outputs = entry["outputs"]
                        known[name] = outputs
                        summary.outputs[name] = outputs
                        records.append(
                            _record(
                                stage,
                                key,
                                parts,
                                "cached",
                                outputs=outputs,
                                shapes=entry.get("shapes"),
                                outs=entry.get("outs"),
                            )
                        )
                        on_event(StageEvent("cached", name))
                        settle(name, "cached")
                        continue
                if run_id is None:
                    run_id = start_run()
                assert log_dir is not None
                job = StageJob(
                    root=str(ws.root),
                    transforms=ws.project.config.transforms,
                    store_root=str(ws.store.root),
                    stage=stage,
                    key=key,
                    key_parts=parts,
                    inputs=[fp for _, fp in inputs],
                    log=str(log_dir / f"{name}.log"),
                    run_id=run_id,
                    settings=settings,
                )
                for out in stage.outs:  # a sink may write into a directory not there yet
                    (ws.root / out).parent.mkdir(parents=True, exist_ok=True)
                for path, digest in deps.items():  # raw inputs are versioned too
                    if digest != "missing":
                        ws.store.put_file(ws.root / path, digest)
                on_event(StageEvent("running", name))
                running[executor.submit(job)] = (name, key, parts, time.time())
            if not running:
                continue
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                name, key, parts, started = running.pop(future)
                stage = pipeline.stages[name]
                result = future.result()
                log = str(log_dir / f"{name}.log") if log_dir else None
                summary.durations[name] = result.duration
                if result.ok:
                    known[name] = result.outputs
                    summary.outputs[name] = result.outputs
                    rows = next(iter(result.shapes.values()), [None])[0]
                    on_event(StageEvent("done", name, result.duration, log=log, rows=rows))
                    records.append(
                        _record(
                            stage,
                            key,
                            parts,
                            "done",
                            outputs=result.outputs,
                            shapes=result.shapes,
                            outs=result.outs,
                            result=result,
                            started=started,
                        )
                    )
                    settle(name, "done")
                else:
                    failed = True
                    where = result.where or f"{ws.spec.file}:{ws.spec.line(name)} (stage '{name}')"
                    event = StageEvent(
                        "failed",
                        name,
                        result.duration,
                        result.error,
                        where,
                        log,
                        report=result.report,
                        corrupt_input=result.corrupt_input,
                    )
                    summary.failures.append(event)
                    on_event(event)
                    records.append(
                        _record(
                            stage, key, parts, "failed", result=result, started=started, log=log
                        )
                    )
                    settle(name, "failed")
    except BaseException:  # Ctrl-C or a bug: record what finished, then stop
        executor.close(cancel=True)
        if run_id is not None:
            for rec in records:
                rec.run_id = run_id
            with contextlib.suppress(Exception):  # record what we can; the interrupt matters more
                for started_run in opening:
                    started_run.result()
                ws.records.finish_run(run_id, "interrupted", records)
        save_last_state(ws, records)
        ws.hasher.save()
        raise
    summary.errors = executor.close()
    save_last_state(ws, records)
    if summary.failures or summary.errors:
        summary.status = "failed"
    if run_id is not None:
        for rec in records:
            rec.run_id = run_id
        for started_run in opening:
            started_run.result()  # raises if the store could not be opened
        ws.records.finish_run(run_id, summary.status, records)
    ws.hasher.save()
    summary.seconds = time.perf_counter() - t_start
    return summary


def check_input_files(ws: Workspace, stages: list[str]) -> None:
    """Input files that neither exist nor are written by a stage are a configuration error."""
    from tessera.config.errors import ConfigError, Problem

    written = {p for s in ws.pipeline.stages.values() for p in s.outs}
    problems = [
        Problem(
            f"input file '{path}' does not exist",
            ws.spec.file,
            ws.spec.line(name),
            name,
            hint="no stage writes it either; check the path",
        )
        for name in stages
        for path in ws.pipeline.stages[name].deps
        if path not in written and not (ws.root / path).exists()
    ]
    if problems:
        raise ConfigError(problems)


def _record(
    stage: Any,
    key: str,
    parts: dict[str, Any],
    status: str,
    *,
    outputs: dict[str, str] | None = None,
    shapes: dict[str, Any] | None = None,
    outs: dict[str, str] | None = None,
    result: StageResult | None = None,
    started: float | None = None,
    log: str | None = None,
) -> StageRecord:
    """The record of one stage in this run, from its key components and what it produced."""
    return StageRecord(
        run_id="",
        stage=stage.name,
        status=status,
        key=key,
        uses=stage.uses,
        code_hash=stage.code_hash,
        config_hash=stage.config_hash,
        config=stage.config,
        inputs=parts["inputs"],
        deps=parts["deps"],
        versions=parts["versions"],
        outputs=outputs,
        shapes=shapes,
        outs=outs,
        started=started or time.time(),
        duration=result.duration if result else None,
        host=result.host if result else None,
        error=result.error if result else None,
        log=log,
        report=result.report if result else None,
    )


def resume_hint(argv: list[str]) -> str:
    """The command to resume: the same command without ``--force`` (cached stages are reused)."""
    import shlex

    return shlex.join(["tessera", *(a for a in argv if a not in ("--force", "-f"))])
