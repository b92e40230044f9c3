"""``tessera data ...`` (versions of tables and raw files) and ``tessera lineage``."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape

from tessera.cli.output import console, emit_json, err_console, print_table
from tessera.cli.pipeline_cmds import JsonOpt, PipelineOpt, open_ws

if TYPE_CHECKING:
    from tessera.pipeline.workspace import Workspace

data_app = typer.Typer(
    name="data",
    help="Versions of stage outputs and raw files: log, show, diff, checkout, gc, push, pull.",
    no_args_is_help=True,
)

HEX = re.compile(r"^[0-9a-f]{4,32}$")


@dataclass
class Version:
    """A resolved reference: a stored table (``kind="table"``) or a raw file blob."""

    kind: str
    id: str
    label: str
    path: str | None = None  # for raw files: the path it was read from
    stage: str | None = None  # for a table named by its stage


def resolve(ws: Workspace, ref: str) -> Version:
    """``STAGE``, ``STAGE.OUTPUT``, a raw file path, or a (prefix of a) version id."""
    from tessera.config.errors import did_you_mean
    from tessera.errors import UsageError

    stage, _, output = ref.partition(".")
    if stage in ws.pipeline.stages and (not output or output in ws.pipeline.stages[stage].outputs):
        name = output_name(ws, stage, output)
        # The version the pipeline gives now (from the cache), else the latest recorded one.
        from tessera.pipeline.plan import stage_status

        current = next(s for s in stage_status(ws, [stage]) if s.stage == stage)
        if current.up_to_date:
            return Version("table", current.outputs[name], ref, stage=stage)
        for rec in reversed(ws.records.history(stage, ws.pipeline.file)):
            if name in (rec.outputs or {}):
                return Version("table", rec.outputs[name], ref, stage=stage)
        raise UsageError(f"stage '{stage}' has no version yet: run `tessera run {stage}`")
    if (ws.root / ref).exists() or ws.records.file_history(ref):
        history = ws.records.file_history(ref)
        if not history:
            raise UsageError(f"no run has read '{ref}' yet")
        return Version("file", history[-1].deps[ref], ref, ref)
    if HEX.match(ref):
        found = set(ws.records.find_versions(ref))
        found |= {p.stem for p in (ws.store.objects / ref[:2]).glob(f"{ref}*.parquet")}
        found |= {p.name for p in (ws.store.root / "files" / ref[:2]).glob(f"{ref}*")}
        if len(found) > 1:
            raise UsageError(f"version '{ref}' is ambiguous: {', '.join(sorted(found)[:5])}")
        if found:
            vid = found.pop()
            if ws.store.has(vid):
                return Version("table", vid, ref)
            if ws.store.file_path(vid).is_file():
                return Version("file", vid, ref, _file_path_of(ws, vid))
            raise UsageError(
                f"version {vid} is recorded but not in the local store; "
                "`tessera data pull` fetches it from a remote"
            )
    hint = did_you_mean(stage, ws.pipeline.stages)
    raise UsageError(
        f"'{ref}' is not a stage, a file the pipeline reads, or a known version id"
        + (f" ({hint})" if hint else "")
    )


def _current_version(ws: Workspace, target: str) -> str | None:
    """The version the pipeline as configured now gives (None when it must run first)."""
    from tessera.pipeline.plan import stage_status

    stage, _, output = target.partition(".")
    if stage not in ws.pipeline.stages:
        path = ws.root / target
        return ws.hasher.hash(path) if path.is_file() else None
    current = next(s for s in stage_status(ws, [stage]) if s.stage == stage)
    if not current.up_to_date:
        return None
    return current.outputs.get(output_name(ws, stage, output))


def output_name(ws: Workspace, stage: str, output: str) -> str:
    """The output meant by ``stage`` or ``stage.output`` (several outputs: it must be named)."""
    from tessera.errors import UsageError

    outputs = ws.pipeline.stages[stage].outputs
    if not outputs:
        raise UsageError(f"stage '{stage}' writes files and has no table output")
    if output:
        return output
    if len(outputs) > 1:
        choices = ", ".join(f"{stage}.{o}" for o in outputs)
        raise UsageError(f"stage '{stage}' has {len(outputs)} outputs; name one: {choices}")
    return outputs[0]


def _file_path_of(ws: Workspace, digest: str) -> str | None:
    for name in ws.pipeline.order:
        for rec in reversed(ws.records.history(name, ws.pipeline.file)):
            for path, h in (rec.deps or {}).items():
                if h == digest:
                    return path
    return None


def _load(ws: Workspace, version: Version) -> Any:
    if version.kind == "table":
        return ws.store.get_table(version.id)
    import pyarrow.csv as pcsv
    import pyarrow.parquet as pq

    blob = ws.store.file_path(version.id)
    suffix = Path(version.path or "").suffix.lower()
    if suffix in (".parquet", ".pq"):
        return pq.read_table(blob)
    if suffix in (".csv", ".txt", ""):
        return pcsv.read_csv(blob)
    from tessera.errors import UsageError

    raise UsageError(f"cannot read {version.path} as a table (only CSV and Parquet)")


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


@data_app.command("log")
def log_cmd(
    target: str = typer.Argument(..., help="STAGE, STAGE.OUTPUT, or a raw file path."),
    pipeline: str = PipelineOpt,
    as_json: bool = JsonOpt,
) -> None:
    """The versions of a stage's output (or of a raw input file) over runs."""

    ws = open_ws(None, None, pipeline)
    stage, _, output = target.partition(".")
    entries: list[dict[str, Any]] = []
    if stage in ws.pipeline.stages:
        name = output_name(ws, stage, output)
        records = ws.records.history(stage, ws.pipeline.file)
        pairs = [(r, (r.outputs or {}).get(name), (r.shapes or {}).get(name)) for r in records]
    else:
        records = ws.records.file_history(target)
        if not records and not (ws.root / target).exists():
            resolve(ws, target)  # raises the "not a stage, file or version" error
        pairs = [(r, (r.deps or {}).get(target), None) for r in records]
    by_version: dict[str, dict[str, Any]] = {}
    latest = None  # the version of the most recent run, not the most recently new one
    for rec, vid, shape in pairs:
        if vid is None:
            continue
        entry = by_version.get(vid)
        if entry is None:
            entry = by_version[vid] = {
                "version": vid,
                "first_seen": rec.started,
                "first_run": rec.run_id,
                "made_by": None,
                "runs": 0,
                "rows": (shape or [None])[0],
                "columns": (shape or [None, None])[1],
            }
            entries.append(entry)
        entry["runs"] += 1
        entry["last_seen"] = rec.started
        entry["last_run"] = rec.run_id
        latest = vid
        if rec.status == "done" and entry["made_by"] is None:
            entry["made_by"] = rec.run_id
    current = _current_version(ws, target)
    if current is not None and current not in by_version:
        # In the cache (pulled from a remote, or made before records were kept), not recorded.
        entries.append(
            {
                "version": current,
                "first_seen": None,
                "first_run": None,
                "made_by": None,
                "runs": 0,
                "rows": None,
                "columns": None,
            }
        )
    ws.close()
    for e in entries:
        e["latest"] = e["version"] == latest
        e["current"] = e["version"] == current
    if as_json:
        emit_json({"target": target, "versions": entries})
        return
    if not entries:
        console.print(f"No recorded versions of {target} yet.")
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold")
    for col in ("version", "first seen", "made by run", "runs", "rows", "columns"):
        table.add_column(col)
    for e in entries:
        current = " (current)" if e["current"] else (" (latest run)" if e["latest"] else "")
        table.add_row(
            e["version"][:12] + current,
            _when(e["first_seen"]),
            e["made_by"] or e["first_run"] or "(not recorded here)",
            str(e["runs"]),
            "" if e["rows"] is None else f"{e['rows']:,}",
            "" if e["columns"] is None else str(e["columns"]),
        )
    print_table(table)


@data_app.command("show")
def show_cmd(
    version: str = typer.Argument(..., help="A version id (or prefix), STAGE[.OUTPUT] or file."),
    pipeline: str = PipelineOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Schema, row count and per-column statistics of one version."""
    from tessera.data.inspect import summarize

    ws = open_ws(None, None, pipeline)
    v = resolve(ws, version)
    summary = {"version": v.id, "kind": v.kind, **summarize(_load(ws, v))}
    if v.path:
        summary["path"] = v.path
    ws.close()
    if as_json:
        emit_json(summary)
        return
    from rich.table import Table

    console.print(
        f"[bold]{escape(v.label)}[/] version {v.id}: {summary['rows']:,} rows, "
        f"{len(summary['columns'])} columns"
    )
    table = Table(box=None, header_style="bold")
    for col in ("column", "type", "nulls", "distinct", "mean", "std", "min", "max"):
        table.add_column(col, justify="left" if col in ("column", "type") else "right")
    for c in summary["columns"]:
        table.add_row(
            c["name"],
            c["type"],
            str(c["nulls"]),
            *(_fmt(c.get(k)) for k in ("distinct", "mean", "std", "min", "max")),
        )
    print_table(table)


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}"
    return escape(str(value))


@data_app.command("diff")
def diff_cmd(
    a: str = typer.Argument(..., help="The older version (id, prefix, STAGE or file)."),
    b: str = typer.Argument(..., help="The newer version."),
    pipeline: str = PipelineOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Schema, row-count and per-column statistic changes between two versions."""
    from tessera.data.inspect import diff, summarize

    ws = open_ws(None, None, pipeline)
    va, vb = resolve(ws, a), resolve(ws, b)
    result = diff(summarize(_load(ws, va)), summarize(_load(ws, vb)))
    result = {"a": va.id, "b": vb.id, **result}
    ws.close()
    if as_json:
        emit_json(result)
        return
    rows = result["rows"]
    console.print(
        f"{va.id[:12]} -> {vb.id[:12]}: rows {rows['before']:,} -> {rows['after']:,} "
        f"({rows['change']:+,})"
    )
    for name in result["added"]:
        console.print(f"  [green]+ column {escape(name)}[/]")
    for name in result["removed"]:
        console.print(f"  [red]- column {escape(name)}[/]")
    for c in result["type_changes"] + result["stat_changes"]:
        console.print(
            f"  {escape(c['column'])}: {c['stat']} {_fmt(c['before'])} -> {_fmt(c['after'])}"
        )
    if not (
        result["added"]
        or result["removed"]
        or result["type_changes"]
        or result["stat_changes"]
        or rows["change"]
    ):
        console.print("  no differences in schema or statistics")


@data_app.command("checkout")
def checkout_cmd(
    version: str = typer.Argument(..., help="A version id (or prefix), STAGE[.OUTPUT] or file."),
    out: Path = typer.Option(
        ..., "--out", metavar="FILE", help="Where to write it (.csv/.parquet)."
    ),
    force: bool = typer.Option(False, "--force", "-f", metavar="", help="Overwrite FILE."),
    pipeline: str = PipelineOpt,
) -> None:
    """Export any recorded version of a table or raw file to FILE."""
    import shutil

    from tessera.data.atomic import atomic_write
    from tessera.errors import UsageError

    ws = open_ws(None, None, pipeline)
    v = resolve(ws, version)
    if out.exists() and not force:
        raise UsageError(f"{out} exists; add --force to overwrite it")
    out.parent.mkdir(parents=True, exist_ok=True)
    if v.kind == "file":
        blob = ws.store.file_path(v.id)

        def copy(tmp: str) -> None:
            shutil.copyfile(blob, tmp)

        atomic_write(out, copy)
    else:
        table = ws.store.get_table(v.id)
        suffix = out.suffix.lower()
        if suffix in (".parquet", ".pq"):
            import pyarrow.parquet as pq

            atomic_write(out, lambda tmp: pq.write_table(table, tmp))
        elif suffix == ".csv":
            frame = table.to_pandas()
            atomic_write(out, lambda tmp: frame.to_csv(tmp, index=False))
        else:
            raise UsageError(f"--out must end in .csv or .parquet, got {out.name!r}")
    ws.close()
    console.print(f"Wrote {v.kind} version {v.id[:12]} to {out}.")


@data_app.command("gc")
def gc_cmd(
    yes: bool = typer.Option(False, "--yes", "-y", metavar="", help="Delete (default: dry run)."),
    pipeline: str = PipelineOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Remove stored versions that no recorded run refers to (a dry run unless --yes)."""
    from tessera.data.gc import collect, delete
    from tessera.pipeline.lock import run_lock

    ws = open_ws(None, None, pipeline)
    with run_lock(
        ws.project.state_dir,
        "tessera data gc",
        lambda h: err_console.print("Waiting for the running pipeline to finish..."),
    ):
        plan = collect(ws.store, ws.records)
        if yes:
            delete(plan)
    ws.close()
    summary = {
        "deleted": yes,
        "files": len(plan.paths),
        "bytes": plan.bytes,
        "kept": plan.kept,
        "by_kind": plan.by_kind,
    }
    if as_json:
        emit_json(summary)
        return
    what = ", ".join(f"{n} {k}" for k, n in plan.by_kind.items() if n) or "nothing"
    size = f"{plan.bytes / 1e6:.1f} MB"
    if yes:
        console.print(f"Removed {what} ({size}); kept {plan.kept} referenced files.")
    else:
        console.print(f"Would remove {what} ({size}); {plan.kept} referenced files are kept.")
        if plan.paths:
            console.print("Run `tessera data gc --yes` to delete them.")


def lineage(
    artifact: str = typer.Argument(
        ...,
        help="A version id (or prefix), STAGE[.OUTPUT], or a registered model: NAME@ALIAS or "
        "NAME/VERSION.",
    ),
    pipeline: str = PipelineOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Walk back from a table version or a registered model to the raw files, runs and commits
    it came from."""
    from tessera.data.lineage import lineage as walk
    from tessera.data.lineage import render
    from tessera.errors import UsageError

    model = _model_version(artifact)
    ws = open_ws(None, None, pipeline)
    if model is not None:
        fingerprint = model.model_version
        if fingerprint is None:
            raise UsageError(
                f"{artifact} (version {model.version}) was not registered by a Tessera pipeline "
                "run: it has no lineage"
            )
        v = Version("table", fingerprint, artifact)
    else:
        v = resolve(ws, artifact)
    if v.kind != "table":
        raise UsageError(f"{artifact} is a raw file: it is where lineage ends")
    tree = walk(ws.records, v.id, stage=v.stage)
    ws.close()
    if as_json:
        emit_json({"model": model.to_dict(), "lineage": tree} if model else tree)
        return
    if model is not None:
        aliases = "".join(f" @{a}" for a in model.aliases)
        console.print(
            escape(
                f"model {model.name} version {model.version}{aliases}\n"
                f"  MLflow run {model.run_id}  ({model.source})\n"
                f"  registered from table version {v.id}"
            ),
            soft_wrap=True,
        )
    console.print(escape(render(tree)), soft_wrap=True)


def _model_version(artifact: str) -> Any:
    """The registered model version ``NAME@ALIAS`` or ``NAME/VERSION`` names, else None."""
    if not re.match(r"^[^@/]+(@[A-Za-z0-9_-]+|/\d+)$", artifact):
        return None
    from tessera.cli.model_cmds import open_registry

    return open_registry().get(artifact)


def register(app: typer.Typer) -> None:
    from tessera.cli import remote_cmds

    remote_cmds.register(data_app)
    app.add_typer(data_app)
    app.command()(lineage)
