"""Commands that run and inspect the pipeline: run, status, dag, transformations."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from tessera.cli.output import console, emit_json, err_console

if TYPE_CHECKING:
    from tessera.cli.progress import RunView
    from tessera.data.store import ArtifactStore
    from tessera.pipeline.runner import RunSummary
    from tessera.pipeline.runners import Executor
    from tessera.pipeline.workspace import Workspace

EnvOpt = typer.Option(
    None, "--env", "-e", metavar="NAME", help="Environment overlay: envs/NAME.yaml."
)
OverrideOpt = typer.Option(
    None,
    "--override",
    "-o",
    metavar="STAGE.KEY=VALUE",
    help="Override a parameter, the value read as YAML (repeatable).",
)
PipelineOpt = typer.Option(
    None, "--pipeline", "-p", metavar="FILE", help="Pipeline file (default from tessera.yaml)."
)
JsonOpt = typer.Option(False, "--json", metavar="", help="Machine-readable output on stdout.")


def open_ws(env: str | None, overrides: list[str] | None, pipeline: str | None) -> Workspace:
    from tessera.config.project import chdir
    from tessera.pipeline.workspace import open_workspace

    ws = open_workspace(env=env, overrides=overrides or (), pipeline_file=pipeline)
    chdir(ws.root)
    return ws


def check_targets(ws: Workspace, targets: list[str]) -> None:
    from tessera.config.errors import ConfigError, Problem, did_you_mean

    problems = [
        Problem(
            f"no stage named '{t}'",
            "command line",
            stage=t,
            hint=did_you_mean(t, ws.pipeline.stages) or f"stages: {', '.join(ws.pipeline.order)}",
        )
        for t in targets
        if t not in ws.pipeline.stages
    ]
    if problems:
        raise ConfigError(problems)


def run(
    stages: list[str] = typer.Argument(None, help="Stages to bring up to date (default: all)."),
    jobs: int = typer.Option(
        None, "--jobs", "-j", min=1, metavar="N", help="Stages to run at once (processes)."
    ),
    executor: str = typer.Option(
        None,
        "--executor",
        "-x",
        metavar="local|dask",
        help="Where stages run (default from tessera.yaml).",
    ),
    force: bool = typer.Option(
        False, "--force", "-f", metavar="", help="Re-run the targets even if cached."
    ),
    override: list[str] = OverrideOpt,
    env: str = EnvOpt,
    pipeline: str = PipelineOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Run the pipeline (or STAGE... and what they need), reusing every cached result."""
    from tessera.errors import UsageError

    ws = open_ws(env, override, pipeline)
    check_targets(ws, stages or [])
    cfg = ws.project.config.executor
    kind = executor or cfg.kind
    if kind not in ("local", "dask"):
        raise UsageError(f"--executor must be 'local' or 'dask', got {kind!r}")
    from tessera.cli.progress import RunView
    from tessera.pipeline.runners import make_executor

    n_jobs = jobs or cfg.jobs
    ex = make_executor(kind, n_jobs, cfg.address, cfg.n_workers)
    selected = ws.pipeline.with_ancestors(stages) if stages else ws.pipeline.order
    view = RunView({s: ws.pipeline.stages[s].uses for s in selected}, enabled=not as_json)
    argv = sys.argv[1:]
    summary = execute(
        ws,
        ex,
        view,
        targets=stages or None,
        force=force,
        command=" ".join(["tessera", *argv]),
        env=env,
    )
    if as_json:
        emit_json(summary.to_dict())
    else:
        report(summary, argv, ws.store)
    if summary.status != "success":
        raise typer.Exit(1)


def execute(ws: Workspace, executor: Executor, view: RunView, **options: Any) -> RunSummary:
    """Run the pipeline behind the live view; Ctrl-C stops cleanly with exit code 130."""
    from tessera.pipeline.runner import run_pipeline

    def waiting(holder: dict[str, Any]) -> None:
        import time

        since = holder.get("since")
        age = f", started {time.time() - since:.0f}s ago" if isinstance(since, float) else ""
        who = f"pid {holder.get('pid', '?')}: {holder.get('command', 'tessera run')}{age}"
        err_console.print(f"Another run is using this project ({who}); waiting for it to finish...")

    try:
        with view:
            return run_pipeline(ws, executor, on_event=view, on_wait=waiting, **options)
    except KeyboardInterrupt:
        err_console.print(
            "Interrupted. Stages that finished are stored; run the same command to resume."
        )
        raise typer.Exit(130) from None
    finally:
        ws.close()


def report(summary: RunSummary, argv: list[str], store: ArtifactStore | None = None) -> None:
    from tessera.pipeline.runner import resume_hint

    for damage in summary.recovered:
        err_console.print(f"[yellow]recovered:[/] {escape(damage)}")
    done, cached = summary.count("done"), summary.count("cached")
    if summary.status == "success":
        if done == 0:
            console.print(f"Nothing to run: {cached} stages up to date.")
        else:
            console.print(
                f"[green]Run {summary.run_id} succeeded[/]: {done} ran, {cached} cached "
                f"in {summary.seconds:.2f}s."
            )
        return
    for failure in summary.failures:
        err_console.print(
            f"[bold red]Stage '{failure.stage}' failed:[/] {escape(failure.error or '')}"
        )
        if failure.where:
            err_console.print(f"  at {failure.where}")
        if failure.report and store is not None:
            print_report(store, failure.report)
        if failure.log and Path(failure.log).is_file():
            err_console.print(f"  log: {failure.log}")
    for error in summary.errors:
        err_console.print(f"[bold red]error:[/] {escape(error)}")
    skipped = summary.count("skipped")
    err_console.print(
        f"{done} ran, {cached} cached, {len(summary.failures)} failed, {skipped} skipped."
    )
    err_console.print(f"Fix it, then resume with: [bold]{resume_hint(argv)}[/]")


def print_report(store: ArtifactStore, version: str, limit: int = 20) -> None:
    """A failed stage's report table (stored as an artifact), first ``limit`` rows."""
    from rich.table import Table

    try:
        frame = store.get_table(version).to_pandas()
    except Exception as exc:  # the report is a courtesy: never hide the failure behind it
        err_console.print(f"  (report {version[:12]} unreadable: {exc})")
        return
    table = Table(
        box=None, header_style="bold", title=f"report {version[:12]}", title_justify="left"
    )
    for col in frame.columns:
        table.add_column(str(col))
    for row in frame.head(limit).itertuples(index=False):
        table.add_row(*(escape(str(v)) for v in row))
    err_console.print(table)
    if len(frame) > limit:
        err_console.print(f"  ... {len(frame) - limit} more rows: tessera data show {version[:12]}")


def status(
    stages: list[str] = typer.Argument(None, help="Stages to check (default: all)."),
    override: list[str] = OverrideOpt,
    env: str = EnvOpt,
    pipeline: str = PipelineOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Show which stages are stale, and why."""
    from tessera.pipeline.plan import stage_status

    ws = open_ws(env, override, pipeline)
    check_targets(ws, stages or [])
    try:
        result = stage_status(ws, stages or None)
    finally:
        ws.close()
    if as_json:
        emit_json(
            {
                "stages": [s.to_dict() for s in result],
                "stale": sum(not s.up_to_date for s in result),
            }
        )
        return
    stale = [s for s in result if not s.up_to_date]
    if not stale:
        console.print(f"Everything is up to date ({len(result)} stages).")
        return
    for s in result:
        if s.up_to_date:
            console.print(f"[cyan]✓[/] {s.stage}")
        else:
            console.print(f"[yellow]•[/] {s.stage}: {escape('; '.join(s.reasons))}")
    console.print(f"{len(stale)} of {len(result)} stages would run.")


def dag(
    fmt: str = typer.Option(
        "text", "--format", "-F", metavar="text|mermaid|dot", help="Output format."
    ),
    env: str = EnvOpt,
    pipeline: str = PipelineOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Print the DAG as text, Mermaid or Graphviz DOT (with --json: stages and their config)."""
    from tessera.cli.render import render_dag
    from tessera.errors import UsageError

    if fmt not in ("text", "mermaid", "dot"):
        raise UsageError(f"--format must be text, mermaid or dot, got {fmt!r}")
    ws = open_ws(env, None, pipeline)
    p = ws.pipeline
    if as_json:
        emit_json(
            {
                "stages": [
                    {
                        "stage": n,
                        "uses": p.stages[n].uses,
                        "outputs": p.stages[n].outputs,
                        "inputs": [str(r) for r in p.stages[n].inputs],
                        "config": p.stages[n].config,
                    }
                    for n in p.order
                ]
            }
        )
        return
    print(render_dag(p, fmt))


def transformations(
    name: str = typer.Argument(None, help="Show one transformation in detail."),
    as_json: bool = JsonOpt,
) -> None:
    """List the transformations stages can use (built-in, installed and the project's)."""
    from tessera.cli.render import describe_transformation, transformation_rows
    from tessera.config.errors import ConfigError, Problem, did_you_mean
    from tessera.config.project import find_project, load_project
    from tessera.pipeline.registry import discover

    try:
        root = find_project()
    except ConfigError:
        registry = discover(None)  # outside a project: built-ins and installed packages
    else:
        project = load_project(root)
        registry = discover(project.root, project.config.transforms)
    items = sorted(registry.transformations.values(), key=lambda t: t.name)
    if name:
        t = registry.get(name)
        if t is None:
            raise ConfigError(
                Problem(
                    f"unknown transformation '{name}'",
                    hint=did_you_mean(name, registry.transformations),
                )
            )
        info = describe_transformation(t)
        if as_json:
            emit_json(info)
        else:
            console.print(info["text"], markup=False)
        return
    rows = transformation_rows(items)
    if as_json:
        emit_json(rows)
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("name", "inputs", "outputs", "source", "summary"):
        table.add_column(col)
    for row in rows:
        inputs = f"{row['min_inputs']}+" if row["variadic"] else str(row["min_inputs"])
        table.add_row(
            row["name"], inputs, ", ".join(row["outputs"]) or "-", row["source"], row["summary"]
        )
    console.print(table)


def register(app: typer.Typer) -> None:
    app.command()(run)
    app.command()(status)
    app.command()(dag)
    app.command()(transformations)
