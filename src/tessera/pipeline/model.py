"""The resolved pipeline: stages bound to transformations, with validated configs."""

from __future__ import annotations

import graphlib
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass(frozen=True)
class InputRef:
    """An edge: output ``output`` of stage ``stage`` feeds parameter ``param``."""

    stage: str
    output: str
    param: str | None = None

    def __str__(self) -> str:
        return f"{self.stage}.{self.output}"


@dataclass
class ResolvedStage:
    """A stage ready to plan and run: everything here is plain data (JSON-able, picklable)."""

    name: str
    uses: str
    outputs: list[str]
    input_params: list[str]
    variadic: bool
    config: dict[str, Any]
    config_hash: str
    code_hash: str
    deps: list[str] = field(default_factory=list)
    outs: list[str] = field(default_factory=list)
    libraries: list[str] = field(default_factory=list)
    files: dict[str, str] = field(default_factory=dict)
    inputs: list[InputRef] = field(default_factory=list)
    description: str | None = None
    #: The merged parameters as written (YAML types intact, e.g. integer mapping keys); the
    #: transformation's config is validated from these when the stage runs. ``config`` is
    #: their validated JSON form, used for hashing and records.
    params: dict[str, Any] = field(default_factory=dict)

    def to_memo(self) -> dict[str, Any]:
        data = asdict(self)
        for transient in ("inputs", "description", "params"):
            data.pop(transient)
        return data

    @classmethod
    def from_memo(cls, name: str, data: dict[str, Any]) -> ResolvedStage:
        return cls(**{**data, "name": name})


@dataclass
class Pipeline:
    """Stages in file order plus the DAG between them."""

    file: str
    stages: dict[str, ResolvedStage]
    order: list[str]

    @classmethod
    def build(cls, file: str, stages: dict[str, ResolvedStage]) -> Pipeline:
        """Order the stages topologically (ties in file order). The graph is checked already."""
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for name, stage in stages.items():
            sorter.add(name, *(ref.stage for ref in stage.inputs))
        position = {name: i for i, name in enumerate(stages)}
        order: list[str] = []
        sorter.prepare()
        while sorter.is_active():
            ready = sorted(sorter.get_ready(), key=position.__getitem__)
            order.extend(ready)
            sorter.done(*ready)
        return cls(file=file, stages=stages, order=order)

    def upstream(self, name: str) -> list[str]:
        seen: list[str] = []
        for ref in self.stages[name].inputs:
            if ref.stage not in seen:
                seen.append(ref.stage)
        return seen

    def downstream(self, name: str) -> list[str]:
        return [s for s in self.order if any(r.stage == name for r in self.stages[s].inputs)]

    def with_ancestors(self, targets: Iterable[str]) -> list[str]:
        """``targets`` and everything they need, in run order."""
        needed: set[str] = set()
        stack = list(targets)
        while stack:
            name = stack.pop()
            if name not in needed:
                needed.add(name)
                stack.extend(self.upstream(name))
        return [s for s in self.order if s in needed]

    def with_descendants(self, roots: Iterable[str]) -> list[str]:
        found = set(roots)
        for name in self.order:
            if any(r.stage in found for r in self.stages[name].inputs):
                found.add(name)
        return [s for s in self.order if s in found]
