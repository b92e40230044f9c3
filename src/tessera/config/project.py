"""The project: ``tessera.yaml`` and where everything lives."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from tessera.config.errors import ConfigError, Problem
from tessera.config.validate import load_model_file
from tessera.config.yaml_io import YamlDocument

PROJECT_FILE = "tessera.yaml"


class StoresConfig(BaseModel):
    """Where Tessera keeps its state. Relative paths are relative to the project root."""

    model_config = ConfigDict(extra="forbid")

    root: str = Field(".tessera", description="Directory for all local state.")
    metadata: str | None = Field(
        None,
        description="SQLAlchemy URL of the metadata store (run records, lineage): default "
        "SQLite in the state directory; for a team, e.g. postgresql+psycopg://host/db. "
        "`${VAR}` is replaced by the environment variable VAR.",
    )
    tracking: str | None = Field(
        None,
        description="MLflow tracking URI (runs, models, the model registry): default SQLite "
        "`mlflow.db` with artifacts in `mlartifacts/`, both in the state directory; for a team, "
        "a tracking server such as http://mlflow.internal:5000. `${VAR}` is expanded.",
    )
    studies: str | None = Field(
        None,
        description="Optuna storage URL of tuning studies: default SQLite `optuna.db` in the "
        "state directory; for trials on several machines, e.g. postgresql+psycopg://host/db. "
        "`${VAR}` is expanded.",
    )


class RemoteConfig(BaseModel):
    """A place artifacts are pushed to and pulled from."""

    model_config = ConfigDict(extra="forbid")

    url: str = Field(
        min_length=1, description="Any fsspec URL: file:///shared/cache, s3://bucket/prefix, ..."
    )
    options: dict[str, Any] = Field(
        default_factory=dict,
        description="fsspec storage options (e.g. `endpoint_url`, `key`, `secret`, `profile`); "
        "`${VAR}` in a value is replaced by the environment variable VAR.",
    )


class ExecutorConfig(BaseModel):
    """How stages are executed when the command line does not say."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["local", "dask"] = Field(
        "local", description="`local`: this machine; `dask`: a Dask cluster."
    )
    jobs: int = Field(1, ge=1, description="Stages run at once by the local executor (`-j`).")
    address: str | None = Field(
        None, description="Dask scheduler address; none starts a LocalCluster."
    )
    n_workers: int | None = Field(
        None, ge=1, description="Workers of the LocalCluster (default: `jobs`, at least 2)."
    )


class ProjectConfig(BaseModel):
    """The contents of ``tessera.yaml``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="Project name.")
    pipeline: str = Field("pipeline.yaml", description="The pipeline file.")
    transforms: str = Field(
        "transforms", description="Directory of the project's own transformations."
    )
    envs: str = Field(
        "envs", description="Directory of environment overlays (`--env NAME` reads NAME.yaml)."
    )
    stores: StoresConfig = Field(default_factory=StoresConfig)
    executor: ExecutorConfig = Field(default_factory=ExecutorConfig)
    remotes: dict[str, RemoteConfig] = Field(
        default_factory=dict, description="Artifact remotes by name (`tessera data push/pull`)."
    )
    default_remote: str | None = Field(
        None, description="The remote used when `--remote` is not given (default: the only one)."
    )
    defaults: dict[str, dict[str, Any]] = Field(
        default_factory=dict,
        description="Default parameters per transformation name, lowest precedence.",
    )


@dataclass
class Project:
    """A loaded project: its root directory, its config and the document it came from."""

    root: Path
    config: ProjectConfig
    document: YamlDocument

    @property
    def state_dir(self) -> Path:
        return self.root / self.config.stores.root


def find_project(start: Path | None = None) -> Path:
    """The nearest directory at or above ``start`` holding ``tessera.yaml``."""
    here = (start or Path.cwd()).resolve()
    for candidate in (here, *here.parents):
        if (candidate / PROJECT_FILE).is_file():
            return candidate
    raise ConfigError(
        Problem(
            f"no {PROJECT_FILE} in {here} or any parent directory",
            hint="run inside a Tessera project, or create one with `tessera init DIR`",
        )
    )


def load_project(root: Path | None = None) -> Project:
    """Load and validate ``tessera.yaml`` of the project at (or above) ``root``."""
    root = find_project(root)
    config, doc = load_model_file(root / PROJECT_FILE, PROJECT_FILE, ProjectConfig)
    return Project(root=root, config=config, document=doc)


def chdir(path: Path) -> None:
    """Change directory; stages resolve relative paths against the project root."""
    os.chdir(path)
