"""A workspace: one project, its pipeline resolved, and the stores it runs against."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tessera.config.project import Project, load_project
from tessera.config.spec import Overlay, PipelineSpec, load_overlay, load_pipeline_spec
from tessera.data.hashing import FileHasher
from tessera.data.metadata import MetadataStore, default_url
from tessera.data.store import ArtifactStore
from tessera.pipeline.context import ProjectSettings
from tessera.pipeline.model import Pipeline
from tessera.pipeline.registry import Registry
from tessera.pipeline.resolve import Resolver


@dataclass
class Workspace:
    """Everything a command needs to plan, run or inspect a pipeline."""

    project: Project
    spec: PipelineSpec
    overlay: Overlay
    pipeline: Pipeline
    resolver: Resolver
    store: ArtifactStore
    hasher: FileHasher
    records: MetadataStore

    @property
    def root(self) -> Path:
        return self.project.root

    @property
    def registry(self) -> Registry:
        return self.resolver.get_registry()

    def close(self) -> None:
        self.hasher.save()
        self.records.close()


def metadata_url(project: Project) -> str:
    """The metadata store's SQLAlchemy URL: ``stores.metadata`` (``${VAR}`` expanded) or SQLite."""
    from tessera.envvars import expand

    configured = project.config.stores.metadata
    if configured:
        return expand(configured, what="stores.metadata in tessera.yaml")
    return default_url(project.state_dir)


def tracking_uri(project: Project) -> str:
    """The MLflow tracking URI: ``stores.tracking`` (``${VAR}`` expanded) or SQLite in the state
    directory."""
    from tessera.envvars import expand

    configured = project.config.stores.tracking
    if configured:
        return expand(configured, what="stores.tracking in tessera.yaml")
    return f"sqlite:///{(project.state_dir / 'mlflow.db').resolve()}"


def studies_url(project: Project) -> str:
    """The Optuna storage URL: ``stores.studies`` (``${VAR}`` expanded) or SQLite."""
    from tessera.envvars import expand

    configured = project.config.stores.studies
    if configured:
        return expand(configured, what="stores.studies in tessera.yaml")
    return f"sqlite:///{(project.state_dir / 'optuna.db').resolve()}"


def project_settings(project: Project) -> ProjectSettings:
    """The settings every stage of a run may read through its context."""
    return ProjectSettings(
        root=str(project.root),
        name=project.config.name,
        state_dir=str(project.state_dir.resolve()),
        tracking_uri=tracking_uri(project),
        studies_url=studies_url(project),
        metadata_url=metadata_url(project),
        dask_address=project.config.executor.address,
    )


def open_workspace(
    root: Path | None = None,
    *,
    pipeline_file: str | None = None,
    env: str | None = None,
    overrides: list[str] | tuple[str, ...] = (),
) -> Workspace:
    """Load the project at (or above) ``root`` and resolve its pipeline.

    Raises:
        ConfigError: listing every problem in the project's configuration.
    """
    project = load_project(root)
    spec = load_pipeline_spec(project, pipeline_file)
    overlay = load_overlay(project, spec, env, list(overrides))
    state = project.state_dir
    hasher = FileHasher(state / "state" / "filehashes.json")
    resolver = Resolver(project, spec, overlay, hasher)
    pipeline = resolver.resolve()
    return Workspace(
        project=project,
        spec=spec,
        overlay=overlay,
        pipeline=pipeline,
        resolver=resolver,
        store=ArtifactStore(state / "cache"),
        hasher=hasher,
        records=MetadataStore(metadata_url(project)),
    )
