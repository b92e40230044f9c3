"""The serving half of ``tessera demo``: serve the champion, send it customers with feedback,
train a challenger, roll it out with a canary to promotion (or rollback), and show each decision
as the server takes it.

Only the customers are simulated: ``tessera serve`` runs in a child process on a free port,
requests and feedback go over HTTP on loopback, the challenger is trained by the pipeline with
``envs/challenger.yaml``, and the canary is judged by the server itself, from the rollout state
in the project's metadata store and the prediction log joined to the feedback.
"""

from __future__ import annotations

import contextlib
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tessera.cli.demo_server import BATCH, Customers, DemoError, DemoServer

if TYPE_CHECKING:
    from tessera.pipeline.workspace import Workspace
    from tessera.registry.models import ModelRegistry
    from tessera.serving.config import ServingConfig

#: The environment overlay that trains the challenger (``envs/challenger.yaml``).
CHALLENGER_ENV = "challenger"
#: Files of the churn example the serving demo needs, added to older demo projects.
SERVING_FILES = ("serving.yaml", "envs/challenger.yaml", "models/churn_challenger.yaml")
#: Customers the champion answers alone, before there is a challenger.
WARM_UP_REQUESTS = 150
#: Seconds to wait for a rollout to end, and for the server to answer with the new champion.
ROLLOUT_SECONDS = 180.0
SWAP_SECONDS = 30.0
ACTOR = "tessera demo"


class Out:
    """The demo's narration on stdout; silent with ``--json``."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def head(self, text: str) -> None:
        if not self.quiet:
            from rich.markup import escape

            from tessera.cli.output import console

            console.print()
            console.print(f"[bold]{escape(text)}[/]")

    def line(self, text: str) -> None:
        if not self.quiet:
            from tessera.cli.output import console

            console.print(f"  {text}", markup=False, highlight=False)


def held_out_rows(ws: Workspace, outputs: dict[str, dict[str, str]]) -> tuple[Any, list[str], str]:
    """(test split, the model's features, its target) of the run: the ``register`` stage's
    inputs, a model table and the held-out rows."""
    from tessera.training import modelio

    stage = next(s for s in ws.pipeline.order if ws.pipeline.stages[s].uses == "register")
    model_ref, test_ref = ws.pipeline.stages[stage].inputs[:2]
    info = modelio.model_info(ws.store.get_table(outputs[model_ref.stage][model_ref.output]))
    rows = ws.store.get_table(outputs[test_ref.stage][test_ref.output]).to_pandas()
    return rows, list(info.features), info.target


# -- the steps -----------------------------------------------------------------------------------
def add_missing_files(root: Path) -> list[str]:
    """Copy the churn example's serving files into a demo project made before they existed."""
    from importlib import resources

    template = resources.files("tessera.examples") / "templates" / "churn"
    added = []
    for name in SERVING_FILES:
        target = root / name
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(template.joinpath(name).read_bytes())
            added.append(name)
    return added


def start_clean(registry: ModelRegistry, name: str, version: str, out: Out) -> dict[str, Any]:
    """End a rollout an earlier demo left running; put the champion back on the pipeline's
    model when an earlier demo promoted its challenger."""
    from tessera.registry.models import CHAMPION
    from tessera.serving.rollout import abort_rollout
    from tessera.serving.rollout.state import running_rollout

    done: dict[str, Any] = {"aborted_rollout": None, "champion_was": None}
    store = registry.records
    if running_rollout(store, name) is not None:
        stale = abort_rollout(
            store, name, actor=ACTOR, reason="left running by an earlier tessera demo"
        )
        done["aborted_rollout"] = stale.id
        out.line(f"Aborted the rollout {stale.id} an earlier demo left running.")
    champion = registry.alias(name, CHAMPION)
    if champion != version:
        registry.promote(
            name,
            version,
            alias=CHAMPION,
            reason=f"tessera demo: start again from the pipeline's model (was version {champion})",
        )
        done["champion_was"] = champion
        out.line(
            f"{name}@champion back to version {version}, the pipeline's model (an earlier demo "
            f"had made it version {champion}), so that the canary can run again."
        )
    return done


def train_challenger(
    registry: ModelRegistry, root: Path, name: str, jobs: int, out: Out
) -> dict[str, Any]:
    """Run the pipeline with ``envs/challenger.yaml``: a new version of ``name``, pointed to
    by ``@challenger`` (again, when the run was cached and the alias moved since).

    Raises:
        DemoError: the run failed, or it made no new version.
    """
    from tessera.cli.pipeline_cmds import execute, report
    from tessera.cli.progress import RunView
    from tessera.cli.project_cmds import model_summary
    from tessera.pipeline.runners import make_executor
    from tessera.pipeline.workspace import open_workspace
    from tessera.registry.models import CHALLENGER, CHAMPION

    ws = open_workspace(root, env=CHALLENGER_ENV)
    view = RunView({s: ws.pipeline.stages[s].uses for s in ws.pipeline.order}, enabled=False)
    summary = execute(
        ws, make_executor("local", jobs), view, command="tessera demo", env=CHALLENGER_ENV
    )
    if summary.status != "success":
        report(summary, ["run", "--env", CHALLENGER_ENV], ws.store)
        raise DemoError(f"the challenger's run {summary.run_id} failed (above)")
    model = model_summary(ws, summary.outputs)
    if model is None or model["name"] != name:
        raise DemoError(f"envs/{CHALLENGER_ENV}.yaml registers no new version of {name}")
    done, cached = summary.count("done"), summary.count("cached")
    out.line(
        f"tessera run --env {CHALLENGER_ENV}: "
        + (
            f"{done} ran, {cached} cached in {summary.seconds:.1f} s"
            if done
            else f"nothing to run ({cached} stages cached)"
        )
    )
    version = str(model["version"])
    if registry.alias(name, CHAMPION) == version:
        raise DemoError(
            f"envs/{CHALLENGER_ENV}.yaml trained the champion's model again ({name} version "
            f"{version}): change models/churn_challenger.yaml"
        )
    if registry.alias(name, CHALLENGER) != version:  # a cached run: the alias moved since
        registry.promote(
            name, version, alias=CHALLENGER, reason="tessera demo: the challenger again"
        )
    return {
        "version": version,
        "run_id": summary.run_id,
        "ran": done,
        "scores": model["scores"],
    }


def run_canary(
    registry: ModelRegistry, name: str, config: ServingConfig, customers: Customers, out: Out
) -> dict[str, Any]:
    """Start a canary of ``@challenger`` and send customers until the server ends it; each
    decision is shown as it is recorded. No decision within ``ROLLOUT_SECONDS``: abort."""
    from tessera.serving.rollout import abort_rollout, start_rollout
    from tessera.serving.rollout.state import (
        ABORT,
        PROMOTE,
        ROLLBACK,
        RUNNING,
        RolloutError,
        decisions,
        get_rollout,
    )

    store = registry.records
    rollout = start_rollout(
        store,
        registry,
        name,
        config.rollout,
        strategy="canary",
        actor=ACTOR,
        reason="tessera demo: the challenger of envs/challenger.yaml on live traffic",
    )
    shown: list[dict[str, Any]] = []

    def show_new() -> None:
        for event in decisions(store, rollout)[len(shown) :]:
            shown.append(event)
            out.line(f"{event['at'] - rollout.started:5.1f} s  {_decision(event)}")

    state = RUNNING
    deadline = time.monotonic() + ROLLOUT_SECONDS
    while state == RUNNING:
        customers.send()
        show_new()
        current = get_rollout(store, rollout.id)
        state = current.state if current is not None else "gone"
        if state == RUNNING and time.monotonic() > deadline:
            with contextlib.suppress(RolloutError):  # unless the server just ended it
                abort_rollout(
                    store, name, actor=ACTOR, reason=f"no decision within {ROLLOUT_SECONDS:.0f} s"
                )
    for _ in range(50):  # the last decision is recorded just after the state changed
        show_new()
        if shown and shown[-1]["action"] in (PROMOTE, ROLLBACK, ABORT):
            break
        time.sleep(0.1)
    ended = get_rollout(store, rollout.id)
    return {
        "id": rollout.id,
        "champion_version": rollout.champion_version,
        "candidate_version": rollout.candidate_version,
        "state": ended.state if ended else state,
        "reason": ended.reason if ended else None,
        "decisions": [
            {k: e.get(k) for k in ("at", "action", "actor", "reason", "details")} for e in shown
        ],
    }


def _decision(event: dict[str, Any]) -> str:
    action = str(event["action"]).removeprefix("rollout_")
    reason = event.get("reason") or ""
    if action == "start":
        details = event.get("details") or {}
        return (
            f"start: version {details.get('candidate_version')} answers "
            f"{details.get('traffic', 0):g}% of the customers"
        )
    if action == "step":
        return reason
    return f"{action}: {reason}"


def await_answers(customers: Customers, version: str, timeout: float = SWAP_SECONDS) -> float:
    """Send customers until the champion variant answering is ``version``; returns the seconds.

    Raises:
        DemoError: still another version after ``timeout``.
    """
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        answers = customers.send()
        if answers and all(a.variant == "champion" and a.version == version for a in answers):
            return time.monotonic() - started
    raise DemoError(f"the server did not answer with version {version} within {timeout:.0f} s")


def log_summary(
    root: Path,
    config: ServingConfig,
    registry: ModelRegistry,
    name: str,
    since: float,
    version: str,
) -> list[dict[str, Any]]:
    """Online accuracy per version and variant since ``since``, from the prediction log joined
    to the feedback (as the canary's quality gate reads it)."""
    from tessera.serving.predlog import online_quality
    from tessera.serving.rollout.ops import version_facts

    task, classes = version_facts(registry, name, version)
    found = online_quality(
        root / config.prediction_log.dir,
        name,
        task=task or "classification",
        classes=classes,
        metric="accuracy" if task != "regression" else "rmse",
        since=since,
    )
    return [
        {"version": v, "variant": variant, "labelled": q.n, "metric": q.metric, "value": q.value}
        for (v, variant), q in sorted(found.items(), key=lambda kv: (int(kv[0][0]), kv[0][1]))
    ]


def duckdb_hint(log_dir: str) -> str:
    """A shell line that counts the logged predictions per version and variant with DuckDB."""
    from tessera.cli.project_cmds import sibling

    query = (
        "SELECT version, variant, count(*) AS predictions, round(avg(latency_ms), 2) AS ms "
        f"FROM read_parquet('{log_dir}/predictions/**/*.parquet', hive_partitioning=true, "
        "union_by_name=true) GROUP BY ALL ORDER BY ALL"
    )
    return f'{sibling("python")} -c "import duckdb; duckdb.sql(\\"{query}\\").show()"'


def serving_demo(
    ws: Workspace,
    outputs: dict[str, dict[str, str]],
    model: dict[str, Any],
    *,
    jobs: int = 1,
    quiet: bool = False,
) -> dict[str, Any]:
    """Everything ``tessera demo`` does after the pipeline run, on its registered model.

    Args:
        ws: the demo project's workspace (after the run).
        outputs: the run's outputs (stage -> output -> version).
        model: the registered model of the run (``model_summary``).
        jobs: stages of the challenger's run to run at once.
        quiet: print nothing (``--json``).

    Returns:
        What happened, as JSON-able data: the server, the customers sent before the
        challenger, the challenger, the rollout with its decisions, the champion after it and
        how soon the server answered with it, the traffic in all, the prediction log.

    Raises:
        DemoError: the server did not start or stop cleanly, requests failed, or the
            challenger's run failed.
    """
    from tessera.registry.models import CHAMPION, project_registry
    from tessera.serving.config import ServingConfig, load_serving_config

    out = Out(quiet)
    root = ws.root
    name, version = str(model["name"]), str(model["version"])
    rows, features, target = held_out_rows(ws, outputs)
    added = add_missing_files(root)
    config = load_serving_config(root) or ServingConfig.model_validate({"models": [{"name": name}]})
    registry = project_registry(root)
    result: dict[str, Any] = {"model": name, "added_files": added}

    out.head("Serving")
    if added:
        out.line(f"Added {', '.join(added)} from the churn example (this project predates them).")
    result.update(start_clean(registry, name, version, out))
    since = time.time()
    log = ws.project.state_dir / "demo" / "serve.log"
    with DemoServer(root, log) as server:
        ready = server.start()
        result["server"] = {"url": server.url, "ready_seconds": round(ready, 2), "log": str(log)}
        out.line(
            f"tessera serve --port 0: {name} version {version} (@champion) on {server.url}, "
            f"ready in {ready:.1f} s (its log: {_relative(log, root)})"
        )
        customers = Customers(server.host, server.port, rows, features, target)
        result["warm_up"] = warm_up(customers, out)

        out.head("Challenger")
        challenger = train_challenger(registry, root, name, jobs, out)
        new = challenger["version"]
        result["challenger"] = challenger
        out.line(
            f"{name} version {new} @challenger; the champion stays version {version}. On the "
            f"test split: {_compare(challenger['scores'], model['scores'])}"
        )

        steps = " -> ".join(f"{s.traffic:g}%" for s in config.rollout.canary.steps)
        out.head(f"Canary rollout of version {new} (serving.yaml: {steps})")
        rollout = run_canary(registry, name, config, customers, out)
        champion = str(registry.alias(name, CHAMPION))
        if rollout["state"] == "promoted" and champion == new:
            out.line(f"{name}@champion -> version {new} (was {version}), moved by the server.")
        else:
            out.line(f"The champion stays version {champion}; the challenger gets no traffic.")
        swap = await_answers(customers, champion)
        if champion == new:
            out.line(
                f"Hot reload: the server answers with version {new} as champion "
                f"{swap:.1f} s later, without a restart."
            )
        result.update(rollout=rollout, champion_after=champion, swap_seconds=round(swap, 2))

        code = server.stop()
        customers.close()
    result["server"]["exit_code"] = code
    result["traffic"] = shut_down(server, code, customers, out)
    result["prediction_log"] = show_log(root, config, registry, name, since, champion, out)
    return result


def warm_up(customers: Customers, out: Out) -> dict[str, Any]:
    """Customers for the champion alone, before there is a challenger."""
    answers = [a for _ in range(WARM_UP_REQUESTS // BATCH) for a in customers.send()]
    right = sum(a.correct for a in answers)
    versions = sorted({a.version for a in answers})
    out.line(
        f"{customers.requests} customers of the test split (unseen in training) -> POST "
        f"/predict, keyed by customer id: answered by version {', '.join(versions) or '-'}, "
        f"{right} right; their true labels -> POST /feedback: {customers.labelled} accepted"
    )
    return {
        "requests": customers.requests,
        "answers": len(answers),
        "correct": right,
        "labelled": customers.labelled,
        "versions": versions,
    }


def shut_down(server: DemoServer, code: int, customers: Customers, out: Out) -> dict[str, Any]:
    """Report the server's exit and the traffic in all.

    Raises:
        DemoError: the server did not exit with status 0, or requests failed.
    """
    out.head("Shutdown")
    out.line(
        f"SIGTERM: the server finished the requests in flight, flushed its logs and exited "
        f"with code {code}."
    )
    refused = ""
    if customers.refused:
        refused = f", {customers.refused} refused ({customers.first_refusal})"
    out.line(
        f"In all: {customers.requests} requests{refused}, {customers.errors} failed, "
        f"{customers.labelled} labels accepted."
    )
    if code != 0:
        raise DemoError(f"tessera serve exited with status {code}:\n{server.tail()}")
    if customers.errors:
        raise DemoError(
            f"{customers.errors} of {customers.requests} requests failed; the first: "
            f"{customers.first_error} (server log: {server.log})"
        )
    return {
        "requests": customers.requests,
        "refused": customers.refused,
        "first_refusal": customers.first_refusal,
        "errors": customers.errors,
        "labelled": customers.labelled,
    }


def show_log(
    root: Path,
    config: ServingConfig,
    registry: ModelRegistry,
    name: str,
    since: float,
    version: str,
    out: Out,
) -> dict[str, Any]:
    """Where the prediction log is, what it says of each version, how to query it."""
    log_dir = config.prediction_log.dir
    quality = log_summary(root, config, registry, name, since, version)
    hint = duckdb_hint(log_dir)
    out.head(f"Prediction log: {root / log_dir}")
    for q in quality:
        out.line(
            f"version {q['version']} as {q['variant']:<9} {q['labelled']:>4} labelled "
            f"predictions, online {q['metric']} {q['value']:.3f}"
        )
    out.line("Query it with DuckDB, from the project directory:")
    out.line(f"  {hint}")
    return {"dir": str(root / log_dir), "quality": quality, "query": hint}


def _relative(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


def _compare(challenger: list[dict[str, Any]], champion: list[dict[str, Any]]) -> str:
    """``roc_auc 0.866 (champion 0.865), ...`` from two evaluations on the same rows."""
    theirs = {s["metric"]: s["value"] for s in champion}
    return ", ".join(
        f"{s['metric']} {s['value']:.3f}"
        + (f" (champion {theirs[s['metric']]:.3f})" if s["metric"] in theirs else "")
        for s in challenger
    )
