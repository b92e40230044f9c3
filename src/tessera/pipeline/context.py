"""What a running stage may know about where it runs: the stage context.

Most transformations are pure functions of their inputs and config and never look here. Stages
that talk to the outside world on the pipeline's behalf (``train`` logging to MLflow, ``register``
writing to the model registry) need to tag what they write with the pipeline run, the stage, the
versions of their inputs and the commit, so that a model can be traced back to its data and code.
The executor sets the context around the call (in this process, a worker process or on a Dask
worker: the context is plain data and travels with the job).
"""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path


@dataclass(frozen=True)
class ProjectSettings:
    """Project-wide settings a stage may need, resolved once per run by the runner."""

    root: str
    name: str
    state_dir: str
    tracking_uri: str
    studies_url: str
    metadata_url: str
    dask_address: str | None = None


@dataclass(frozen=True)
class StageContext:
    """The stage being computed, in the run computing it."""

    project: ProjectSettings
    stage: str
    uses: str
    run_id: str
    key: str
    code_hash: str
    config_hash: str
    #: Input reference (``split.train``) -> version id, in parameter order.
    inputs: dict[str, str] = field(default_factory=dict)

    @cached_property
    def git_commit(self) -> str | None:
        """The project's git commit, or None outside a repository."""
        return git_commit(Path(self.project.root))

    @property
    def root(self) -> Path:
        return Path(self.project.root)


def git_commit(root: Path) -> str | None:
    """The commit checked out at ``root``, or None outside a git repository."""
    try:
        done = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return (done.stdout.strip() or None) if done.returncode == 0 else None


_CURRENT: ContextVar[StageContext | None] = ContextVar("tessera_stage", default=None)


def current() -> StageContext | None:
    """The context of the stage being computed, or None outside a pipeline run."""
    return _CURRENT.get()


@contextmanager
def entered(context: StageContext | None) -> Iterator[None]:
    """Make ``context`` current for the duration of the block."""
    token = _CURRENT.set(context)
    try:
        yield
    finally:
        _CURRENT.reset(token)
