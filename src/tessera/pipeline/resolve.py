"""Turning the pipeline file into a checked, resolved ``Pipeline``.

Resolution binds each stage to its transformation and validates its layered parameters with the
transformation's config model. It is a pure function of (the stage's raw parameters, the
transformation's source files, Tessera and pydantic versions), so its result is memoised in
``.tessera/state/resolved.json``: when nothing relevant changed, no transformation module is
imported at all, which keeps pandas (a second of import time) off the no-op path.

Every problem found (unknown names, missing inputs, wrong types, cycles) is collected and raised
together as one ``ConfigError``.
"""

from __future__ import annotations

import graphlib
import importlib.metadata
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tessera._version import __version__
from tessera.config.errors import ConfigError, Problem, describe, did_you_mean
from tessera.config.layers import Provenance, locate
from tessera.config.project import Project
from tessera.config.spec import Overlay, PipelineSpec, stage_params
from tessera.config.yaml_io import KeyPath
from tessera.data.atomic import atomic_write_text
from tessera.data.hashing import FileHasher, hash_json
from tessera.pipeline.model import InputRef, Pipeline, ResolvedStage

if TYPE_CHECKING:
    from pydantic import BaseModel

    from tessera.pipeline.registry import Registry

MEMO_FILE = "resolved.json"


@dataclass
class Resolver:
    """Resolves stages, using the memo when it can and the registry when it must."""

    project: Project
    spec: PipelineSpec
    overlay: Overlay
    hasher: FileHasher
    registry: Registry | None = None
    memo: dict[str, Any] = field(default_factory=dict)
    memo_dirty: bool = False

    @property
    def memo_path(self) -> Path:
        return self.project.state_dir / "state" / MEMO_FILE

    def load_memo(self) -> None:
        try:
            memo = json.loads(self.memo_path.read_text())
        except (OSError, ValueError):
            memo = {}
        listing = self._listing()
        if not isinstance(memo, dict) or memo.get("listing") != listing:
            memo = {"listing": listing, "stages": {}}
            self.memo_dirty = True
        self.memo = memo

    def save_memo(self) -> None:
        if self.memo_dirty:
            atomic_write_text(self.memo_path, json.dumps(self.memo))
            self.memo_dirty = False

    def _listing(self) -> list[Any]:
        """Identity of the project's transformation files and of the libraries that resolve."""
        directory = self.project.root / self.project.config.transforms
        files = []
        if directory.is_dir():
            for path in sorted(directory.glob("*.py")):
                st = path.stat()
                files.append([path.name, st.st_size, st.st_mtime_ns])
        return [__version__, importlib.metadata.version("pydantic"), files]

    def get_registry(self) -> Registry:
        if self.registry is None:
            from tessera.pipeline.registry import discover

            self.registry = discover(self.project.root, self.project.config.transforms)
        return self.registry

    # -- one stage ---------------------------------------------------------------------------
    def resolve_stage(self, name: str) -> tuple[ResolvedStage | None, list[Problem]]:
        spec = self.spec.stages[name]
        raw, prov, problems = stage_params(self.project, self.spec, self.overlay, name)
        if problems:
            return None, problems
        memo_key = hash_json([spec.uses, raw])
        cached = self.memo["stages"].get(memo_key)
        if cached is not None and self._files_unchanged(cached.get("files", {})):
            stage = ResolvedStage.from_memo(name, cached)
        else:
            resolved, problems = self._resolve_fresh(name, raw, prov)
            if resolved is None:
                return None, problems
            stage = resolved
            self.memo["stages"][memo_key] = stage.to_memo()
            self.memo_dirty = True
        stage.description = spec.description
        stage.params = raw
        return stage, []

    def _files_unchanged(self, files: dict[str, str]) -> bool:
        return all(self.hasher.hash(Path(path)) == digest for path, digest in files.items())

    def _resolve_fresh(
        self, name: str, raw: dict[str, Any], prov: dict[KeyPath, Provenance]
    ) -> tuple[ResolvedStage | None, list[Problem]]:
        from tessera.config.validate import validate_model
        from tessera.pipeline.codehash import code_hash

        spec = self.spec.stages[name]
        registry = self.get_registry()
        t = registry.get(spec.uses)
        if t is None:
            return None, [
                Problem(
                    f"unknown transformation '{spec.uses}'",
                    self.spec.file,
                    self.spec.line(name, "uses"),
                    name,
                    "uses",
                    hint=registry.suggest(spec.uses)
                    or "see `tessera transformations` for the list",
                )
            ]

        def where(path: KeyPath) -> tuple[str | None, int | None]:
            found = locate(prov, path)
            return (found.file, found.line) if found else (self.spec.file, self.spec.line(name))

        config, problems = validate_model(
            t.config_model,
            raw,
            locate=where,
            stage=name,
            context={"project_root": self.project.root},
        )
        if config is None:
            return None, problems
        config_json = config.model_dump(mode="json", by_alias=True)
        deps, outs = _paths(config)
        extra = list(t.extra_code()) if t.extra_code is not None else []
        ch = code_hash(t.func, t.config_model, self.project.root, extra)
        # The memo is trusted while these are unchanged: the code, and the files the stage
        # reads (a config model may check them, as the `validate` stage checks its schema).
        sources = [*ch.files, *(str((self.project.root / d).resolve()) for d in deps)]
        files = {f: self.hasher.hash(Path(f)) or "" for f in sources}
        return (
            ResolvedStage(
                name=name,
                uses=t.name,
                outputs=list(t.outputs),
                input_params=list(t.inputs),
                variadic=t.variadic is not None,
                config=config_json,
                config_hash=hash_json(config_json),
                code_hash=ch.digest,
                deps=deps,
                outs=outs,
                libraries=list(t.libraries),
                files=files,
            ),
            [],
        )

    # -- the whole pipeline ------------------------------------------------------------------
    def resolve(self) -> Pipeline:
        """Resolve and check every stage; raise one ``ConfigError`` listing all problems."""
        self.load_memo()
        problems: list[Problem] = [*self.spec.problems, *self.overlay.problems]
        stages: dict[str, ResolvedStage] = {}
        for name in self.spec.stages:
            stage, found = self.resolve_stage(name)
            problems += found
            if stage is not None:
                stages[name] = stage
        problems += self._wire(stages)
        problems += self._check_unresolved_inputs(stages)
        problems += self._check_cycles()
        problems += self._check_defaults()
        problems += self._check_transforms_dir(problems)
        if problems:
            raise ConfigError(problems)
        self.save_memo()
        self.hasher.save()
        return Pipeline.build(self.spec.file, stages)

    def _wire(self, stages: dict[str, ResolvedStage]) -> list[Problem]:
        """Connect inputs to upstream outputs, checking names and counts."""
        problems: list[Problem] = []
        file = self.spec.file
        for name, stage in stages.items():
            spec = self.spec.stages[name]
            if isinstance(spec.inputs, dict):
                items: list[tuple[str | None, str, KeyPath]] = [
                    (param, ref, ("inputs", param)) for param, ref in spec.inputs.items()
                ]
                unknown = [p for p in spec.inputs if p not in stage.input_params]
                for bad in unknown:
                    problems.append(
                        Problem(
                            f"'{stage.uses}' has no input parameter '{bad}'",
                            file,
                            self.spec.line(name, "inputs", bad),
                            name,
                            f"inputs.{bad}",
                            expected=f"one of {stage.input_params}",
                        )
                    )
            else:
                items = [(None, ref, ("inputs", i)) for i, ref in enumerate(spec.inputs)]
                unknown = []
            refs: list[InputRef] = []
            for param, text, keypath in items:  # param is None for positional inputs
                line = self.spec.line(name, *keypath)
                key_path = ".".join(str(k) for k in keypath)
                upstream, _, output = str(text).partition(".")
                if upstream == name:
                    problems.append(
                        Problem(
                            "a stage cannot use its own output",
                            file,
                            line,
                            name,
                            key_path,
                            got=repr(text),
                        )
                    )
                    continue
                if upstream not in self.spec.names:
                    problems.append(
                        Problem(
                            f"input '{text}' is not a stage",
                            file,
                            line,
                            name,
                            key_path,
                            hint=did_you_mean(upstream, self.spec.names),
                        )
                    )
                    continue
                up = stages.get(upstream)
                if up is None:
                    continue  # its own problems are already reported
                if not output:
                    if len(up.outputs) != 1:
                        choices = ", ".join(f"{upstream}.{o}" for o in up.outputs) or "none"
                        problems.append(
                            Problem(
                                f"stage '{upstream}' has {len(up.outputs)} outputs; "
                                "name the one you want",
                                file,
                                line,
                                name,
                                key_path,
                                expected=choices,
                                got=repr(text),
                            )
                        )
                        continue
                    output = up.outputs[0]
                elif output not in up.outputs:
                    problems.append(
                        Problem(
                            f"stage '{upstream}' has no output '{output}'",
                            file,
                            line,
                            name,
                            key_path,
                            expected=f"one of {up.outputs}",
                            hint=did_you_mean(output, up.outputs),
                        )
                    )
                    continue
                refs.append(InputRef(upstream, output, param))
            if isinstance(spec.inputs, dict):
                order = {p: i for i, p in enumerate(stage.input_params)}
                refs.sort(key=lambda r: order.get(r.param or "", len(order)))
                missing = [p for p in stage.input_params if p not in spec.inputs]
                if missing and not unknown:
                    problems.append(
                        Problem(
                            f"missing inputs {missing} for '{stage.uses}'",
                            file,
                            self.spec.line(name, "inputs"),
                            name,
                            "inputs",
                            expected=f"inputs for {stage.input_params}",
                        )
                    )
            else:
                n = len(spec.inputs)
                want = len(stage.input_params)
                if stage.variadic:
                    want = max(want, 1)  # *frames wants at least one table
                if n < want if stage.variadic else n != want:
                    expected = f"at least {want}" if stage.variadic else str(want)
                    params = f" ({', '.join(stage.input_params)})" if stage.input_params else ""
                    problems.append(
                        Problem(
                            f"wrong number of inputs for '{stage.uses}'",
                            file,
                            self.spec.line(name, "inputs") or self.spec.line(name),
                            name,
                            "inputs",
                            expected=f"{expected} input(s){params}",
                            got=describe(list(spec.inputs)),
                        )
                    )
            stage.inputs = refs
        return problems

    def _check_defaults(self) -> list[Problem]:
        """``defaults:`` must name transformations (a typo there would be silently unused)."""
        used = {spec.uses for spec in self.spec.stages.values()}
        unused = [name for name in self.project.config.defaults if name not in used]
        if not unused:
            return []  # every name is used by a stage, so it resolved: no need for the registry
        registry = self.get_registry()
        return [
            Problem(
                f"defaults for unknown transformation '{name}'",
                "tessera.yaml",
                self.project.document.line_of(("defaults", name)),
                key=f"defaults.{name}",
                hint=registry.suggest(name) or "see `tessera transformations`",
            )
            for name in unused
            if registry.get(name) is None
        ]

    def _check_transforms_dir(self, problems: list[Problem]) -> list[Problem]:
        """A configured transforms directory that does not exist explains unknown names."""
        rel = self.project.config.transforms
        if rel == "transforms" or (self.project.root / rel).is_dir():
            return []
        if not any("unknown transformation" in p.message for p in problems):
            return []
        return [
            Problem(
                f"the transforms directory '{rel}' does not exist",
                "tessera.yaml",
                self.project.document.line_of(("transforms",)),
                key="transforms",
            )
        ]

    def _check_unresolved_inputs(self, stages: dict[str, ResolvedStage]) -> list[Problem]:
        """Input names of stages that could not be resolved are still worth checking."""
        problems = []
        for name, spec in self.spec.stages.items():
            if name in stages:
                continue
            for key, text in _input_items(spec.inputs):
                upstream = str(text).partition(".")[0]
                if upstream not in self.spec.names:
                    problems.append(
                        Problem(
                            f"input '{text}' is not a stage",
                            self.spec.file,
                            self.spec.line(name, "inputs", key),
                            name,
                            f"inputs.{key}",
                            hint=did_you_mean(upstream, self.spec.names),
                        )
                    )
        return problems

    def _check_cycles(self) -> list[Problem]:
        sorter: graphlib.TopologicalSorter[str] = graphlib.TopologicalSorter()
        for name, spec in self.spec.stages.items():
            ups = [str(t).partition(".")[0] for _, t in _input_items(spec.inputs)]
            # A stage naming itself is reported by the wiring check; not a second time here.
            sorter.add(name, *(u for u in ups if u in self.spec.stages and u != name))
        try:
            sorter.prepare()
        except graphlib.CycleError as exc:
            cycle = list(exc.args[1])
            return [
                Problem(
                    f"the stages form a cycle: {' -> '.join(cycle)}",
                    self.spec.file,
                    self.spec.line(cycle[0], "inputs"),
                    cycle[0],
                    "inputs",
                    hint="remove one of these inputs",
                )
            ]
        return []


def _input_items(inputs: list[str] | dict[str, str]) -> list[tuple[str | int, str]]:
    if isinstance(inputs, dict):
        return list(inputs.items())
    return list(enumerate(inputs))


def _paths(config: BaseModel) -> tuple[list[str], list[str]]:
    """Files the config says the stage reads (InputPath) and writes (OutputPath)."""
    from pydantic import BaseModel

    from tessera.pipeline.registry import PathRole

    deps: list[str] = []
    outs: list[str] = []
    for fname, finfo in type(config).model_fields.items():
        value = getattr(config, fname)
        roles = [m.role for m in finfo.metadata if isinstance(m, PathRole)] or _roles(
            finfo.annotation, PathRole
        )
        if roles and value is not None:
            values = value if isinstance(value, list | tuple) else [value]
            (deps if roles[0] == "input" else outs).extend(str(v) for v in values)
        elif isinstance(value, BaseModel):
            d, o = _paths(value)
            deps += d
            outs += o
    return deps, outs


def _roles(annotation: Any, role_type: type) -> list[str]:
    """Path roles inside ``Optional[InputPath]``, ``list[OutputPath]`` and the like."""
    import typing

    found = [
        str(getattr(m, "role", ""))
        for m in getattr(annotation, "__metadata__", ())
        if isinstance(m, role_type)
    ]
    for arg in typing.get_args(annotation):
        found += _roles(arg, role_type)
    return found
