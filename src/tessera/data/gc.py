"""Garbage collection of the artifact store: keep what recorded runs refer to."""

from __future__ import annotations

import contextlib
import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from tessera.data.metadata import MetadataStore
from tessera.data.store import ArtifactStore


@dataclass
class GcPlan:
    """What a collection would delete."""

    paths: list[Path] = field(default_factory=list)
    bytes: int = 0
    kept: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def collect(store: ArtifactStore, meta: MetadataStore) -> GcPlan:
    """Objects, raw-file copies and cache entries no recorded run refers to, plus leftovers
    (temporary files of interrupted writes, quarantined corrupt objects)."""
    import json

    tables, files, reports = meta.referenced()
    keep_tables = tables | reports
    plan = GcPlan()
    kinds: Counter[str] = Counter()

    def drop(path: Path, kind: str) -> None:
        plan.paths.append(path)
        with contextlib.suppress(OSError):
            plan.bytes += path.stat().st_size
        kinds[kind] += 1

    for path in sorted(store.objects.glob("*/*")):
        if path.name.endswith(".tmp"):
            drop(path, "temporary files")
        elif path.stem not in keep_tables:
            drop(path, "tables")
        else:
            plan.kept += 1
    for path in sorted((store.root / "files").glob("*/*")):
        if path.name.endswith(".tmp"):
            drop(path, "temporary files")
        elif path.name not in files:
            drop(path, "raw files")
        else:
            plan.kept += 1
    for path in sorted(store.keys.glob("*/*")):
        if path.name.endswith(".tmp"):
            drop(path, "temporary files")
            continue
        try:
            outputs = json.loads(path.read_text()).get("outputs", {})
        except (OSError, ValueError, AttributeError):
            drop(path, "cache entries")
            continue
        if any(fp not in keep_tables for fp in outputs.values()):
            drop(path, "cache entries")
        else:
            plan.kept += 1
    for path in sorted((store.root / "corrupt").glob("*")):
        drop(path, "corrupt files")
    plan.by_kind = dict(kinds)
    return plan


def delete(plan: GcPlan) -> None:
    for path in plan.paths:
        if path.is_dir():
            shutil.rmtree(path, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
