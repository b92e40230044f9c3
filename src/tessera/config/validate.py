"""Validate data against a pydantic model, turning every error into a located ``Problem``."""

from __future__ import annotations

import re
import types
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, TypeVar, Union, get_args, get_origin

from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from tessera.config.errors import ConfigError, Problem, describe, did_you_mean
from tessera.config.yaml_io import KeyPath, YamlDocument, load_yaml

M = TypeVar("M", bound=BaseModel)

#: Maps a key path (relative to the validated data) to (file, line).
Locator = Callable[[KeyPath], tuple[str | None, int | None]]

_MISSING = object()
#: Module qualifiers in a type's text ("typing.", "my.module."), outside quoted literals.
_QUALIFIED = re.compile(r"(?<![\w.'\"])(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])")


# --- walking the model's types along a key path -------------------------------------------


def _members(tp: Any) -> list[Any]:
    """``tp`` with ``Annotated``, ``Optional`` and unions unwrapped into their members."""
    origin = get_origin(tp)
    if origin is Annotated:
        return _members(get_args(tp)[0])
    if origin is Union or origin is types.UnionType:
        return [m for arg in get_args(tp) if arg is not type(None) for m in _members(arg)]
    return [tp]


def _is_model(tp: Any) -> bool:
    return isinstance(tp, type) and not get_args(tp) and issubclass(tp, BaseModel)


def _keys_of(name: str, field: Any) -> list[str]:
    """The keys a field may be written under: its validation alias, alias and name."""
    keys = [a for a in (field.validation_alias, field.alias) if isinstance(a, str)]
    return [*keys, name]


def _field(model: type[BaseModel], part: Any) -> Any:
    for name, field in model.model_fields.items():
        if part in _keys_of(name, field):
            return field
    return None


def _step(tp: Any, part: Any) -> list[Any]:
    """The types found one step (``part``) below ``tp``; empty when ``part`` leads nowhere."""
    if _is_model(tp):
        field = _field(tp, part)
        return [] if field is None else [field.annotation]
    origin, args = get_origin(tp), get_args(tp)
    if not isinstance(origin, type):
        return []
    if issubclass(origin, Mapping):
        return [args[1]] if len(args) == 2 else []
    if issubclass(origin, tuple) and isinstance(part, int):
        if len(args) == 2 and args[1] is Ellipsis:
            return [args[0]]
        return [args[part]] if 0 <= part < len(args) else []
    if issubclass(origin, (Sequence, set, frozenset)) and not issubclass(origin, str):
        return list(args[:1]) if isinstance(part, int) else []
    return []


def _types_at(model: type[BaseModel], loc: tuple[Any, ...]) -> list[Any]:
    """Every type ``loc`` may point at inside ``model`` (several when a union is crossed)."""
    current: list[Any] = [model]
    for part in loc:
        current = [t for tp in current for m in _members(tp) for t in _step(m, part)]
    return [m for tp in current for m in _members(tp)]


def _field_names(model: type[BaseModel], loc: tuple[Any, ...]) -> list[str]:
    """Keys (aliases where set) of the (sub)model(s) that ``loc`` points into.

    ``loc`` may cross nested models, ``dict[str, Model]`` values, ``list[Model]`` / tuple items and
    ``Optional`` / union members.
    """
    names: list[str] = []
    for tp in _types_at(model, loc):
        if _is_model(tp):
            for name, field in tp.model_fields.items():
                key = _keys_of(name, field)[0]
                if key not in names:
                    names.append(key)
    return names


def _expected(model: type[BaseModel], loc: tuple[Any, ...]) -> str | None:
    """The declared type of the field ``loc`` names, for "missing required key" problems."""
    if not loc:
        return None
    seen: list[str] = []
    for tp in _types_at(model, loc[:-1]):
        field = _field(tp, loc[-1]) if _is_model(tp) else None
        if field is None:
            continue
        ann = field.annotation
        text = (
            ann.__name__
            if isinstance(ann, type) and not get_args(ann)
            else _QUALIFIED.sub("", str(ann))
        )
        if text not in seen:
            seen.append(text)
    return " or ".join(seen) or None


# --- mapping pydantic's locations back onto the input data ----------------------------------


def _data_loc(data: Any, loc: tuple[Any, ...], missing: bool) -> tuple[tuple[Any, ...], int | None]:
    """``loc`` without the segments that are not in the input data (union-member tags).

    Returns the cleaned path and the length of the path where the first segment was dropped
    (the union the error came through), or None when nothing was dropped. For a missing key,
    the last segment is the key itself and is always kept.
    """
    kept: list[Any] = []
    union_at: int | None = None
    current = data
    for i, part in enumerate(loc):
        child = _child(current, part)
        if child is _MISSING and not (missing and i == len(loc) - 1):
            if union_at is None and part != "[key]":
                union_at = len(kept)
            continue
        current = child
        kept.append(part)
    return tuple(kept), union_at


def _child(value: Any, part: Any) -> Any:
    """``value[part]`` when ``part`` is a key of a mapping or an index of a list, else _MISSING."""
    if isinstance(value, Mapping):
        return value.get(part, _MISSING)
    if isinstance(value, Sequence) and not isinstance(value, str | bytes):
        return value[part] if isinstance(part, int) and 0 <= part < len(value) else _MISSING
    return _MISSING


def _prune(
    errors: list[tuple[ErrorDetails, tuple[Any, ...], int | None]],
) -> list[tuple[ErrorDetails, tuple[Any, ...], int | None]]:
    """Drop the union members' errors that stop at the union when another member got further.

    ``int | list[int]`` given ``[1, "x"]`` fails as "not an integer" at the union and as "item 1 is
    not an integer" inside the list: only the latter is the user's mistake.
    """
    deeper = {loc[:at] for _, loc, at in errors if at is not None and len(loc) > at}
    return [e for e in errors if not (e[2] is not None and len(e[1]) == e[2] and e[1] in deeper)]


def _short(expected: str) -> str:
    """An expectation trimmed for joining with others: no "unable to parse..." or "instance of"."""
    expected = re.sub(r", (unable to|got) .*$", "", expected)
    return re.sub(r" or instance of \w+$", "", expected)


def validate_model(
    model: type[M],
    data: Any,
    *,
    locate: Locator,
    stage: str | None = None,
    prefix: str = "",
    context: dict[str, Any] | None = None,
) -> tuple[M | None, list[Problem]]:
    """Validate ``data`` with ``model``; never raises for bad data.

    One mistake makes one problem: pydantic's per-union-member errors about the same key are
    merged (their expectations joined with "or").

    Returns:
        The instance (or None) and the list of problems, each naming file, line, stage and key.
    """
    try:
        return model.model_validate(data, context=context), []
    except ValidationError as exc:
        errors = [
            (err, *_data_loc(data, tuple(err["loc"]), err["type"] == "missing"))
            for err in exc.errors(include_url=False)
        ]
        groups: dict[tuple[str, tuple[Any, ...]], list[ErrorDetails]] = {}
        for err, loc, _ in _prune(errors):
            kind = err["type"] if err["type"] in ("missing", "extra_forbidden") else "invalid"
            if "[key]" in err["loc"]:  # a mapping's key is wrong, not its value
                kind = "invalid key"
            groups.setdefault((kind, loc), []).append(err)
        problems = [
            _problem(model, kind, loc, errs, locate=locate, stage=stage, prefix=prefix)
            for (kind, loc), errs in groups.items()
        ]
        return None, problems


def _problem(
    model: type[BaseModel],
    kind: str,
    loc: tuple[Any, ...],
    errs: list[ErrorDetails],
    *,
    locate: Locator,
    stage: str | None,
    prefix: str,
) -> Problem:
    key = ".".join(str(p) for p in (prefix.split(".") if prefix else []) + list(loc)) or None
    file, line = locate(loc)
    if kind == "missing":
        return Problem(
            "missing required key", file, line, stage, key, expected=_expected(model, loc)
        )
    if kind == "extra_forbidden":
        names = _field_names(model, loc[:-1])
        name = str(loc[-1]) if loc else ""
        return Problem(
            "unknown key",
            file,
            line,
            stage,
            key,
            hint=did_you_mean(name, names) or _known(names),
        )
    expected = [_lower_first(err["msg"]) for err in errs]
    if len(expected) > 1:
        expected = [_short(e) for e in expected]
    distinct = list(dict.fromkeys(expected))
    return Problem(
        "invalid key" if kind == "invalid key" else "invalid value",
        file,
        line,
        stage,
        key,
        expected=" or ".join(distinct),
        got=describe(errs[0].get("input")),
    )


def _lower_first(text: str) -> str:
    text = text.removeprefix("Input should be ").removeprefix("Value error, ")
    return text[:1].lower() + text[1:]


def _known(names: list[str]) -> str | None:
    return f"known keys: {', '.join(names)}" if names else None


def load_model_file(path: Path, display: str, model: type[M]) -> tuple[M, YamlDocument]:
    """A YAML file holding one mapping, validated into ``model`` (``tessera.yaml``,
    ``serving.yaml``...), with the document it came from.

    Raises:
        ConfigError: invalid YAML, not a mapping, or values that do not fit ``model``; every
            problem with ``display`` and its line.
    """
    doc = load_yaml(path, display)
    data = doc.data if doc.data is not None else {}
    if not isinstance(data, dict):
        raise ConfigError(
            Problem("the file must be a mapping", display, 1, got=type(data).__name__)
        )
    config, problems = validate_model(
        model, data, locate=lambda keypath: (display, doc.line_of(keypath))
    )
    if config is None:
        raise ConfigError(problems)
    return config, doc
