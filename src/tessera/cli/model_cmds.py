"""``tessera models list|show|promote|rollback|package``: the model registry."""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer
from rich.markup import escape
from rich.table import Table

from tessera.cli.output import console, emit_json, print_table
from tessera.cli.pipeline_cmds import JsonOpt

if TYPE_CHECKING:
    from tessera.registry.models import ModelRegistry, VersionInfo

models_app = typer.Typer(
    name="models",
    help="Registered models: list, show, promote, rollback, package.",
    no_args_is_help=True,
)

RefArg = typer.Argument(
    ..., metavar="MODEL", help="NAME, NAME@ALIAS (e.g. churn@champion) or NAME/VERSION."
)
AliasOpt = typer.Option("champion", "--alias", help="The alias to move.")
ReasonOpt = typer.Option(
    ..., "--reason", "-m", help="Why: recorded in the audit trail with who and when."
)


def open_registry() -> ModelRegistry:
    """The registry of the project around the working directory."""
    from tessera.config.project import chdir, load_project
    from tessera.registry.models import project_registry

    project = load_project(None)
    chdir(project.root)
    return project_registry(project.root)


def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _test_metrics(info: VersionInfo) -> str:
    shown = {
        k.removeprefix("test_"): v
        for k, v in info.metrics.items()
        if k.startswith("test_") and not k.endswith(("_ci_low", "_ci_high"))
    }
    return ", ".join(f"{k} {v:.4f}" for k, v in sorted(shown.items())) or "-"


def list_models(as_json: bool = JsonOpt) -> None:
    """Registered models with their champion, challenger and latest version."""
    registry = open_registry()
    rows: list[dict[str, Any]] = []
    for name in registry.names():
        versions = registry.versions(name)
        aliases = {a: v.version for v in versions for a in v.aliases}
        rows.append(
            {
                "name": name,
                "versions": len(versions),
                "latest": versions[0].version if versions else None,
                "champion": aliases.get("champion"),
                "challenger": aliases.get("challenger"),
                "updated": versions[0].created if versions else None,
            }
        )
    if as_json:
        emit_json({"models": rows})
        return
    if not rows:
        console.print("No registered models yet: a `register` stage adds them.")
        return
    table = Table("model", "versions", "latest", "@champion", "@challenger", "updated")
    for r in rows:
        table.add_row(
            r["name"],
            str(r["versions"]),
            str(r["latest"]),
            str(r["champion"] or "-"),
            str(r["challenger"] or "-"),
            _when(r["updated"]),
        )
    print_table(table)


def show(ref: str = RefArg, as_json: bool = JsonOpt) -> None:
    """A model's versions and audit trail, or one version's details."""
    from tessera.registry.models import parse_ref

    registry = open_registry()
    parsed = parse_ref(ref)
    if parsed.alias is None and parsed.version is None:
        _show_model(registry, parsed.name, as_json)
    else:
        _show_version(registry, registry.get(parsed, metrics=True), as_json)


def _show_model(registry: ModelRegistry, name: str, as_json: bool) -> None:
    versions = [registry.get(f"{name}/{v.version}", metrics=True) for v in registry.versions(name)]
    events = registry.events(name)
    if as_json:
        emit_json({"name": name, "versions": [v.to_dict() for v in versions], "events": events})
        return
    table = Table("version", "aliases", "created", "test metrics", "model version", "MLflow run")
    for v in versions:
        table.add_row(
            v.version,
            ", ".join(f"@{a}" for a in v.aliases) or "-",
            _when(v.created),
            _test_metrics(v),
            (v.model_version or "-")[:12],
            (v.run_id or "-")[:12],
        )
    console.print(f"[bold]{escape(name)}[/]")
    print_table(table)
    _print_events(events)


def _print_events(events: list[dict[str, Any]]) -> None:
    if not events:
        return
    console.print("\n[bold]Audit trail[/]")
    table = Table("when", "action", "alias", "version", "from", "who", "why")
    for e in events:
        table.add_row(
            _when(e["at"]),
            e["action"],
            e["alias"] or "-",
            str(e["version"] or "-"),
            str(e["previous"] or "-"),
            e["actor"] or "-",
            escape(e["reason"] or "-"),
        )
    print_table(table)


def _show_version(registry: ModelRegistry, info: VersionInfo, as_json: bool) -> None:
    events = [e for e in registry.events(info.name) if str(e["version"]) == info.version]
    if as_json:
        emit_json({**info.to_dict(), "events": events})
        return
    lines = [
        f"[bold]{escape(info.name)} version {info.version}[/]"
        + (f"  ({', '.join('@' + a for a in info.aliases)})" if info.aliases else ""),
        f"created      {_when(info.created)}",
        f"description  {escape(info.description or '-')}",
        f"MLflow run   {info.run_id}",
        f"model        {info.source}",
        f"sha256       {info.tags.get('tessera.sha256', '-')}",
        f"model table  {info.model_version or '-'}",
        f"pipeline run {info.tags.get('tessera.pipeline_run', '-')}",
        f"commit       {info.tags.get('tessera.git_commit', '-')}",
        f"test metrics {_test_metrics(info)}",
        f"model card   {info.run_id and 'model_card/' + info.name + '-v' + info.version}.md|.html "
        "(MLflow run artifacts)",
    ]
    for line in lines:
        console.print(line)
    _print_events(events)


def promote(
    ref: str = RefArg,
    alias: str = AliasOpt,
    reason: str = ReasonOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Point an alias (default champion) at a version, recording who, when, why and the
    numbers (the version's and the current holder's test metrics)."""
    registry = open_registry()
    info = registry.get(ref, metrics=True)
    holder = registry.alias(info.name, alias)
    before = registry.get(f"{info.name}/{holder}", metrics=True) if holder else None
    details = {
        "candidate": _only_test(info.metrics),
        "previous": _only_test(before.metrics) if before else None,
    }
    previous = registry.promote(
        info.name, info.version, alias=alias, reason=reason, details=details
    )
    result = {"name": info.name, "alias": alias, "version": info.version, "previous": previous}
    if as_json:
        emit_json(result)
        return
    was = f" (was version {previous})" if previous else ""
    console.print(f"{info.name}@{alias} -> version {info.version}{was}")


def _only_test(metrics: dict[str, float]) -> dict[str, float]:
    return {k: v for k, v in metrics.items() if k.startswith("test_")}


def rollback(
    name: str = typer.Argument(..., metavar="NAME", help="The registered model."),
    alias: str = AliasOpt,
    reason: str = ReasonOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Move an alias (default champion) back to the version it pointed to before."""
    registry = open_registry()
    old, new = registry.rollback(name, alias=alias, reason=reason)
    if as_json:
        emit_json({"name": name, "alias": alias, "from": old, "to": new})
        return
    console.print(f"{name}@{alias} -> version {new} (rolled back from version {old})")


def package(
    ref: str = RefArg,
    out: Path = typer.Option(..., "--out", help="Directory to write the bundle to (new)."),
    as_json: bool = JsonOpt,
) -> None:
    """Write a self-contained bundle: model, pinned requirements, serving config, Dockerfile,
    README."""
    import tempfile

    from tessera.errors import UsageError
    from tessera.registry.models import parse_ref
    from tessera.registry.package import write_bundle
    from tessera.training.modelio import TRUSTED_TYPES

    out = out.resolve() if out.is_absolute() else (Path.cwd() / out)
    registry = open_registry()
    parsed = parse_ref(ref)
    info = registry.get(parsed, metrics=True)
    with tempfile.TemporaryDirectory(prefix="tessera-package-") as tmp:
        _, directory = registry.download(f"{info.name}/{info.version}", Path(tmp))
        try:
            write_bundle(
                directory,
                out,
                name=info.name,
                version=info.version,
                manifest={**info.to_dict(), "alias": parsed.alias},
                trusted_types=list(TRUSTED_TYPES),
            )
        except ValueError as exc:
            raise UsageError(str(exc)) from None
    if as_json:
        emit_json({"name": info.name, "version": info.version, "out": str(out)})
        return
    console.print(f"Wrote {info.name} version {info.version} to {out}")
    console.print(f"Try it: cd {out} && cat README.md")


def register(app: typer.Typer) -> None:
    models_app.command("list")(list_models)
    models_app.command()(show)
    models_app.command()(promote)
    models_app.command()(rollback)
    models_app.command()(package)
    app.add_typer(models_app)
