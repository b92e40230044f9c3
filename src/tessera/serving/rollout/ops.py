"""Rollout operations shared by ``tessera rollout`` and the admin API: start, promote, abort,
status. They only write the shared state in the metadata store (and move the registry alias on
promotion); the servers follow it on their next tick, and none needs to run."""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tessera.data.metadata import MetadataStore
from tessera.serving.config import STRATEGIES, RolloutConfig
from tessera.serving.rollout.gates import (
    Quality,
    compare_ab,
    default_metric,
    judge_canary,
    pct,
    quality_dict,
)
from tessera.serving.rollout.state import (
    ABORT,
    ABORTED,
    CANDIDATE,
    CHAMPION,
    PROMOTE,
    PROMOTED,
    RUNNING,
    SHADOW,
    START,
    Rollout,
    RolloutError,
    decisions,
    get_rollout,
    insert_rollout,
    latest_rollout,
    read_stats,
    record_decision,
    running_rollout,
    update_running,
    workers,
)

if TYPE_CHECKING:
    from tessera.registry.models import ModelRegistry

_ALIAS = re.compile(r"^[A-Za-z0-9_-]+$")


def who(actor: str | None) -> str:
    from tessera.registry.models import actor as default_actor

    return actor or default_actor()


def already_running(rollout: Rollout) -> str:
    return (
        f"a rollout of {rollout.model} is already running (id {rollout.id}, "
        f"{rollout.describe()}); `tessera rollout abort {rollout.model} -m REASON` ends it"
    )


def start_rollout(
    store: MetadataStore,
    registry: ModelRegistry,
    model: str,
    config: RolloutConfig,
    *,
    strategy: str | None = None,
    candidate: str | None = None,
    actor: str | None = None,
    reason: str | None = None,
) -> Rollout:
    """Start rolling out a candidate version of ``model`` against its champion.

    Args:
        config: ``rollout`` of serving.yaml; stored with the rollout, whose gates and steps it
            sets for its whole life.
        strategy: ``ab``, ``canary`` or ``shadow`` (default: the configuration's).
        candidate: an alias (``challenger``, ``@challenger``) or version number (default: the
            configuration's ``candidate``).
        actor: who starts it (default: user@host).
        reason: why, for the audit trail.

    Raises:
        RolloutError: a rollout of the model is already running, the model has no champion,
            the candidate does not exist or is the champion, an unknown strategy.
        RegistryError: no such registered model.
    """
    from tessera.registry.models import CHAMPION as CHAMPION_ALIAS
    from tessera.registry.models import Ref

    strategy = strategy or config.strategy
    if strategy not in STRATEGIES:
        raise RolloutError(f"unknown strategy '{strategy}': use {', '.join(STRATEGIES)}")
    found = running_rollout(store, model)
    if found is not None:
        raise RolloutError(already_running(found))
    if model not in registry.names():
        registry.get(Ref(model))  # the registry's "no registered model" with a did-you-mean
    champion = registry.alias(model, CHAMPION_ALIAS)
    if champion is None:
        raise RolloutError(
            f"no champion: {model} has no @champion to roll out against; promote a version "
            f"first (`tessera models promote {model}/VERSION -m REASON`)"
        )
    wanted = (candidate or config.candidate).strip().removeprefix("@")
    alias, version = _candidate(registry, model, wanted)
    named = f"{model}@{alias}" if alias else f"{model}/{version}"
    if version == champion:
        raise RolloutError(
            f"candidate is the champion: {named} is version {version}, already @champion; "
            "register a new version to roll out"
        )
    settings = config.model_copy(update={"strategy": strategy, "candidate": wanted})
    _check_metric(registry, model, version, strategy, settings)
    traffic = {
        "canary": settings.canary.steps[0].traffic,
        "ab": settings.ab.weight,
        "shadow": settings.shadow.share,
    }[strategy]
    now = time.time()
    rollout = Rollout(
        id=uuid.uuid4().hex,
        model=model,
        strategy=strategy,
        state=RUNNING,
        champion_version=champion,
        candidate_version=version,
        candidate_alias=alias,
        step=1,
        traffic=traffic,
        step_started=now,
        started=now,
        ended=None,
        config=settings.model_dump(mode="json"),
    )
    if not insert_rollout(store, rollout):
        raced = running_rollout(store, model)
        raise RolloutError(already_running(raced) if raced else f"{model}: try again")
    record_decision(
        store,
        rollout,
        START,
        actor=who(actor),
        reason=reason or f"{rollout.describe()}: version {version} against version {champion}",
        details={
            "traffic": traffic,
            "candidate": named,
            "champion_version": champion,
            "candidate_version": version,
            "config": rollout.config,
        },
        at=now,
    )
    return rollout


def _check_metric(
    registry: ModelRegistry, model: str, version: str, strategy: str, settings: RolloutConfig
) -> None:
    """Refuse a configured metric that does not apply to the candidate's task."""
    from tessera.training.spec import METRICS

    metric = getattr(settings, strategy).metric
    task, _ = version_facts(registry, model, version)
    if metric is not None and task in METRICS and metric not in METRICS[task]:
        raise RolloutError(
            f"rollout.{strategy}.metric in serving.yaml: '{metric}' does not apply to a {task} "
            f"model (its metrics: {', '.join(METRICS[task])})"
        )


def _candidate(registry: ModelRegistry, model: str, wanted: str) -> tuple[str | None, str]:
    """(alias or None, version) of the candidate named by an alias or a version number."""
    from tessera.registry.models import Ref, RegistryError

    if wanted.isdigit():
        try:
            return None, registry.get(Ref(model, version=wanted)).version
        except RegistryError:
            versions = ", ".join(v.version for v in registry.versions(model))
            raise RolloutError(
                f"no candidate: {model} has no version {wanted} (versions: {versions})"
            ) from None
    if not _ALIAS.match(wanted):
        raise RolloutError(
            f"'{wanted}' is not a candidate: give an alias (e.g. challenger) or a version number"
        )
    version = registry.alias(model, wanted)
    if version is None:
        raise RolloutError(
            f"no candidate: {model} has no @{wanted}; register a version that is not promoted "
            "(it becomes @challenger) or name one with --candidate VERSION"
        )
    return wanted, version


def finish(
    store: MetadataStore,
    registry: ModelRegistry | None,
    rollout: Rollout,
    state: str,
    *,
    action: str,
    reason: str,
    actor: str,
    details: Mapping[str, Any],
    now: float | None = None,
) -> Rollout | None:
    """End a running rollout (promoted, rolled back or aborted) and record why.

    Promotion moves the registry's ``champion`` alias to the candidate; when that fails the
    rollout is running again and the error is raised. Rolling back or aborting leaves the alias
    where it is and gives the candidate no more traffic.

    Returns:
        The ended rollout, or None when it was no longer running at its step (someone else
        acted first).
    """
    from tessera.registry.models import CHAMPION as CHAMPION_ALIAS

    now = time.time() if now is None else now
    traffic = 100.0 if state == PROMOTED else 0.0
    claimed = update_running(
        store,
        rollout,
        state=state,
        ended=now,
        reason=reason,
        traffic=traffic,
        leader=None,
        lease_until=None,
    )
    if not claimed:
        return None
    if state == PROMOTED:
        assert registry is not None
        try:
            registry.promote(
                rollout.model,
                rollout.candidate_version,
                alias=CHAMPION_ALIAS,
                reason=f"{rollout.strategy} rollout {rollout.id}: {reason}",
                details={"rollout_id": rollout.id, **details},
                who=actor,
            )
        except Exception:
            _reopen(store, rollout)
            raise
    record_decision(store, rollout, action, actor=actor, reason=reason, details=details, at=now)
    return get_rollout(store, rollout.id)


def _reopen(store: MetadataStore, rollout: Rollout) -> None:
    from tessera.data.metadata.schema import rollouts

    with store.transaction() as conn:
        conn.execute(
            rollouts.update()
            .where((rollouts.c.id == rollout.id) & (rollouts.c.state == PROMOTED))
            .values(state=RUNNING, ended=None, reason=None, traffic=rollout.traffic)
        )


def _running(store: MetadataStore, model: str) -> Rollout:
    found = running_rollout(store, model)
    if found is None:
        last = latest_rollout(store, model)
        ended = f" (the last one, {last.id}, is {last.state})" if last else ""
        raise RolloutError(
            f"no rollout of {model} is running{ended}; `tessera rollout start {model}` starts one"
        )
    return found


def promote_rollout(
    store: MetadataStore,
    registry: ModelRegistry,
    model: str,
    *,
    actor: str | None = None,
    reason: str,
) -> Rollout:
    """Promote the candidate of the running rollout now, whatever its strategy and gates: the
    champion alias moves to it and the rollout ends.

    Raises:
        RolloutError: no rollout of the model is running.
    """
    rollout = _running(store, model)
    details = {v: s.summary() for v, s in read_stats(store, rollout.id).items()}
    done = finish(
        store,
        registry,
        rollout,
        PROMOTED,
        action=PROMOTE,
        reason=reason,
        actor=who(actor),
        details={"manual": True, "variants": details},
    )
    if done is None:
        raise RolloutError(f"the rollout of {model} changed meanwhile: `tessera rollout status`")
    return done


def abort_rollout(
    store: MetadataStore, model: str, *, actor: str | None = None, reason: str
) -> Rollout:
    """Stop the running rollout: the candidate gets no more traffic, the champion stays.

    Raises:
        RolloutError: no rollout of the model is running.
    """
    rollout = _running(store, model)
    details = {v: s.summary() for v, s in read_stats(store, rollout.id).items()}
    done = finish(
        store,
        None,
        rollout,
        ABORTED,
        action=ABORT,
        reason=reason,
        actor=who(actor),
        details={"variants": details},
    )
    if done is None:
        raise RolloutError(f"the rollout of {model} changed meanwhile: `tessera rollout status`")
    return done


def version_facts(registry: ModelRegistry, model: str, version: str) -> tuple[str | None, Any]:
    """(task, classes) of a registered version, from its tags."""
    import json

    from tessera.registry.models import Ref

    tags = registry.get(Ref(model, version=version)).tags
    return tags.get("tessera.task"), json.loads(tags.get("tessera.classes") or "null")


def metric_of(rollout: Rollout, task: str | None) -> str:
    settings = rollout.settings
    configured = {
        "canary": settings.canary.metric,
        "ab": settings.ab.metric,
        "shadow": settings.shadow.metric,
    }[rollout.strategy]
    return configured or default_metric(task)


def online(
    log_dir: Path | None, rollout: Rollout, task: str | None, classes: Any, metric: str
) -> dict[str, Quality] | None:
    """Variant -> online quality of this rollout's predictions that got feedback (the champion
    and candidate versions it started with; shadow predictions under ``shadow``); None
    without a prediction log."""
    if log_dir is None:
        return None
    if not Path(log_dir).exists():
        return {}
    from tessera.serving.predlog import online_quality

    try:
        found = online_quality(
            Path(log_dir),
            rollout.model,
            task=task or "classification",
            classes=classes,
            metric=metric,
            rollout_id=rollout.id,
            since=rollout.started,
        )
    except ValueError as exc:  # a metric that does not fit the model's task
        raise RolloutError(f"rollout.{rollout.strategy}.metric in serving.yaml: {exc}") from None
    wanted = {
        (rollout.champion_version, CHAMPION): CHAMPION,
        (rollout.candidate_version, CANDIDATE): CANDIDATE,
        (rollout.candidate_version, SHADOW): SHADOW,
    }
    return {wanted[key]: q for key, q in found.items() if key in wanted}


def rollout_status(
    store: MetadataStore,
    registry: ModelRegistry,
    model: str,
    *,
    log_dir: Path | None,
    now: float | None = None,
) -> dict[str, Any]:
    """The running rollout of ``model`` (or the latest that ended) as JSON-able data.

    Returns:
        ``model``; ``rollout`` (the stored row, None when there never was one); ``variants``:
        version, requests, errors, error rate, p50/p99/mean ms and online ``quality`` of each
        variant over the whole rollout; for a canary, ``canary``: the current step's statistics
        and the gates' verdict now (``decision``: action, reason, numbers); for A/B, ``ab``:
        the comparison with its significance test; for shadow, ``shadow``: agreement; the
        ``decisions`` recorded so far, the ``workers`` that reported, and ``summary``, a
        sentence.
    """
    from tessera.registry.models import Ref

    now = time.time() if now is None else now
    if model not in registry.names():
        registry.get(Ref(model))  # the registry's "no registered model" with a did-you-mean
    rollout = latest_rollout(store, model)
    if rollout is None:
        return {
            "model": model,
            "rollout": None,
            "summary": f"no rollout of {model} yet: `tessera rollout start {model}` starts one",
        }
    task, classes = version_facts(registry, model, rollout.candidate_version)
    metric = metric_of(rollout, task)
    quality = online(log_dir, rollout, task, classes, metric)
    totals = read_stats(store, rollout.id)
    versions = {
        CHAMPION: rollout.champion_version,
        CANDIDATE: rollout.candidate_version,
        SHADOW: rollout.candidate_version,
    }
    shown = [CHAMPION, SHADOW if rollout.strategy == "shadow" else CANDIDATE]
    shown += [v for v in totals if v not in shown]
    variants = {
        v: {
            "version": versions.get(v),
            **(totals[v].summary() if v in totals else _no_requests()),
            "quality": quality_dict((quality or {}).get(v)),
        }
        for v in shown
    }
    out: dict[str, Any] = {
        "model": model,
        "rollout": rollout.to_dict(),
        "describe": rollout.describe(),
        "metric": metric,
        "task": task,
        "variants": variants,
        "decisions": decisions(store, rollout),
        "workers": workers(store, rollout.id),
    }
    if rollout.strategy == "canary":
        step_stats = read_stats(store, rollout.id, rollout.step)
        decision = judge_canary(rollout, step_stats, quality, now) if rollout.running else None
        out["canary"] = {
            "step": rollout.step,
            "steps": rollout.steps,
            "traffic": rollout.traffic,
            "variants": {v: s.summary() for v, s in step_stats.items()},
            "decision": None
            if decision is None
            else {
                "action": decision.action,
                "reason": decision.reason,
                "details": decision.details,
            },
        }
        summary = decision.reason if decision else ""
    elif rollout.strategy == "ab":
        ab = rollout.settings.ab
        out["ab"] = compare_ab(
            (quality or {}).get(CHAMPION),
            (quality or {}).get(CANDIDATE),
            metric=metric,
            binary_loss=task != "regression",
            min_samples=ab.min_samples,
            alpha=ab.alpha,
        )
        summary = out["ab"]["summary"]
    else:
        out["shadow"] = _agreement(totals.get(SHADOW), log_dir, rollout)
        summary = out["shadow"]["summary"]
    if not rollout.running:
        summary = f"{rollout.state.replace('_', ' ')}: {rollout.reason or '-'}"
    out["summary"] = summary
    return out


def _no_requests() -> dict[str, Any]:
    from tessera.serving.rollout.stats import VariantStats

    return VariantStats().summary()


def _agreement(stats: Any, log_dir: Path | None, rollout: Rollout) -> dict[str, Any]:
    """Shadow agreement from the workers' counters, else from the prediction log."""
    compared, agreed, source = 0, 0, "stats"
    if stats is not None and stats.compared:
        compared, agreed = stats.compared, stats.agreed
    elif log_dir is not None and Path(log_dir).exists():
        from tessera.serving.predlog import shadow_agreement

        compared, agreed = shadow_agreement(Path(log_dir), rollout.model, rollout.id)
        source = "prediction log"
    agreement = agreed / compared if compared else None
    summary = (
        f"the shadow agreed with the champion on {agreed}/{compared} predictions ({pct(agreement)})"
        if agreement is not None
        else "no shadow prediction compared yet"
    )
    return {
        "compared": compared,
        "agreed": agreed,
        "agreement": agreement,
        "source": source,
        "summary": summary,
    }
