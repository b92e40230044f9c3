"""Project templates for ``tessera init``: an empty project and ready-to-run examples.

Each template is a directory of real files under ``templates/`` (YAML, README, project
transformations) that ``scaffold`` copies; an example's data is generated when it is scaffolded
(deterministically), so nothing large ships in the package.

    >>> from tessera.examples import EXAMPLES, scaffold
    >>> sorted(EXAMPLES)
    ['breast_cancer', 'churn']
"""

from __future__ import annotations

import json
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path
from typing import Any

from tessera.config.errors import did_you_mean
from tessera.errors import UsageError

__all__ = ["EXAMPLES", "Example", "describe", "scaffold", "summary"]

GITIGNORE = """\
# Tessera's local state: artifact cache, metadata, run records.
.tessera/
__pycache__/
"""
_SKIP = {"__pycache__", ".DS_Store"}
#: Words YAML reads as booleans or null: a project with such a name gets it quoted.
_YAML_WORDS = {"true", "false", "yes", "no", "on", "off", "null", "y", "n"}


def _write_churn_data(root: Path) -> list[Path]:
    from tessera.examples.churn_data import write_events

    return [write_events(root / "data" / "raw" / "events.csv")]


def _write_breast_cancer_data(root: Path) -> list[Path]:
    from tessera.examples.breast_cancer_data import write_table

    try:
        return [write_table(root / "data" / "raw" / "breast_cancer.csv")]
    except ModuleNotFoundError as exc:
        raise UsageError(str(exc)) from exc


@dataclass(frozen=True)
class Example:
    """A project template and what to tell the user about it.

    Attributes:
        name: the name given to ``tessera init --example``.
        description: one line.
        template: directory under ``templates/`` copied into the new project.
        data: data files (relative to the project) written at scaffold time.
        next_steps: commands worth running next, from inside the project.
        write_data: writes ``data`` into the project root; None when there is no data.
    """

    name: str
    description: str
    template: str
    data: tuple[str, ...] = ()
    next_steps: tuple[str, ...] = ()
    write_data: Callable[[Path], list[Path]] | None = None


EMPTY = Example(
    name="empty",
    description="An empty project: commented tessera.yaml and pipeline.yaml, transforms/, params/.",
    template="empty",
    next_steps=("tessera run",),
)

_CATALOG: dict[str, Example] = {
    "churn": Example(
        name="churn",
        description=(
            "Customer churn: clean a dirty 60k-row activity log, build per-customer lag, rolling "
            "and history features, split and write train/test tables."
        ),
        template="churn",
        data=("data/raw/events.csv",),
        next_steps=("tessera run", "tessera run --env small", "tessera status", "tessera dag"),
        write_data=_write_churn_data,
    ),
    "breast_cancer": Example(
        name="breast_cancer",
        description=(
            "Breast cancer diagnosis (scikit-learn's Wisconsin dataset): a feature pipeline made "
            "only of built-in transformations and YAML."
        ),
        template="breast_cancer",
        data=("data/raw/breast_cancer.csv",),
        next_steps=("tessera run", "tessera dag"),
        write_data=_write_breast_cancer_data,
    ),
}

#: The examples ``tessera init --example NAME`` knows: name -> one-line description.
EXAMPLES: dict[str, str] = {name: ex.description for name, ex in _CATALOG.items()}


def describe(example: str | None) -> Example:
    """The template called ``example`` (None: the empty project).

    Raises:
        UsageError: no example has that name (the message suggests the closest one).
    """
    if example is None:
        return EMPTY
    found = _CATALOG.get(example)
    if found is None:
        hint = did_you_mean(example, _CATALOG)
        raise UsageError(
            f"unknown example '{example}'"
            + (f" ({hint})" if hint else "")
            + f"; available examples: {', '.join(sorted(_CATALOG))}"
        )
    return found


def scaffold(target: Path, example: str | None = None) -> list[Path]:
    """Create a project in ``target``: the empty project, or the example called ``example``.

    Args:
        target: the project directory; it must not exist or be empty.
        example: an example name from ``EXAMPLES``, or None for an empty project.

    Returns:
        Every file (and empty directory) created, sorted.

    Raises:
        UsageError: ``target`` is a file or a non-empty directory, or the example is unknown.
    """
    spec = describe(example)
    target = Path(target)
    if target.exists() and not target.is_dir():
        raise UsageError(f"cannot create a project in '{target}': it is a file")
    if target.is_dir() and any(target.iterdir()):
        raise UsageError(
            f"cannot create a project in '{target}': the directory is not empty "
            "(choose a new directory, or empty this one)"
        )
    existed = target.exists()
    try:
        created = _create(target, spec)
    except OSError as exc:
        _undo(target, existed)
        raise UsageError(f"cannot create a project in '{target}': {exc.strerror or exc}") from None
    except BaseException:
        _undo(target, existed)
        raise
    return sorted(created)


def _create(target: Path, spec: Example) -> list[Path]:
    target.mkdir(parents=True, exist_ok=True)
    created = _copy_tree(resources.files(__name__) / "templates" / spec.template, target)
    project_file = target / "tessera.yaml"
    project_file.write_text(
        _set_name(project_file.read_text(encoding="utf-8"), target.resolve().name),
        encoding="utf-8",
    )
    gitignore = target / ".gitignore"
    gitignore.write_text(GITIGNORE, encoding="utf-8")
    created.append(gitignore)
    for directory in ("params", "data"):
        path = target / directory
        if not path.exists():
            path.mkdir()
            created.append(path)
    if spec.write_data is not None:
        created += spec.write_data(target)
    return created


def _copy_tree(source: Traversable, dest: Path) -> list[Path]:
    created: list[Path] = []
    for entry in sorted(source.iterdir(), key=lambda e: e.name):
        if entry.name in _SKIP or entry.name.endswith(".pyc"):
            continue
        path = dest / entry.name
        if entry.is_dir():
            path.mkdir(exist_ok=True)
            created += _copy_tree(entry, path)
        else:
            path.write_bytes(entry.read_bytes())
            created.append(path)
    return created


def _set_name(text: str, name: str) -> str:
    """Set the ``name:`` of a template's tessera.yaml, quoting it when YAML needs it."""
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_.-]*", name) and name.lower() not in _YAML_WORDS
    value = name if plain else json.dumps(name)
    return re.sub(r"^name: .*$", lambda _: f"name: {value}", text, count=1, flags=re.MULTILINE)


def _undo(target: Path, existed: bool) -> None:
    """Remove what a failed scaffold created, leaving ``target`` as it was."""
    if not target.is_dir():
        return
    if not existed:
        shutil.rmtree(target, ignore_errors=True)
        return
    for child in target.iterdir():
        if child.is_dir() and not child.is_symlink():
            shutil.rmtree(child, ignore_errors=True)
        else:
            child.unlink(missing_ok=True)


def summary(target: Path, example: str | None = None) -> dict[str, Any]:
    """What ``tessera init`` reports (JSON-able): the project, its example and what to do next."""
    spec = describe(example)
    return {
        "project": str(target),
        "name": Path(target).resolve().name,
        "example": spec.name if example is not None else None,
        "description": spec.description,
        "data": list(spec.data),
        "next_steps": [f"cd {target}", *spec.next_steps],
    }
