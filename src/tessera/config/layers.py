"""Layered parameters: each layer may come from a different file; we remember who set what.

Precedence (lowest first): project defaults < pipeline ``with:`` < params file < environment
overlay < command-line overrides. Mappings merge key by key; any other value (lists included)
is replaced whole by the higher layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from tessera.config.errors import ConfigError, Problem
from tessera.config.yaml_io import KeyPath, parse_scalar


@dataclass(frozen=True)
class Provenance:
    """Where a value was written: a file and line, and the layer's name."""

    layer: str
    file: str | None = None
    line: int | None = None


@dataclass
class Layer:
    """One layer of parameters for one stage.

    Attributes:
        name: the layer's role ("project defaults", "pipeline", "params file", ...).
        data: the parameters (a mapping).
        file: the file they came from.
        lines: line of each key path in ``data`` (relative to ``data``).
        line: line of the layer as a whole (where the mapping starts).
    """

    name: str
    data: dict[str, Any]
    file: str | None = None
    lines: dict[KeyPath, int] = field(default_factory=dict)
    line: int | None = None


def _walk(data: Any, prefix: KeyPath) -> list[KeyPath]:
    paths: list[KeyPath] = []
    if isinstance(data, dict):
        for key, value in data.items():
            path = (*prefix, key)
            paths.append(path)
            paths.extend(_walk(value, path))
    return paths


def _merge(base: dict[str, Any], top: dict[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in top.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def merge_layers(layers: list[Layer]) -> tuple[dict[str, Any], dict[KeyPath, Provenance]]:
    """Merge ``layers`` (lowest precedence first) and report where each key path came from."""
    merged: dict[str, Any] = {}
    prov: dict[KeyPath, Provenance] = {}
    for layer in layers:
        merged = _merge(merged, layer.data)
        prov[()] = Provenance(layer.name, layer.file, layer.line)
        for path in _walk(layer.data, ()):
            # A replaced mapping drops whatever lower layers said inside it.
            for stale in [p for p in prov if len(p) > len(path) and p[: len(path)] == path]:
                if not isinstance(_get(layer.data, path), dict):
                    del prov[stale]
            prov[path] = Provenance(layer.name, layer.file, layer.lines.get(path, layer.line))
    return merged, prov


def _get(data: Any, path: KeyPath) -> Any:
    for key in path:
        data = data[key]
    return data


def locate(prov: dict[KeyPath, Provenance], path: KeyPath) -> Provenance | None:
    """Provenance of the deepest recorded prefix of ``path``."""
    for n in range(len(path), -1, -1):
        found = prov.get(path[:n])
        if found is not None:
            return found
    return None


def parse_override(text: str) -> tuple[str, list[str], Any]:
    """Parse ``STAGE.KEY[.SUBKEY]=VALUE``; the value is read as YAML (``0.3``, ``[a, b]``).

    Raises:
        ConfigError: when the override is not of that form.
    """
    target, sep, raw = text.partition("=")
    parts = target.strip().split(".")
    if not sep or len(parts) < 2 or not all(parts):
        raise ConfigError(
            Problem(
                "malformed override",
                file="command line",
                key=text,
                expected="STAGE.KEY=VALUE (for example -o split.test_size=0.3)",
                got=repr(text),
            )
        )
    return parts[0], parts[1:], parse_scalar(raw)


def nest(path: list[str], value: Any) -> dict[str, Any]:
    """``["a", "b"], 1`` -> ``{"a": {"b": 1}}``."""
    out: Any = value
    for key in reversed(path):
        out = {key: out}
    return dict(out)
