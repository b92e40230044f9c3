"""Commands that create projects: init and demo."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any

import typer

from tessera.cli.output import console, emit_json, err_console
from tessera.cli.pipeline_cmds import JsonOpt
from tessera.examples import EXAMPLES

DEFAULT_DEMO_DIR = "tessera-demo"
#: This executable, made absolute before any command changes the working directory.
_ARGV0 = os.path.abspath(sys.argv[0])


def init(
    directory: Path = typer.Argument(..., help="Directory to create the project in."),
    example: str = typer.Option(
        None, "--example", metavar="NAME", help=f"Scaffold an example: {', '.join(EXAMPLES)}."
    ),
    schema_from: Path = typer.Option(
        None,
        "--schema-from",
        metavar="DATA",
        help="Draft schemas/NAME.yaml from a CSV or Parquet file, for you to edit "
        "(into DIR, which may be an existing project).",
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Create a project (empty, or an example with its data); draft a schema from data."""
    from tessera.config.project import PROJECT_FILE
    from tessera.examples import scaffold

    if schema_from is not None and (directory / PROJECT_FILE).is_file() and example is None:
        draft_schema_into(directory, schema_from, as_json)  # an existing project
        return
    created = scaffold(directory, example)
    if schema_from is not None:
        draft_schema_into(directory, schema_from, as_json)
        return
    if as_json:
        emit_json(
            {"directory": str(directory), "example": example, "files": [str(p) for p in created]}
        )
        return
    what = f"the '{example}' example" if example else "an empty project"
    files = sum(1 for p in created if p.is_file())
    console.print(f"Created {what} in [bold]{directory}[/] ({files} files).")
    console.print(f"Next: [bold]cd {directory} && {command_name()} run[/]")


def draft_schema_into(directory: Path, data: Path, as_json: bool) -> None:
    """Write ``schemas/<data stem>.yaml`` in ``directory``, drafted from ``data``."""
    from tessera.cli.validate_cmds import draft

    draft(str(data), directory / "schemas" / f"{data.stem}.yaml", None, as_json)


def demo(
    directory: Path = typer.Option(
        Path(DEFAULT_DEMO_DIR), "--dir", help="Where to put the demo project."
    ),
    jobs: int = typer.Option(1, "--jobs", "-j", min=1, metavar="N", help="Stages to run at once."),
    as_json: bool = JsonOpt,
) -> None:
    """Scaffold the churn example, run its pipeline, serve the model, canary a challenger."""
    from tessera.cli.pipeline_cmds import execute, report
    from tessera.cli.progress import RunView
    from tessera.config.project import PROJECT_FILE, chdir
    from tessera.examples import scaffold
    from tessera.pipeline.runners import make_executor
    from tessera.pipeline.workspace import open_workspace

    directory = directory.resolve()
    if (directory / PROJECT_FILE).is_file():
        if not as_json:
            console.print(f"Using the existing demo project in [bold]{directory}[/].")
    else:
        scaffold(directory, "churn")
        if not as_json:
            console.print(f"Scaffolded the churn example into [bold]{directory}[/].")
    ws = open_workspace(directory)
    chdir(ws.root)
    view = RunView({s: ws.pipeline.stages[s].uses for s in ws.pipeline.order}, enabled=not as_json)
    summary = execute(ws, make_executor("local", jobs), view, command="tessera demo")
    info = demo_summary(ws, summary.outputs)
    model = model_summary(ws, summary.outputs)
    if not as_json:
        report(summary, ["run"], ws.store)
        print_summary(directory, info, model, next_steps=summary.status != "success")
    serving: dict[str, Any] | None = None
    if summary.status == "success" and model is not None:
        from tessera.cli.demo_serving import serving_demo

        serving = serving_demo(ws, summary.outputs, model, jobs=jobs, quiet=as_json)
    if as_json:
        emit_json({**summary.to_dict(), "tables": info, "model": model, "serving": serving})
    elif summary.status == "success":
        print_next_steps(directory, model)
    if summary.status != "success":
        raise typer.Exit(1)


def demo_summary(ws: object, outputs: dict[str, dict[str, str]]) -> list[dict[str, object]]:
    """The final tables: outputs that no stage transforms further, and those written to files."""
    import pyarrow.parquet as pq

    from tessera.pipeline.workspace import Workspace

    assert isinstance(ws, Workspace)
    p = ws.pipeline
    transformed = {(r.stage, r.output) for s in p.stages.values() if s.outputs for r in s.inputs}
    tables: list[dict[str, object]] = []

    def order(stage: str, output: str) -> int:
        declared = list(p.stages[stage].outputs)
        return declared.index(output) if output in declared else len(declared)

    for stage in p.order:
        for name, fp in sorted(outputs.get(stage, {}).items(), key=lambda o: order(stage, o[0])):
            if p.stages[stage].uses in _MODEL_STAGES:
                continue  # shown as the model
            files = [
                f
                for d in p.downstream(stage)
                for f in p.stages[d].outs
                if any(r.stage == stage and r.output == name for r in p.stages[d].inputs)
            ]
            if (stage, name) in transformed and not files:
                continue
            meta = pq.read_metadata(ws.store.object_path(fp))
            tables.append(
                {
                    "stage": stage,
                    "output": name,
                    "rows": meta.num_rows,
                    "columns": meta.num_columns,
                    "version": fp,
                    "files": files,
                }
            )
    return tables


_MODEL_STAGES = {"train", "tune", "evaluate", "register"}


def model_summary(ws: object, outputs: dict[str, dict[str, str]]) -> dict[str, Any] | None:
    """The registered model of the run: name, version, aliases, gate, test metrics."""
    import json

    from tessera.pipeline.workspace import Workspace, tracking_uri

    assert isinstance(ws, Workspace)
    by_use = {ws.pipeline.stages[s].uses: s for s in ws.pipeline.order if s in outputs}
    if "register" not in by_use:
        return None
    row = ws.store.get_table(outputs[by_use["register"]]["out"]).to_pylist()[0]
    scores: list[dict[str, Any]] = []
    if "evaluate" in by_use:
        scores = ws.store.get_table(outputs[by_use["evaluate"]]["out"]).to_pylist()
    return {
        "name": row["name"],
        "version": row["version"],
        "aliases": json.loads(row["aliases"]),
        "gate_passed": row["gate_passed"],
        "run_id": row["run_id"],
        "scores": scores,
        "tracking_uri": tracking_uri(ws.project),
    }


def print_summary(
    directory: Path,
    tables: list[dict[str, object]],
    model: dict[str, Any] | None = None,
    *,
    next_steps: bool = True,
) -> None:
    """The run's final tables and its registered model (then what to try next)."""
    console.print()
    console.print("[bold]Results[/]")
    for t in tables:
        name = t["stage"] if t["output"] == "out" else f"{t['stage']}.{t['output']}"
        files = t["files"]
        written = f" -> {', '.join(map(str, files))}" if isinstance(files, list) and files else ""
        console.print(
            f"  {name}: {t['rows']:,} rows x {t['columns']} columns "
            f"(version {str(t['version'])[:12]}){written}"
        )
    if model is not None:
        aliases = "".join(f" @{a}" for a in model["aliases"])
        console.print()
        console.print(f"[bold]Model[/] {model['name']} version {model['version']}{aliases}")
        for s in model["scores"]:
            ci = ""
            if s["ci_low"] == s["ci_low"]:  # not NaN
                ci = f" [{s['ci_low']:.3f}, {s['ci_high']:.3f}] (95% bootstrap)"
            console.print(f"  {s['split']} {s['metric']}: {s['value']:.3f}{ci}")
        console.print(f"  MLflow run {model['run_id']}")
    if next_steps:
        print_next_steps(directory, model)


def print_next_steps(directory: Path, model: dict[str, Any] | None) -> None:
    """Commands worth trying in the demo project."""
    console.print()
    tessera = command_name()
    console.print("Try next:")
    console.print(f"  cd {directory}")
    console.print(f"  {tessera} status                      # everything is cached now")
    if model is None:
        console.print(
            f"  {tessera} run -o split.test_size=0.3  # re-runs the split and what follows"
        )
    else:
        console.print(f"  {tessera} run -o scores.bootstrap.samples=1000  # re-runs the evaluation")
    console.print(f"  {tessera} dag --format mermaid        # the pipeline as a diagram")
    if model is not None:
        name = model["name"]
        console.print(f"  {tessera} models show {name}           # versions, audit trail")
        console.print(f"  {tessera} lineage {name}@champion      # model -> data -> commit")
        console.print(f"  {tessera} rollout status {name}        # the canary, its decisions")
        console.print(f"  {tessera} serve                       # the champion on port 8080")
        uri = model["tracking_uri"]
        if uri.startswith("sqlite:"):
            console.print(f"  {sibling('mlflow')} ui --backend-store-uri {uri}")
            console.print(
                "      # then open http://127.0.0.1:5000 (MLflow UI: runs, metrics, models)"
            )
    err_console.file.flush()


def sibling(executable: str) -> str:
    """An executable installed beside this one (``mlflow`` next to ``tessera``), by the name the
    shell would find it under."""
    import shutil

    me = Path(_ARGV0).resolve()
    beside = me.parent / executable
    found = shutil.which(executable)
    if found and (not beside.exists() or Path(found).resolve() == beside.resolve()):
        return executable
    return str(beside) if beside.exists() else executable


def command_name() -> str:
    """``tessera`` when that is what the shell finds, else the full path of this executable.

    After ``make demo`` the command lives in ``.venv/bin``, which is not on PATH until the
    virtual environment is activated; a hint saying just ``tessera`` would not work.
    """
    import shutil

    me = Path(_ARGV0).resolve()
    found = shutil.which("tessera")
    if found and Path(found).resolve() == me:
        return "tessera"
    return str(me) if me.name == "tessera" else "tessera"


def register(app: typer.Typer) -> None:
    app.command()(init)
    app.command()(demo)
