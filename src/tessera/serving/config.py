"""``serving.yaml``: which registered models ``tessera serve`` serves, and its limits."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tessera.config.errors import ConfigError, Problem
from tessera.config.validate import validate_model
from tessera.config.yaml_io import load_yaml

SERVING_FILE = "serving.yaml"


class ServedModel(BaseModel):
    """A registered model to serve, by name and alias."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The registered model's name (as in `tessera models list`).")
    alias: str = Field("champion", description="The alias whose version is served.")


class ServingConfig(BaseModel):
    """The contents of ``serving.yaml``."""

    model_config = ConfigDict(extra="forbid")

    models: list[ServedModel] = Field(
        min_length=1,
        description="The models to serve; for now the first one is served.",
    )
    max_batch_rows: int = Field(
        10_000, gt=0, description="Most rows one request may hold (more: 413)."
    )
    max_body_bytes: int = Field(
        10_000_000, gt=0, description="Largest request body in bytes (more: 413)."
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="Port to listen on.")


def load_serving_config(project_root: Path) -> ServingConfig | None:
    """The project's ``serving.yaml``, or None when there is none.

    Raises:
        ConfigError: the file is not valid YAML or does not fit :class:`ServingConfig`; every
            problem is named with file and line.
    """
    path = project_root / SERVING_FILE
    if not path.is_file():
        return None
    doc = load_yaml(path, SERVING_FILE)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(
            Problem("the file must be a mapping", SERVING_FILE, 1, got=type(data).__name__)
        )
    config, problems = validate_model(
        ServingConfig, data, locate=lambda keypath: (SERVING_FILE, doc.line_of(keypath))
    )
    if config is None:
        raise ConfigError(problems)
    return config
