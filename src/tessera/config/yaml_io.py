"""YAML loading that remembers the line of every key, for error messages.

Timestamps are deliberately *not* resolved: ``2024-01-31`` stays the string it was written as, and
the pydantic model of the stage decides whether it is a date. That keeps parameters JSON-able and
hashable exactly as written. Booleans follow YAML 1.2 (``true``/``false`` only), so ``on``,
``yes``, ``no`` and ``off`` are strings, as most people expect of a key like ``on:``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from tessera.config.errors import ConfigError, Problem

KeyPath = tuple[str | int, ...]

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


class _Loader(_Base):
    pass


_BOOL = "tag:yaml.org,2002:bool"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag not in ("tag:yaml.org,2002:timestamp", _BOOL)]
    for first, resolvers in _Base.yaml_implicit_resolvers.items()
}
# YAML 1.2 booleans only: `on:`, `yes`, `no` and `off` stay strings (a join's `on:` key!).
_Loader.add_implicit_resolver(
    _BOOL, re.compile(r"^(?:true|True|TRUE|false|False|FALSE)$"), list("tTfF")
)


@dataclass
class YamlDocument:
    """Parsed YAML plus the 1-based line where each key path was written."""

    path: str
    data: Any
    lines: dict[KeyPath, int] = field(default_factory=dict)

    def line_of(self, keypath: KeyPath) -> int | None:
        """Line of the deepest written prefix of ``keypath``."""
        for n in range(len(keypath), -1, -1):
            line = self.lines.get(keypath[:n])
            if line is not None:
                return line
        return None


def _collect_lines(
    node: yaml.Node, prefix: KeyPath, out: dict[KeyPath, int], dupes: list[tuple[KeyPath, int]]
) -> None:
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            key = key_node.value if isinstance(key_node, yaml.ScalarNode) else str(key_node)
            path = (*prefix, key)
            if path in out:  # YAML would silently keep the last one: a stage, a rule lost
                dupes.append((path, key_node.start_mark.line + 1))
            out[path] = key_node.start_mark.line + 1
            _collect_lines(value_node, path, out, dupes)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            path = (*prefix, i)
            out[path] = item.start_mark.line + 1
            _collect_lines(item, path, out, dupes)


def parse_yaml(text: str, path: str = "<string>") -> YamlDocument:
    """Parse YAML text; a syntax error becomes a ``ConfigError`` naming file and line."""
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        data = loader.construct_document(node) if node is not None else None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise ConfigError(
            Problem(
                f"invalid YAML: {exc.problem or exc}",
                file=path,
                line=mark.line + 1 if mark else None,
            )
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(Problem(f"invalid YAML: {exc}", file=path)) from None
    finally:
        loader.dispose()
    lines: dict[KeyPath, int] = {(): 1}
    dupes: list[tuple[KeyPath, int]] = []
    if node is not None:
        _collect_lines(node, (), lines, dupes)
    if dupes:
        raise ConfigError(
            [
                Problem(
                    "duplicate key (YAML would keep only the last one)",
                    path,
                    line,
                    key=".".join(str(k) for k in keypath),
                    hint="rename or merge them",
                )
                for keypath, line in dupes
            ]
        )
    return YamlDocument(path=path, data=data, lines=lines)


def load_yaml(path: Path, display: str | None = None) -> YamlDocument:
    """Load a YAML file. ``display`` is the name used in messages (default: ``path``)."""
    name = display or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(Problem("file not found", file=name)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(Problem(f"cannot read file: {exc}", file=name)) from None
    return parse_yaml(text, name)


def parse_scalar(text: str) -> Any:
    """Parse a command-line value the way YAML would (``3`` -> 3, ``[a, b]`` -> list)."""
    try:
        return parse_yaml(text).data
    except ConfigError:
        return text
