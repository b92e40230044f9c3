"""``tessera validate``: check a data file or a stored table against a schema, or draft one."""

from __future__ import annotations

import re
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from tessera.cli.output import console, emit_json
from tessera.cli.pipeline_cmds import JsonOpt

if TYPE_CHECKING:
    import pandas as pd

    from tessera.config.project import Project
    from tessera.validation import Schema, ValidationReport

#: A table's version id (its fingerprint), or the start of one (``tessera demo`` shows 12).
_VERSION = re.compile(r"[0-9a-f]{8,32}")
_ISO_DATE = r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?"


def validate(
    data: str = typer.Argument(
        ...,
        metavar="DATA",
        help="A CSV or Parquet file, or the version id of a table in the project's store.",
    ),
    schema: Path = typer.Option(
        None,
        "--schema",
        "-s",
        metavar="FILE",
        help="The schema to check DATA against (with --draft: where to write the draft).",
    ),
    as_json: bool = JsonOpt,
    drafting: bool = typer.Option(
        False,
        "--draft",
        metavar="",
        help="Draft a schema from DATA: print it, or write it to --schema FILE (never "
        "overwriting).",
    ),
) -> None:
    """Check DATA against a schema and list every failing check (exit code 1 if any)."""
    from tessera.errors import UsageError

    project = _project()
    if drafting:
        draft(data, schema, project, as_json)
        return
    if schema is None:
        raise UsageError(
            "give the schema with --schema FILE (or write a first one with --draft --schema FILE)"
        )
    from tessera.validation import load_schema
    from tessera.validation import validate as check_table

    loaded = load_schema(schema, str(schema))
    frame = _read(data, project, loaded)
    report = check_table(frame, loaded)
    if as_json:
        emit_json({"data": data, **report.to_dict()})
    else:
        _print(report, data, str(schema))
    if not report.ok:
        raise typer.Exit(1)


def _project() -> Project | None:
    """The project around the working directory, its transformation modules imported (so that
    checks defined next to them are found); None outside a project."""
    from tessera.config.errors import ConfigError
    from tessera.config.project import find_project, load_project
    from tessera.pipeline.registry import discover

    try:
        root = find_project()
    except ConfigError:
        return None
    project = load_project(root)
    discover(project.root, project.config.transforms)
    return project


def draft(data: str, out: Path | None, project: Project | None, as_json: bool) -> None:
    from tessera.errors import UsageError
    from tessera.validation import draft_schema

    if out is not None and out.exists():
        raise UsageError(f"{out} already exists; not overwriting it (choose another --schema)")
    frame = _read(data, project, None)
    path = Path(data)
    text = draft_schema(
        frame,
        name=path.stem if path.is_file() else data,
        source=path.name if path.is_file() else data,
    )
    if out is not None:
        out.parent.mkdir(parents=True, exist_ok=True)
        try:
            with out.open("x", encoding="utf-8") as f:  # "x": never over an existing file
                f.write(text)
        except FileExistsError:
            raise UsageError(f"{out} already exists; not overwriting it") from None
    if as_json:
        emit_json({"data": data, "path": str(out) if out else None, "schema": text})
    elif out is not None:
        console.print(
            f"Wrote a draft schema for {len(frame.columns)} columns to [bold]{escape(str(out))}"
            "[/]. Review it, then check data with:"
        )
        console.print(f"  tessera validate {escape(data)} --schema {escape(str(out))}")
    else:
        sys.stdout.write(text)


def _read(data: str, project: Project | None, schema: Schema | None) -> pd.DataFrame:
    """DATA as a DataFrame: a CSV or Parquet file, or a stored table by version id.

    A CSV file has no column types: columns the schema gives a type that holds the same values
    are converted (ISO text to ``datetime``, floats to ``Int64``, text to ``category``...).
    Without a schema (``--draft``), text columns holding only ISO dates become datetimes and
    float columns holding only whole numbers and gaps become ``Int64``.
    """
    from tessera.errors import UsageError

    path = Path(data)
    if path.is_file():
        fmt = _format(path)
        frame = _read_file(path, fmt)
        if fmt == "csv":
            frame = _typed(frame, schema)
        return frame
    if _VERSION.fullmatch(data):
        return _stored(data, project)
    raise UsageError(f"no such file: {data}")


def _format(path: Path) -> str:
    from tessera.errors import UsageError
    from tessera.transforms.io import table_format

    try:
        return table_format(str(path))
    except ValueError:
        raise UsageError(
            f"cannot tell the format of {path} from its suffix; name it *.csv or *.parquet"
        ) from None


def _read_file(path: Path, fmt: str) -> pd.DataFrame:
    import pandas as pd

    from tessera.errors import UsageError

    try:
        if fmt == "parquet":
            return pd.read_parquet(path)
        sep = "\t" if ".tsv" in [s.lower() for s in path.suffixes] else ","
        return pd.read_csv(path, sep=sep)
    except Exception as exc:
        raise UsageError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc


def _typed(frame: pd.DataFrame, schema: Schema | None) -> pd.DataFrame:
    from tessera.validation import dtypes

    frame = frame.copy()
    if schema is not None:
        for name, spec in schema.columns.items():
            if spec.dtype is not None and name in frame.columns:
                frame[name] = dtypes.conform(frame[name], spec.dtype)
        return frame
    for name in frame.columns:
        column = frame[name]
        if dtypes.matches(column, "string") and _all_dates(column):
            frame[name] = dtypes.conform(column, "datetime")
        elif dtypes.matches(column, "float") and column.isna().any():
            frame[name] = dtypes.conform(column, "Int64")  # integers with gaps
    return frame


def _all_dates(column: pd.Series) -> bool:
    present = column.dropna()
    if present.empty or not bool(present.head(20).astype(str).str.fullmatch(_ISO_DATE).all()):
        return False
    return bool(present.astype(str).str.fullmatch(_ISO_DATE).all())


def _stored(version: str, project: Project | None) -> pd.DataFrame:
    from tessera.data.store import ArtifactStore
    from tessera.data.tables import to_frame
    from tessera.errors import UsageError

    if project is None:
        raise UsageError(
            f"no such file: {version}; a table's version id is looked up in the project's store, "
            "and there is no tessera.yaml here or above"
        )
    store = ArtifactStore(project.state_dir / "cache")
    folder = store.objects / version[:2]
    found = sorted(p.name.removesuffix(".parquet") for p in folder.glob(f"{version}*.parquet"))
    if not found:
        raise UsageError(f"no such file, and no stored table with version id {version}")
    if len(found) > 1:
        raise UsageError(
            f"version id {version} is ambiguous ({len(found)} tables start with it); give more "
            "of it"
        )
    return to_frame(store.get_table(found[0]))


def _print(report: ValidationReport, data: str, schema: str) -> None:
    if report.ok:
        console.print(
            f"[green]✓[/] {escape(data)} matches {escape(schema)}: {escape(report.summary)}."
        )
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("column", "check", "failures", "samples", "expected"):
        table.add_column(name, justify="right" if name == "failures" else "left")
    for failure in report.failures:
        table.add_row(
            escape(failure.column),
            escape(failure.check),
            f"{failure.failures:,}",
            escape(", ".join(failure.samples)),
            escape(failure.expected),
        )
    console.print(table)
    console.print(
        f"[red]✗[/] {escape(data)} does not match {escape(schema)}: {escape(report.summary)}"
    )


def register(app: typer.Typer) -> None:
    """Add ``tessera validate`` to the command line."""
    app.command(name="validate")(validate)
