"""Custom checks: plain functions registered by name, found by introspection.

A check is a function of a column (a pandas Series) or of the whole table (a DataFrame), with at
most one parameter annotated with a pydantic model for its ``params``::

    class Positive(BaseModel):
        strict: bool = True

    @check
    def positive(series: pd.Series, cfg: Positive) -> pd.Series:
        return series > 0 if cfg.strict else series >= 0

    @check(level="table")
    def ordered_dates(df: pd.DataFrame) -> pd.Series:
        return df["start"] <= df["end"]

It returns a boolean Series (True where a value or row passes) or a single bool. A column check
receives the column without its missing values (``nullable`` decides about those).

``collect_checks`` finds marked functions in Tessera's built-ins, in the project's modules already
imported under the ``transforms`` package, and in installed packages' entry points (group
``tessera.checks``). This module stays light: no pandas at import.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import inspect
import sys
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Literal, TypeVar, overload

from pydantic import BaseModel

from tessera.config.errors import ConfigError, Problem, did_you_mean
from tessera.pipeline.errors import TransformationDefinitionError
from tessera.pipeline.signature import origin, resolved_hints

F = TypeVar("F", bound=Callable[..., Any])
Level = Literal["column", "table"]

MARK = "__tessera_check__"
ENTRY_POINT_GROUP = "tessera.checks"
BUILTIN_MODULE = "tessera.validation.builtin_checks"
#: The package name the project's transformation files are imported under.
PROJECT_PACKAGE = "transforms"


class CheckDefinitionError(TransformationDefinitionError):
    """A function decorated with ``@check`` has an unusable signature."""


@dataclass(frozen=True)
class CheckDef:
    """A registered check and what its signature says about it."""

    name: str
    func: Callable[..., Any]
    level: Level
    config_model: type[BaseModel] | None
    config_param: str | None
    data_param: str
    doc: str = ""
    origin: str = field(default="")

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    def call(self, data: Any, config: BaseModel | None) -> Any:
        """Run the check on a Series (column check) or a DataFrame (table check)."""
        kwargs: dict[str, Any] = {self.data_param: data}
        if self.config_param is not None:
            kwargs[self.config_param] = config
        return self.func(**kwargs)


@overload
def check(func: F) -> F: ...
@overload
def check(
    func: None = None, *, name: str | None = None, level: Level | None = None
) -> Callable[[F], F]: ...


def check(
    func: F | None = None, *, name: str | None = None, level: Level | None = None
) -> F | Callable[[F], F]:
    """Mark a function as a validation check that schemas can use by name.

    Args:
        func: the function (when used as ``@check`` without arguments).
        name: the name schemas use in ``checks: [{name: ...}]`` (default: the function's name).
        level: ``"column"`` (the function takes a Series) or ``"table"`` (it takes the whole
            DataFrame). Default: ``"table"`` when the first parameter is annotated as a
            DataFrame, else ``"column"``.

    Raises:
        CheckDefinitionError: the signature cannot be used (no data parameter, two config
            parameters, a config annotation that is not a pydantic model, ...).
    """
    if level is not None and level not in ("column", "table"):
        raise CheckDefinitionError(f"@check level must be 'column' or 'table', got {level!r}")

    def mark(fn: F) -> F:
        setattr(fn, MARK, _describe(fn, name, level))
        return fn

    return mark(func) if func is not None else mark


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """``Cfg`` for ``Cfg`` or ``Cfg | None``; None when no pydantic model is annotated."""
    candidates = [annotation, *typing.get_args(annotation)]
    for tp in candidates:
        if isinstance(tp, type) and issubclass(tp, BaseModel):
            return tp
    return None


def _is_frame(annotation: Any) -> bool:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return str(text).split(".")[-1].split("[")[0] == "DataFrame"


def _describe(fn: Callable[..., Any], name: str | None, level: Level | None) -> CheckDef:
    where = origin(fn)
    if not callable(fn) or not hasattr(fn, "__code__"):
        raise CheckDefinitionError(f"@check needs a plain function ({where})")
    label = getattr(fn, "__name__", "?")
    hints = resolved_hints(fn)
    data_param: str | None = None
    config_param: str | None = None
    config_model: type[BaseModel] | None = None
    for p in inspect.signature(fn).parameters.values():
        model = _model_of(hints.get(p.name))
        if model is not None:
            if config_param is not None:
                raise CheckDefinitionError(
                    f"check '{label}' ({where}) has two config parameters, '{config_param}' "
                    f"and '{p.name}'; merge them into one pydantic model"
                )
            config_param, config_model = p.name, model
        elif p.kind in (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD):
            raise CheckDefinitionError(
                f"check '{label}' ({where}) cannot take *{p.name} or **{p.name}; it takes the "
                "data and, optionally, a pydantic config model"
            )
        elif data_param is None and p.kind is not inspect.Parameter.KEYWORD_ONLY:
            data_param = p.name
        elif p.default is inspect.Parameter.empty:
            raise CheckDefinitionError(
                f"check '{label}' ({where}): parameter '{p.name}' is neither the data nor the "
                "config; put parameters in a pydantic config model"
            )
    if data_param is None:
        raise CheckDefinitionError(
            f"check '{label}' ({where}) needs a parameter for the data (a Series or DataFrame)"
        )
    if level is None:
        level = "table" if _is_frame(hints.get(data_param, "")) else "column"
    return CheckDef(
        name=name or label,
        func=fn,
        level=level,
        config_model=config_model,
        config_param=config_param,
        data_param=data_param,
        doc=inspect.getdoc(fn) or "",
        origin=where,
    )


def checks_in(module: ModuleType) -> list[CheckDef]:
    """The checks defined (or imported) at the top level of ``module``."""
    found = []
    for value in list(vars(module).values()):
        c = getattr(value, MARK, None)
        if isinstance(c, CheckDef):
            found.append(c)
    return found


@dataclass
class CheckRegistry:
    """Every check a schema can use, by name."""

    checks: dict[str, CheckDef] = field(default_factory=dict)

    def get(self, name: str) -> CheckDef | None:
        return self.checks.get(name)

    def suggest(self, name: str) -> str | None:
        return did_you_mean(name, self.checks)

    def names(self, level: Level | None = None) -> list[str]:
        return sorted(n for n, c in self.checks.items() if level is None or c.level == level)

    def add(self, c: CheckDef, problems: list[Problem]) -> None:
        other = self.checks.get(c.name)
        if other is not None and other.func is not c.func:
            problems.append(
                Problem(
                    f"check '{c.name}' is defined twice: {other.origin} and {c.origin}",
                    hint="rename one, or give it another name with @check(name=...)",
                )
            )
            return
        self.checks[c.name] = c


def _project_modules() -> list[ModuleType]:
    """The project's modules already imported (``transforms`` and ``transforms.*``)."""
    names = sorted(
        m for m in list(sys.modules) if m == PROJECT_PACKAGE or m.startswith(PROJECT_PACKAGE + ".")
    )
    return [m for m in (sys.modules.get(n) for n in names) if isinstance(m, ModuleType)]


def collect_checks(extra: Iterable[ModuleType] = ()) -> CheckRegistry:
    """Build the check registry: built-ins, project modules already imported, entry points.

    The project's ``transforms/*.py`` files are imported by pipeline discovery
    (``tessera.pipeline.registry.discover``); checks defined there are found afterwards.

    Args:
        extra: more modules to scan (tests, embedding applications).

    Raises:
        ConfigError: an entry point failed to import, or two checks share a name.
    """
    registry = CheckRegistry()
    problems: list[Problem] = []
    modules: list[ModuleType] = [importlib.import_module(BUILTIN_MODULE)]
    modules += _project_modules()
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            modules.append(importlib.import_module(ep.module))
        except Exception as exc:
            problems.append(Problem(f"cannot import checks from '{ep.module}': {exc}"))
    modules += list(extra)
    for module in modules:
        for c in checks_in(module):
            registry.add(c, problems)
    if problems:
        raise ConfigError(problems)
    return registry
