"""``tessera rollout start|status|promote|abort``: roll a candidate model version out.

The commands write the rollout state in the metadata store, which every ``tessera serve``
worker and replica follows on its next tick; no server needs to run.
"""

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
    from tessera.registry.models import ModelRegistry
    from tessera.serving.config import ServingConfig

rollout_app = typer.Typer(
    name="rollout",
    help="Roll a candidate model version out: A/B test, canary or shadow.",
    no_args_is_help=True,
)

ModelArg = typer.Argument(
    None,
    metavar="MODEL",
    help="The registered model (default: the first of serving.yaml, else the only one).",
    show_default=False,
)
ReasonOpt = typer.Option(
    ..., "--reason", "-m", help="Why: recorded in the audit trail with who and when."
)


def _context(model: str | None) -> tuple[ModelRegistry, str, ServingConfig | None]:
    """The registry, the model and serving.yaml (None without one) of the project here."""
    from tessera.cli.model_cmds import open_registry
    from tessera.errors import UsageError
    from tessera.serving.config import load_serving_config

    registry = open_registry()  # changes into the project root
    config = load_serving_config(Path.cwd())
    if model:
        return registry, model, config
    if config is not None:
        return registry, config.models[0].name, config
    names = registry.names()
    if len(names) != 1:
        what = (
            f"{len(names)} models are registered ({', '.join(names)})"
            if names
            else "no model is registered (a `register` stage adds one)"
        )
        raise UsageError(f"which model? There is no serving.yaml and {what}: name the model")
    return registry, names[0], config


def start(
    model: str | None = ModelArg,
    strategy: str | None = typer.Option(
        None, "--strategy", help="ab, canary or shadow (default: serving.yaml's, else canary)."
    ),
    candidate: str | None = typer.Option(
        None,
        "--candidate",
        metavar="ALIAS|VERSION",
        help="The candidate version (default: serving.yaml's, else @challenger).",
    ),
    reason: str | None = typer.Option(
        None, "--reason", "-m", help="Why: recorded in the audit trail."
    ),
    as_json: bool = JsonOpt,
) -> None:
    """Start rolling the candidate out against the champion (servers follow within a tick)."""
    from tessera.serving.config import RolloutConfig
    from tessera.serving.rollout import start_rollout

    registry, name, config = _context(model)
    settings = config.rollout if config is not None else RolloutConfig()
    rollout = start_rollout(
        registry.records,
        registry,
        name,
        settings,
        strategy=strategy,
        candidate=candidate,
        reason=reason,
    )
    if as_json:
        emit_json(rollout.to_dict())
        return
    alias = f" (@{rollout.candidate_alias})" if rollout.candidate_alias else ""
    console.print(
        f"Started {rollout.describe()} of {escape(name)}: version {rollout.candidate_version}"
        f"{alias} against champion version {rollout.champion_version} (id {rollout.id})."
    )
    console.print(f"Follow it: tessera rollout status {escape(name)}")


def status(model: str | None = ModelArg, as_json: bool = JsonOpt) -> None:
    """The running (or last) rollout: traffic, statistics per variant, gates, decisions."""
    from tessera.serving.config import PredictionLogConfig
    from tessera.serving.rollout import rollout_status

    registry, name, config = _context(model)
    log = config.prediction_log if config is not None else PredictionLogConfig()
    log_dir = Path.cwd() / log.dir if log.enabled else None
    result = rollout_status(registry.records, registry, name, log_dir=log_dir)
    if as_json:
        emit_json(result)
        return
    _print_status(result)


def promote(model: str | None = ModelArg, reason: str = ReasonOpt, as_json: bool = JsonOpt) -> None:
    """Promote the candidate now, whatever the gates say: the champion alias moves to it."""
    from tessera.serving.rollout import promote_rollout

    registry, name, _ = _context(model)
    rollout = promote_rollout(registry.records, registry, name, reason=reason)
    if as_json:
        emit_json(rollout.to_dict())
        return
    console.print(
        f"{escape(name)}@champion -> version {rollout.candidate_version} (was version "
        f"{rollout.champion_version}); the {rollout.strategy} rollout {rollout.id} is promoted."
    )


def abort(model: str | None = ModelArg, reason: str = ReasonOpt, as_json: bool = JsonOpt) -> None:
    """Stop the running rollout: the candidate gets no more traffic, the champion stays."""
    from tessera.serving.rollout import abort_rollout

    registry, name, _ = _context(model)
    rollout = abort_rollout(registry.records, name, reason=reason)
    if as_json:
        emit_json(rollout.to_dict())
        return
    console.print(
        f"Aborted the {rollout.strategy} rollout {rollout.id} of {escape(name)}: champion "
        f"version {rollout.champion_version} answers every request."
    )


# -- status output ------------------------------------------------------------------------------
def _when(ts: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else "-"


def _duration(seconds: float) -> str:
    seconds = int(max(seconds, 0))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds // 60 % 60} min"


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def _quality(q: dict[str, Any] | None) -> str:
    if not q:
        return "-"
    return f"{q['value']:.4g} ({q['n']} labelled)"


def _print_status(result: dict[str, Any]) -> None:
    rollout = result["rollout"]
    if rollout is None:
        summary = result["summary"]
        console.print(escape(summary[:1].upper() + summary[1:]))
        return
    name = escape(result["model"])
    ended = rollout["ended"]
    lasted = _duration((ended or time.time()) - rollout["started"])
    state = rollout["state"].replace("_", " ")
    head = f"[bold]{name}[/]: {escape(result['describe'])}, {state}"
    head += f" (started {_when(rollout['started'])}, {'lasted' if ended else 'for'} {lasted})"
    console.print(head)
    console.print(f"  id         {rollout['id']}")
    alias = f" (@{rollout['candidate_alias']})" if rollout["candidate_alias"] else ""
    console.print(f"  champion   version {rollout['champion_version']}")
    console.print(f"  candidate  version {rollout['candidate_version']}{alias}")
    canary = result.get("canary")
    if canary and canary["decision"]:
        _print_canary(canary)
    if result.get("ab"):
        ab = result["ab"]
        p = f", p = {ab['p_value']:.3g} ({ab['test']})" if ab["p_value"] is not None else ""
        console.print(f"  A/B        {escape(ab['summary'])}" + ("" if ab["enough"] else p))
    if result.get("shadow"):
        console.print(f"  shadow     {escape(result['shadow']['summary'])}")
    if rollout["state"] != "running":
        console.print(f"  ended      {_when(ended)}: {escape(rollout['reason'] or '-')}")
    metric = result["metric"]
    table = Table("variant", "version", "requests", "errors", "p50", "p99", f"{metric} (online)")
    for variant, v in result["variants"].items():
        table.add_row(
            variant,
            str(v["version"] or "-"),
            str(v["requests"]),
            f"{v['errors']} ({v['error_rate'] * 100:.1f}%)",
            _ms(v["p50_ms"]),
            _ms(v["p99_ms"]),
            _quality(v["quality"]),
        )
    console.print()
    print_table(table)
    if result["decisions"]:
        console.print("\n[bold]Decisions[/]")
        decisions = Table("when", "decision", "who", "why")
        for e in result["decisions"]:
            decisions.add_row(
                _when(e["at"]),
                e["action"].removeprefix("rollout_"),
                escape(e["actor"] or "-"),
                escape(e["reason"] or "-"),
            )
        print_table(decisions)


def _print_canary(canary: dict[str, Any]) -> None:
    decision = canary["decision"]
    d = decision["details"]
    limits = d["thresholds"]
    cand = d["candidate"]
    console.print(
        f"  step       {canary['step']}/{canary['steps']} at {canary['traffic']:g}%: candidate "
        f"{cand['requests']}/{limits['min_requests']} requests, dwell "
        f"{d['elapsed_seconds']:.0f}/{limits['dwell_seconds']:g} s"
    )
    console.print(
        f"  gates      errors {cand['error_rate'] * 100:.1f}% (max "
        f"{limits['max_error_rate'] * 100:g}%), p99 {_ms(cand['p99_ms'])} (max "
        f"{limits['max_p99_ms']:g} ms)"
    )
    quality = d.get("quality")
    if quality and quality.get("drop") is not None:
        console.print(
            f"  quality    {quality['metric']} {quality['candidate']['value']:.4g} vs champion "
            f"{quality['champion']['value']:.4g} (drop {quality['drop']:.4g}, max "
            f"{quality['max_metric_drop']:g})"
        )
    if decision["action"] == "wait":
        needs = []
        if cand["requests"] < limits["min_requests"]:
            needs.append(f"{limits['min_requests'] - cand['requests']} more candidate requests")
        if d["elapsed_seconds"] < limits["dwell_seconds"]:
            needs.append(f"{limits['dwell_seconds'] - d['elapsed_seconds']:.0f} s more dwell")
        console.print(f"  next       judged after {' and '.join(needs)}")
    else:
        console.print(f"  next       {decision['action']}: {escape(decision['reason'])}")


def register(app: typer.Typer) -> None:
    """Add ``tessera rollout``."""
    rollout_app.command()(start)
    rollout_app.command()(status)
    rollout_app.command()(promote)
    rollout_app.command()(abort)
    app.add_typer(rollout_app)
