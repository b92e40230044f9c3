"""Validate data against a pydantic model, turning every error into a located ``Problem``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError

from tessera.config.errors import Problem, describe, did_you_mean
from tessera.config.yaml_io import KeyPath

M = TypeVar("M", bound=BaseModel)

#: Maps a key path (relative to the validated data) to (file, line).
Locator = Callable[[KeyPath], tuple[str | None, int | None]]


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Field names (and aliases) of the (sub)model that ``loc`` points into."""
    current: Any = model
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            break
        ann = field.annotation
        current = ann if isinstance(ann, type) and issubclass(ann, BaseModel) else None
    if current is None or not hasattr(current, "model_fields"):
        return []
    names: list[str] = []
    for name, f in current.model_fields.items():
        names.append(f.alias or name)
    return names


def validate_model(
    model: type[M],
    data: Any,
    *,
    locate: Locator,
    stage: str | None = None,
    prefix: str = "",
) -> tuple[M | None, list[Problem]]:
    """Validate ``data`` with ``model``; never raises for bad data.

    Returns:
        The instance (or None) and the list of problems, each naming file, line, stage and key.
    """
    try:
        return model.model_validate(data), []
    except ValidationError as exc:
        problems: list[Problem] = []
        for err in exc.errors(include_url=False):
            loc = tuple(p for p in err["loc"] if not (isinstance(p, str) and "[" in p))
            key = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(loc))
            file, line = locate(loc)
            kind = err["type"]
            if kind == "missing":
                problems.append(
                    Problem(
                        "missing required key",
                        file,
                        line,
                        stage,
                        key or None,
                        expected=_expected(model, loc),
                    )
                )
            elif kind == "extra_forbidden":
                name = str(loc[-1]) if loc else ""
                problems.append(
                    Problem(
                        "unknown key",
                        file,
                        line,
                        stage,
                        key or None,
                        hint=did_you_mean(name, _field_names(model, loc[:-1]))
                        or _known(_field_names(model, loc[:-1])),
                    )
                )
            else:
                problems.append(
                    Problem(
                        "invalid value",
                        file,
                        line,
                        stage,
                        key or None,
                        expected=_lower_first(err["msg"]),
                        got=describe(err.get("input")),
                    )
                )
        return None, problems


def _lower_first(text: str) -> str:
    text = text.removeprefix("Input should be ").removeprefix("Value error, ")
    return text[:1].lower() + text[1:]


def _known(names: list[str]) -> str | None:
    return f"known keys: {', '.join(names)}" if names else None


def _expected(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    current: Any = model
    field = None
    for part in loc:
        field = getattr(current, "model_fields", {}).get(part)
        if field is None:
            return None
        current = field.annotation
    if field is None:
        return None
    ann = field.annotation
    return getattr(ann, "__name__", None) or str(ann).replace("typing.", "")
