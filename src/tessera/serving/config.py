"""``serving.yaml``: which registered models ``tessera serve`` serves, and its limits."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from tessera.config.validate import load_model_file

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
    return load_model_file(path, SERVING_FILE, ServingConfig)[0]
