"""Deciding what is up to date, and explaining why a stage is stale."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera.data.atomic import atomic_write_text
from tessera.data.metadata import StageRecord
from tessera.pipeline.keys import stage_key
from tessera.pipeline.model import ResolvedStage
from tessera.pipeline.workspace import Workspace


@dataclass
class StageStatus:
    """Whether a stage would run, and why."""

    stage: str
    uses: str
    up_to_date: bool
    reasons: list[str] = field(default_factory=list)
    key: str | None = None
    outputs: dict[str, str] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "uses": self.uses,
            "status": "up-to-date" if self.up_to_date else "stale",
            "reasons": self.reasons,
            "key": self.key,
            "outputs": self.outputs,
        }


def file_deps(ws: Workspace, stage: ResolvedStage) -> dict[str, str]:
    """Content hashes of the files a stage reads ("missing" for absent ones)."""
    return {p: ws.hasher.hash(ws.root / p) or "missing" for p in stage.deps}


def cached_entry(ws: Workspace, stage: ResolvedStage, key: str) -> dict[str, Any] | None:
    """A usable cache entry for ``key`` (outputs, shapes, files written), or None."""
    entry = ws.store.get_key(key)
    if entry is None:
        return None
    outputs: dict[str, str] = entry.get("outputs", {})
    if set(outputs) != set(stage.outputs) or not all(ws.store.has(fp) for fp in outputs.values()):
        return None
    for path, digest in entry.get("outs", {}).items():
        if ws.hasher.hash(ws.root / path) != digest:
            return None
    return entry


def stage_status(ws: Workspace, targets: list[str] | None = None) -> list[StageStatus]:
    """The status of ``targets`` (default: all stages) and of what they need, in run order."""
    pipeline = ws.pipeline
    names = pipeline.with_ancestors(targets) if targets else list(pipeline.order)
    known: dict[str, dict[str, str] | None] = {}
    result: list[StageStatus] = []
    for name in names:
        stage = pipeline.stages[name]
        status = StageStatus(name, stage.uses, up_to_date=False)
        stale_up = [u for u in pipeline.upstream(name) if known.get(u) is None]
        deps = file_deps(ws, stage)
        if stale_up:
            status.reasons = [f"upstream '{u}' will run" for u in stale_up]
            status.reasons += _explain(ws, stage, None, deps, None)
            known[name] = None
        else:
            inputs = [(str(r), known[r.stage][r.output]) for r in stage.inputs]  # type: ignore[index]
            key, _ = stage_key(stage, inputs, deps)
            entry = cached_entry(ws, stage, key)
            outputs = entry["outputs"] if entry is not None else None
            status.key = key
            if outputs is not None:
                status.up_to_date = True
                status.outputs = outputs
            else:
                status.reasons = _explain(ws, stage, inputs, deps, key)
            known[name] = outputs
        result.append(status)
    ws.hasher.save()
    return result


def _explain(
    ws: Workspace,
    stage: ResolvedStage,
    inputs: list[tuple[str, str]] | None,
    deps: dict[str, str],
    key: str | None,
) -> list[str]:
    last = last_state(ws, stage.name)
    missing = [p for p, h in deps.items() if h == "missing"]
    reasons = [f"input file missing: {p}" for p in missing]
    if last is None:
        return [*reasons, "never run"]
    if last.code_hash != stage.code_hash:
        reasons.append("code changed")
    if last.config_hash != stage.config_hash:
        reasons.append("config changed" + _config_diff(last.config or {}, stage.config))
    changed = [p for p, h in deps.items() if h != "missing" and (last.deps or {}).get(p) != h]
    reasons += [f"input file changed: {p}" for p in changed]
    if inputs is not None and last.inputs is not None:
        before = dict(map(tuple, last.inputs))
        reasons += [f"input changed: {ref}" for ref, fp in inputs if before.get(ref) != fp]
    if key is not None and not reasons:
        versions = _version_diff(last, stage)
        if versions:
            reasons.append(f"library versions changed: {versions}")
        elif last.key == key:
            reasons.append(_missing_output(ws, stage, key))
        else:
            reasons.append("not in the cache")
    return reasons


LAST_STATE = "stages.json"


def _last_state_path(ws: Workspace) -> Path:
    return ws.project.state_dir / "state" / LAST_STATE


def _load_last(ws: Workspace) -> dict[str, Any]:
    try:
        data = json.loads(_last_state_path(ws).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def last_state(ws: Workspace, stage: str) -> StageRecord | None:
    """What the stage looked like the last time a run used it (ran it, or found it cached).

    Kept in ``.tessera/state/stages.json``, written by every run, including runs with nothing to
    do; the run records are the fallback when that file is gone.
    """
    entry = _load_last(ws).get(ws.pipeline.file, {}).get(stage)
    if isinstance(entry, dict):
        return StageRecord(run_id="", stage=stage, status="cached", **entry)
    return ws.records.last_success(ws.pipeline.file, stage)


def save_last_state(ws: Workspace, records: list[StageRecord]) -> None:
    """Remember each used stage's key components (written only when something changed)."""
    fields = ("key", "uses", "code_hash", "config_hash", "config", "inputs", "deps", "versions")
    data = _load_last(ws)
    current = data.setdefault(ws.pipeline.file, {})
    changed = False
    for rec in records:
        if rec.status not in ("done", "cached"):
            continue
        entry = {f: getattr(rec, f) for f in fields}
        if current.get(rec.stage) != entry:
            current[rec.stage] = entry
            changed = True
    if changed:
        atomic_write_text(_last_state_path(ws), json.dumps(data))


def _missing_output(ws: Workspace, stage: ResolvedStage, key: str) -> str:
    entry = ws.store.get_key(key) or {}
    for path, digest in entry.get("outs", {}).items():
        current = ws.hasher.hash(ws.root / path)
        if current is None:
            return f"output missing: {path}"
        if current != digest:
            return f"output modified: {path}"
    return "output missing from the cache"


def _flatten(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict) and value:
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(_flatten(v, f"{prefix}.{k}" if prefix else str(k)))
        return out
    return {prefix: value}


def _config_diff(before: dict[str, Any], after: dict[str, Any]) -> str:
    """``": bounds.amount.upper 1000.0 -> 500.0"``: the changed leaves, by dotted path."""
    old, new = _flatten(before), _flatten(after)
    missing = object()
    changes = [
        f"{k} {_short(old.get(k, missing))} -> {_short(new.get(k, missing))}"
        for k in sorted(set(old) | set(new))
        if old.get(k, missing) != new.get(k, missing)
    ]
    return f": {', '.join(changes)}" if changes else ""


def _short(value: Any) -> str:
    text = repr(value) if isinstance(value, str | int | float | bool | list | dict) else "unset"
    if value is None:
        text = "None"
    return text if len(text) <= 40 else text[:37] + "..."


def _version_diff(last: StageRecord, stage: ResolvedStage) -> str:
    from tessera.pipeline.keys import library_versions

    now = library_versions(stage.libraries)
    before = last.versions or {}
    return ", ".join(f"{k} {before.get(k)} -> {v}" for k, v in now.items() if before.get(k) != v)
