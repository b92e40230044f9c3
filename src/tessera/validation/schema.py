"""Loading schema files: structure, check names and check params validated up front.

A bad schema is a ``ConfigError`` naming the file, the line and the key path of every problem
(with a "did you mean" for misspelt keys and check names), before any data is looked at.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from tessera.config.errors import ConfigError, Problem, did_you_mean
from tessera.config.validate import validate_model
from tessera.config.yaml_io import KeyPath, YamlDocument, load_yaml, parse_yaml
from tessera.validation.checks import CheckDef, CheckRegistry, Level, collect_checks
from tessera.validation.model import CheckRef, ColumnSpec, SchemaSpec, normalise


@dataclass(frozen=True)
class BoundCheck:
    """A custom check as a schema uses it: the check and its validated params."""

    check: CheckDef
    config: BaseModel | None
    params: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.check.name

    def describe(self) -> str:
        """What the check asks for, for reports: ``name(key=value, ...)`` or its summary."""
        args = ", ".join(f"{k}={v}" for k, v in self.params.items())
        if args:
            return f"{self.name}({args})"
        return self.check.summary.rstrip(".") or self.name


@dataclass(frozen=True)
class Schema:
    """A validated schema, ready to check tables against.

    Attributes:
        name: the name used in messages and reports: the file, as given to ``load_schema``.
        spec: the parsed schema file.
        column_checks: the custom checks of each column, with their params validated.
        table_checks: the custom checks of the whole table.
    """

    name: str
    spec: SchemaSpec
    column_checks: dict[str, tuple[BoundCheck, ...]] = field(default_factory=dict)
    table_checks: tuple[BoundCheck, ...] = ()

    @property
    def columns(self) -> dict[str, ColumnSpec]:
        return self.spec.columns

    def rule_count(self) -> int:
        """How many rules the schema applies (each becomes at most one report row)."""
        n = int(self.spec.rows is not None) + int(self.spec.strict)
        n += int(self.spec.unique is not None) + len(self.table_checks)
        for name, col in self.columns.items():
            n += int(col.required) + int(col.dtype is not None) + int(not col.nullable)
            n += int(col.unique) + int(col.min is not None or col.max is not None)
            n += int(col.isin is not None) + int(col.regex is not None)
            n += len(self.column_checks.get(name, ()))
        return n


def load_schema(
    path: Path | str, display_name: str | None = None, *, checks: CheckRegistry | None = None
) -> Schema:
    """Read and validate a schema file.

    Args:
        path: the YAML file.
        display_name: how messages name the file (default: ``path`` as given).
        checks: the custom checks schemas may use (default: ``collect_checks()``, consulted only
            when the schema uses a custom check).

    Raises:
        ConfigError: the file is missing or not valid YAML, or the schema is wrong; every problem
            is reported with the file, line and key path.
    """
    doc = load_yaml(Path(path), display_name or str(path))
    return schema_from_document(doc, checks)


def parse_schema(
    text: str, name: str = "<schema>", *, checks: CheckRegistry | None = None
) -> Schema:
    """A schema from YAML text (``name`` is the file name used in messages)."""
    return schema_from_document(parse_yaml(text, name), checks)


def schema_from_document(doc: YamlDocument, checks: CheckRegistry | None = None) -> Schema:
    """Validate a parsed schema document; see ``load_schema``."""

    def locate(keypath: KeyPath) -> tuple[str | None, int | None]:
        return doc.path, doc.line_of(keypath)

    data = doc.data
    if data is None:
        raise ConfigError(
            Problem("the schema is empty", doc.path, 1, hint="list the columns under `columns:`")
        )
    if not isinstance(data, dict):
        raise ConfigError(
            Problem("a schema must be a mapping", doc.path, 1, got=type(data).__name__)
        )
    spec, problems = validate_model(SchemaSpec, normalise(data), locate=locate)
    if spec is None:
        raise ConfigError(problems)
    for i, column in enumerate(spec.unique or []):
        if column not in spec.columns:
            problems.append(
                Problem(
                    f"`unique` names column '{column}', which is not under `columns`",
                    doc.path,
                    doc.line_of(("unique", i)),
                    key=f"unique.{i}",
                    hint=did_you_mean(column, spec.columns) or "add it to `columns`",
                )
            )
    binder = _Binder(doc, checks)
    column_checks = {
        name: tuple(
            b
            for i, ref in enumerate(col.checks)
            if (b := binder.bind(ref, "column", ("columns", name, "checks", i))) is not None
        )
        for name, col in spec.columns.items()
    }
    table_checks = tuple(
        b
        for i, ref in enumerate(spec.checks)
        if (b := binder.bind(ref, "table", ("checks", i))) is not None
    )
    problems += binder.problems
    if problems:
        raise ConfigError(problems)
    return Schema(
        name=doc.path,
        spec=spec,
        column_checks={k: v for k, v in column_checks.items() if v},
        table_checks=table_checks,
    )


class _Binder:
    """Looks up check names and validates their params, collecting problems."""

    def __init__(self, doc: YamlDocument, checks: CheckRegistry | None) -> None:
        self.doc = doc
        self._checks = checks
        self.problems: list[Problem] = []

    @property
    def checks(self) -> CheckRegistry:
        if self._checks is None:
            self._checks = collect_checks()
        return self._checks

    def bind(self, ref: CheckRef, level: Level, where: KeyPath) -> BoundCheck | None:
        key = ".".join(str(p) for p in where)
        found = self.checks.get(ref.name)
        if found is None:
            hint = did_you_mean(ref.name, self.checks.names(level)) or did_you_mean(
                ref.name, self.checks.names()
            )
            known = ", ".join(self.checks.names(level))
            self.problems.append(
                Problem(
                    f"unknown check '{ref.name}'",
                    self.doc.path,
                    self.doc.line_of((*where, "name")),
                    key=f"{key}.name",
                    hint=hint or f"{level} checks: {known}",
                )
            )
            return None
        if found.level != level:
            place = "the top-level `checks:`" if found.level == "table" else "a column's `checks:`"
            self.problems.append(
                Problem(
                    f"'{ref.name}' is a {found.level} check",
                    self.doc.path,
                    self.doc.line_of((*where, "name")),
                    key=f"{key}.name",
                    hint=f"list it under {place}",
                )
            )
            return None
        if found.config_model is None:
            if ref.params:
                self.problems.append(
                    Problem(
                        f"check '{ref.name}' takes no params",
                        self.doc.path,
                        self.doc.line_of((*where, "params")),
                        key=f"{key}.params",
                    )
                )
                return None
            return BoundCheck(found, None, {})

        def locate(keypath: KeyPath) -> tuple[str | None, int | None]:
            return self.doc.path, self.doc.line_of((*where, "params", *keypath))

        config, problems = validate_model(
            found.config_model, ref.params, locate=locate, prefix=f"{key}.params"
        )
        self.problems += problems
        return None if config is None else BoundCheck(found, config, dict(ref.params))
