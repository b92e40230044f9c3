"""The pipeline file (``pipeline.yaml``) and the layered parameters of each stage."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from tessera.config.errors import ConfigError, Problem, did_you_mean
from tessera.config.layers import Layer, Provenance, merge_layers, nest, parse_override
from tessera.config.project import Project
from tessera.config.validate import Locator, validate_model
from tessera.config.yaml_io import KeyPath, YamlDocument, load_yaml

STAGE_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_\-]*$")


class StageSpec(BaseModel):
    """One stage as written in the pipeline file."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    uses: str = Field(description="The transformation this stage runs.")
    inputs: list[str] | dict[str, str] = Field(
        default_factory=list,
        description="Upstream stages (`stage` or `stage.output`), as a list or by parameter name.",
    )
    with_: dict[str, Any] | str | None = Field(
        None, alias="with", description="Parameters inline, or the path of a params file."
    )
    params: str | None = Field(None, description="A params file layered over `with`.")
    description: str | None = Field(None, description="What the stage is for.")


@dataclass
class PipelineSpec:
    """A parsed pipeline file: stages in file order, with their source lines."""

    file: str
    document: YamlDocument
    stages: dict[str, StageSpec]
    #: Every stage name written in the file, including stages whose spec is malformed.
    names: list[str] = field(default_factory=list)
    #: Problems with individual stages, reported together with all later checks.
    problems: list[Problem] = field(default_factory=list)

    def line(self, stage: str, *key: str | int) -> int | None:
        return self.document.line_of(("stages", stage, *key))


def load_pipeline_spec(project: Project, file: str | None = None) -> PipelineSpec:
    """Load the pipeline file, reporting every malformed stage at once."""
    name = file or project.config.pipeline
    doc = load_yaml(project.root / name, name)
    data = doc.data
    if not isinstance(data, dict) or not isinstance(data.get("stages"), dict):
        raise ConfigError(
            Problem(
                "a pipeline file must have a `stages:` mapping",
                name,
                doc.line_of(("stages",)),
                expected="stages: {NAME: {uses: TRANSFORMATION, ...}}",
            )
        )
    problems: list[Problem] = []
    unknown = set(data) - {"stages", "description"}
    for key in sorted(unknown):
        problems.append(
            Problem(
                "unknown top-level key",
                name,
                doc.line_of((key,)),
                key=key,
                hint="a pipeline file has `stages:` and `description:`",
            )
        )
    stages: dict[str, StageSpec] = {}
    for stage, raw in data["stages"].items():
        stage = str(stage)
        if not STAGE_NAME.match(stage):
            problems.append(
                Problem(
                    "invalid stage name",
                    name,
                    doc.line_of(("stages", stage)),
                    stage,
                    expected="letters, digits, '_' or '-', not starting with a digit",
                )
            )
            continue
        spec, found = validate_model(
            StageSpec,
            raw if raw is not None else {},
            locate=_stage_locator(name, doc, stage),
            stage=stage,
        )
        problems += found
        if spec is not None:
            stages[stage] = spec
    return PipelineSpec(
        file=name,
        document=doc,
        stages=stages,
        names=[str(s) for s in data["stages"]],
        problems=problems,
    )


def _stage_locator(file: str, doc: YamlDocument, stage: str) -> Locator:
    return lambda path: (file, doc.line_of(("stages", stage, *path)))


@dataclass
class Overlay:
    """Environment overlay (``envs/NAME.yaml``) and command-line overrides."""

    env: str | None = None
    env_document: YamlDocument | None = None
    overrides: dict[str, list[tuple[list[str], Any, str]]] = field(default_factory=dict)
    #: Problems found, reported together with the pipeline's own.
    problems: list[Problem] = field(default_factory=list)


def load_overlay(
    project: Project, pipeline: PipelineSpec, env: str | None, overrides: list[str]
) -> Overlay:
    """Read ``--env NAME`` and ``-o STAGE.KEY=VALUE``, checking they name real stages.

    Problems are collected in ``Overlay.problems`` (not raised) so that they are reported
    together with everything else wrong in the pipeline.
    """
    problems: list[Problem] = []
    overlay = Overlay(env=env)
    if env:
        rel = f"{project.config.envs}/{env}.yaml"
        path = project.root / rel
        if not path.is_file():
            available = sorted(p.stem for p in (project.root / project.config.envs).glob("*.yaml"))
            hint = did_you_mean(env, available) or (
                f"available: {', '.join(available)}"
                if available
                else f"create {rel} with `stages: {{STAGE: {{KEY: VALUE}}}}`"
            )
            problems.append(Problem(f"environment '{env}' not found", rel, hint=hint))
            env = None
    if env:
        rel = f"{project.config.envs}/{env}.yaml"
        try:
            doc = load_yaml(project.root / rel, rel)
        except ConfigError as exc:
            problems += exc.problems
            doc = YamlDocument(rel, {})
        data = doc.data or {}
        if not isinstance(data, dict) or not isinstance(data.get("stages", {}), dict):
            problems.append(Problem("an environment file maps `stages:` to parameters", rel, 1))
            data = {}
        for key in sorted(set(data) - {"stages", "defaults"}):
            problems.append(
                Problem(
                    "unknown top-level key",
                    rel,
                    doc.line_of((key,)),
                    key=key,
                    hint="an environment file has `stages:` and `defaults:`",
                )
            )
        for stage in data.get("stages", {}):
            if stage not in pipeline.names:
                problems.append(
                    Problem(
                        "unknown stage",
                        rel,
                        doc.line_of(("stages", stage)),
                        str(stage),
                        hint=did_you_mean(str(stage), pipeline.names),
                    )
                )
        overlay.env_document = doc
    for text in overrides:
        try:
            stage, keys, value = parse_override(text)
        except ConfigError as exc:
            problems += exc.problems
            continue
        if stage not in pipeline.names:
            problems.append(
                Problem(
                    f"override '{text}' names an unknown stage",
                    "command line",
                    stage=stage,
                    key=".".join(keys),
                    hint=did_you_mean(stage, pipeline.names),
                )
            )
            continue
        overlay.overrides.setdefault(stage, []).append((keys, value, text))
    overlay.problems = problems
    return overlay


def stage_params(
    project: Project, pipeline: PipelineSpec, overlay: Overlay, stage: str
) -> tuple[dict[str, Any], dict[KeyPath, Provenance], list[Problem]]:
    """The merged parameters of ``stage`` and where each key came from.

    Layers, lowest first: project defaults (by transformation), pipeline ``with:``, params file,
    environment overlay, command-line overrides.
    """
    spec = pipeline.stages[stage]
    pfile = pipeline.file
    layers: list[Layer] = []
    problems: list[Problem] = []
    defaults = _dig(project.document.data, ("defaults", spec.uses))
    if isinstance(defaults, dict):
        layers.append(
            _layer("project defaults", defaults, project.document, ("defaults", spec.uses))
        )
    base_line = pipeline.line(stage)
    if isinstance(spec.with_, dict):
        layers.append(_layer("pipeline", spec.with_, pipeline.document, ("stages", stage, "with")))
    files = [spec.with_] if isinstance(spec.with_, str) else []
    if spec.params:
        files.append(spec.params)
    for rel in files:
        key = "with" if rel == spec.with_ else "params"
        path = project.root / rel
        if not path.is_file():
            problems.append(
                Problem(
                    "params file not found",
                    pfile,
                    pipeline.line(stage, key),
                    stage,
                    key,
                    got=repr(rel),
                )
            )
            continue
        try:
            doc = load_yaml(path, rel)
        except ConfigError as exc:
            problems += exc.problems
            continue
        if doc.data is None:
            continue
        if not isinstance(doc.data, dict):
            problems.append(
                Problem(
                    "a params file must be a mapping", rel, 1, stage, got=type(doc.data).__name__
                )
            )
            continue
        layers.append(_layer("params file", doc.data, doc, ()))
    env_doc = overlay.env_document
    if env_doc is not None:
        for prefix in (("defaults", spec.uses), ("stages", stage)):
            data = _dig(env_doc.data, prefix)
            if isinstance(data, dict):
                layers.append(_layer(f"env {overlay.env}", data, env_doc, prefix))
    for keys, value, text in overlay.overrides.get(stage, []):
        layers.append(Layer(f"override {text}", nest(keys, value), "command line"))
    merged, prov = merge_layers(layers)
    if () not in prov:
        prov[()] = Provenance("pipeline", pfile, base_line)
    return merged, prov, problems


def _dig(data: Any, path: KeyPath) -> Any:
    for key in path:
        if not isinstance(data, dict):
            return None
        data = data.get(key)
    return data


def _layer(label: str, data: dict[str, Any], doc: YamlDocument, prefix: KeyPath) -> Layer:
    n = len(prefix)
    lines = {p[n:]: line for p, line in doc.lines.items() if p[:n] == prefix and len(p) > n}
    return Layer(label, data, doc.path, lines, doc.line_of(prefix))
