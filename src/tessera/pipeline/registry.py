"""Transformations: plain typed functions, found by introspection.

A transformation is a function whose DataFrame parameters are its inputs and whose (at most one)
parameter annotated with a pydantic model is its config::

    class LagColumns(BaseModel):
        columns: list[str]
        periods: int = 1

    @transformation
    def lag_columns(df: pd.DataFrame, cfg: LagColumns) -> pd.DataFrame: ...

The decorator only marks the function (it is returned unchanged, so it stays callable in tests).
``discover`` finds marked functions in Tessera's built-ins, in installed packages' entry points
(group ``tessera.transformations``) and in the project's ``transforms/*.py``. There is no
hand-kept list to edit.
"""

from __future__ import annotations

import importlib
import importlib.machinery
import importlib.metadata
import importlib.util
import inspect
import sys
import typing
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path
from types import ModuleType
from typing import Annotated, Any, TypeVar, overload

from pydantic import BaseModel

from tessera.config.errors import ConfigError, Problem, did_you_mean
from tessera.pipeline.errors import PipelineError, StageFailedError, TransformationDefinitionError
from tessera.pipeline.signature import origin, resolved_hints

F = TypeVar("F", bound=Callable[..., Any])

MARK = "__tessera_transformation__"
ENTRY_POINT_GROUP = "tessera.transformations"
BUILTIN_MODULE = "tessera.transforms"
#: The name of the only output of a single-output transformation (``stage`` == ``stage.out``).
DEFAULT_OUTPUT = "out"


@dataclass(frozen=True)
class PathRole:
    """Marks a config field as a file the stage reads (``input``) or writes (``output``)."""

    role: str


#: A config field holding a path the stage reads: its content is part of the cache key.
InputPath = Annotated[str, PathRole("input")]
#: A config field holding a path the stage writes: the stage is stale when it is missing.
OutputPath = Annotated[str, PathRole("output")]


class NoConfig(BaseModel):
    """Config of a transformation that takes no parameters."""

    model_config = {"extra": "forbid"}


@dataclass(frozen=True)
class Transformation:
    """A discovered transformation and what its signature says about it."""

    name: str
    func: Callable[..., Any]
    config_model: type[BaseModel]
    config_param: str | None
    inputs: tuple[str, ...]
    variadic: str | None
    outputs: tuple[str, ...]
    libraries: tuple[str, ...]
    doc: str = ""
    origin: str = field(default="")
    #: More code the result depends on that the function's body does not name (plugins looked
    #: up by name at run time, say); called when the stage is resolved, hashed with the function.
    extra_code: Callable[[], Iterable[Any]] | None = None

    @property
    def summary(self) -> str:
        return self.doc.strip().splitlines()[0] if self.doc.strip() else ""

    def min_inputs(self) -> int:
        """Fewest tables it takes (a ``*frames`` parameter wants at least one)."""
        return max(len(self.inputs), 1) if self.variadic else len(self.inputs)

    def accepts(self, n_inputs: int) -> bool:
        """Whether ``n_inputs`` DataFrames can be passed to this transformation."""
        if self.variadic:
            return n_inputs >= self.min_inputs()
        return n_inputs == len(self.inputs)

    def arity(self) -> str:
        return f"at least {self.min_inputs()}" if self.variadic else str(len(self.inputs))

    def call(self, frames: list[Any], config: BaseModel) -> dict[str, Any]:
        """Run the function and return its outputs by name."""
        kwargs: dict[str, Any] = {self.config_param: config} if self.config_param else {}
        if self.variadic:
            result = self.func(*frames, **kwargs)
        else:  # by name, so the config may come first in the signature
            result = self.func(**dict(zip(self.inputs, frames, strict=True)), **kwargs)
        return self._outputs(result)

    def _outputs(self, result: Any) -> dict[str, Any]:
        if not self.outputs:
            if result is not None:
                raise StageFailedError(
                    f"transformation '{self.name}' declares no outputs but returned "
                    f"{type(result).__name__}"
                )
            return {}
        if self.outputs == (DEFAULT_OUTPUT,):
            return {DEFAULT_OUTPUT: result}
        if isinstance(result, dict):
            if set(result) != set(self.outputs):
                raise StageFailedError(
                    f"transformation '{self.name}' must return outputs {list(self.outputs)}, "
                    f"got {sorted(result)}"
                )
            return {name: result[name] for name in self.outputs}
        if isinstance(result, tuple | list) and len(result) == len(self.outputs):
            return dict(zip(self.outputs, result, strict=True))
        raise StageFailedError(
            f"transformation '{self.name}' must return a dict with keys {list(self.outputs)} "
            f"(or a tuple in that order), got {type(result).__name__}"
        )


@overload
def transformation(func: F) -> F: ...
@overload
def transformation(
    func: None = None,
    *,
    name: str | None = None,
    outputs: Iterable[str] | None = None,
    libraries: Iterable[str] = (),
    code: Callable[[], Iterable[Any]] | None = None,
) -> Callable[[F], F]: ...


def transformation(
    func: F | None = None,
    *,
    name: str | None = None,
    outputs: Iterable[str] | None = None,
    libraries: Iterable[str] = (),
    code: Callable[[], Iterable[Any]] | None = None,
) -> F | Callable[[F], F]:
    """Mark a function as a transformation that stages can use.

    Args:
        func: the function (when used as ``@transformation`` without arguments).
        name: the name stages use in ``uses:`` (default: the function's name).
        outputs: names of its outputs, for a function returning several tables as a dict or a
            tuple; ``()`` for a sink that writes files and returns nothing. Default: one output.
        libraries: distributions whose versions decide its result, added to the cache key
            (pandas, numpy, pyarrow and Tessera are always included).
        code: a function returning more functions or classes whose source decides the result
            though the body does not name them (checks looked up by name, for example).

    Raises:
        TransformationDefinitionError: the signature cannot be used (two config parameters, a
            config annotation that is not a pydantic model, ...).
    """

    def mark(fn: F) -> F:
        setattr(fn, MARK, replace(_describe(fn, name, outputs, tuple(libraries)), extra_code=code))
        return fn

    return mark(func) if func is not None else mark


def _unwrap_optional(annotation: Any) -> Any:
    """``Cfg | None`` -> ``Cfg``; anything else unchanged."""
    args = [a for a in typing.get_args(annotation) if a is not type(None)]
    if len(args) == 1 and type(None) in typing.get_args(annotation):
        return args[0]
    return annotation


def _describe(
    fn: Callable[..., Any],
    name: str | None,
    outputs: Iterable[str] | None,
    libraries: tuple[str, ...],
) -> Transformation:
    where = origin(fn)
    if not callable(fn) or not hasattr(fn, "__code__"):
        raise TransformationDefinitionError(f"@transformation needs a plain function ({where})")
    hints = resolved_hints(fn, include_extras=True)
    config_param: str | None = None
    config_model: type[BaseModel] = NoConfig
    inputs: list[str] = []
    variadic: str | None = None
    for p in inspect.signature(fn).parameters.values():
        ann = _unwrap_optional(hints.get(p.name))
        if isinstance(ann, type) and issubclass(ann, BaseModel):
            if config_param is not None:
                raise TransformationDefinitionError(
                    f"transformation '{fn.__name__}' ({where}) has two config parameters, "
                    f"'{config_param}' and '{p.name}'; merge them into one pydantic model"
                )
            config_param, config_model = p.name, ann
        elif p.kind is inspect.Parameter.VAR_POSITIONAL:
            variadic = p.name
        elif p.kind is inspect.Parameter.VAR_KEYWORD:
            raise TransformationDefinitionError(
                f"transformation '{fn.__name__}' ({where}) cannot take **{p.name}; "
                "put its parameters in a pydantic config model"
            )
        elif p.kind is inspect.Parameter.KEYWORD_ONLY:
            raise TransformationDefinitionError(
                f"transformation '{fn.__name__}' ({where}): keyword-only parameter '{p.name}' "
                "must be the config, annotated with a pydantic model"
            )
        elif p.default is not inspect.Parameter.empty:
            raise TransformationDefinitionError(
                f"transformation '{fn.__name__}' ({where}): parameter '{p.name}' has a default, "
                "so it is not a table; put parameters in the pydantic config model"
            )
        else:
            inputs.append(p.name)
    outs = (DEFAULT_OUTPUT,) if outputs is None else tuple(outputs)
    if len(set(outs)) != len(outs) or any(not o.isidentifier() for o in outs):
        raise TransformationDefinitionError(
            f"transformation '{fn.__name__}' ({where}): outputs must be distinct identifiers, "
            f"got {list(outs)}"
        )
    return Transformation(
        name=name or fn.__name__,
        func=fn,
        config_model=config_model,
        config_param=config_param,
        inputs=tuple(inputs),
        variadic=variadic,
        outputs=outs,
        libraries=libraries,
        doc=inspect.getdoc(fn) or "",
        origin=where,
    )


def transformations_in(module: ModuleType) -> list[Transformation]:
    """The transformations defined (or imported) at the top level of ``module``."""
    found = []
    for value in vars(module).values():
        t = getattr(value, MARK, None)
        if isinstance(t, Transformation):
            found.append(t)
    return found


@dataclass
class Registry:
    """Every transformation a project can use, by name."""

    transformations: dict[str, Transformation] = field(default_factory=dict)
    #: Source files imported to build the registry (project transforms and entry points).
    modules: list[str] = field(default_factory=list)

    def get(self, name: str) -> Transformation | None:
        return self.transformations.get(name)

    def suggest(self, name: str) -> str | None:
        return did_you_mean(name, self.transformations)

    def add(self, t: Transformation, problems: list[Problem]) -> None:
        other = self.transformations.get(t.name)
        if other is not None and other.func is not t.func:
            problems.append(
                Problem(
                    f"transformation '{t.name}' is defined twice: {other.origin} and {t.origin}",
                    hint="rename one, or give it another name with @transformation(name=...)",
                )
            )
            return
        self.transformations[t.name] = t


def _import(module: str) -> ModuleType:
    return importlib.import_module(module)


def _bind_package(name: str, directory: Path) -> None:
    """Make ``import NAME`` mean the project's directory, whatever else is on ``sys.path``.

    Earlier imports under that name (another project, an older state of this one, an unrelated
    package or namespace package called ``transforms``) are forgotten first, so edited files are
    imported afresh and nothing merges with them.
    """
    for mod_name in [m for m in sys.modules if m == name or m.startswith(name + ".")]:
        del sys.modules[mod_name]
    init = directory / "__init__.py"
    spec: importlib.machinery.ModuleSpec | None
    if init.is_file():
        spec = importlib.util.spec_from_file_location(
            name, init, submodule_search_locations=[str(directory)]
        )
    else:
        spec = importlib.machinery.ModuleSpec(name, None, is_package=True)
        spec.submodule_search_locations = [str(directory)]
    if spec is None:  # pragma: no cover - spec_from_file_location succeeds for a .py file
        raise PipelineError(f"cannot import {directory} as package '{name}'")
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    if spec.loader is not None and init.is_file():
        try:
            spec.loader.exec_module(module)
        except BaseException:
            del sys.modules[name]
            raise


def discover(project_root: Path | None = None, transforms_dir: str = "transforms") -> Registry:
    """Build the registry: built-ins, entry points, then the project's ``transforms/*.py``.

    Raises:
        ConfigError: a module failed to import, or two transformations share a name.
    """
    registry = Registry()
    problems: list[Problem] = []
    modules = [BUILTIN_MODULE]
    for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        if ep.module not in modules:  # "pkg.mod" or "pkg.mod:attr": the whole module is scanned
            modules.append(ep.module)
    for module_name in modules:
        try:
            module = _import(module_name)
        except Exception as exc:
            problems.append(Problem(f"cannot import transformations from '{module_name}': {exc}"))
            continue
        for t in transformations_in(module):
            registry.add(t, problems)
    if project_root is not None:
        _discover_project(project_root, transforms_dir, registry, problems)
    if problems:
        raise ConfigError(problems)
    return registry


def _discover_project(
    root: Path, transforms_dir: str, registry: Registry, problems: list[Problem]
) -> None:
    directory = root / transforms_dir
    if not directory.is_dir():
        return
    if not transforms_dir.isidentifier():
        problems.append(
            Problem(
                "the transforms directory must be a valid Python package name",
                "tessera.yaml",
                key="transforms",
                got=repr(transforms_dir),
            )
        )
        return
    if str(root) not in sys.path:
        sys.path.insert(0, str(root))
    importlib.invalidate_caches()
    try:
        _bind_package(transforms_dir, directory)
    except Exception as exc:
        problems.append(
            _import_problem(f"{transforms_dir}/__init__.py", directory / "__init__.py", exc)
        )
        return
    for file in sorted(directory.glob("*.py")):
        if file.name.startswith("_"):
            continue
        rel = f"{transforms_dir}/{file.name}"
        try:
            module = _import(f"{transforms_dir}.{file.stem}")
        except TransformationDefinitionError as exc:
            problems.append(Problem(str(exc), rel))
            continue
        except Exception as exc:
            problems.append(_import_problem(rel, file, exc))
            continue
        registry.modules.append(rel)
        for t in transformations_in(module):
            if getattr(t.func, "__module__", "") == module.__name__:
                registry.add(t, problems)


def _import_problem(rel: str, file: Path, exc: BaseException) -> Problem:
    line = None
    tb = exc.__traceback__
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == str(file):
            line = tb.tb_lineno
        tb = tb.tb_next
    if isinstance(exc, SyntaxError) and exc.filename == str(file):
        line = exc.lineno
    return Problem(f"cannot import: {type(exc).__name__}: {exc}", rel, line)


def require(registry: Registry, name: str) -> Transformation:
    """The transformation called ``name``; a ``PipelineError`` with a suggestion if unknown."""
    t = registry.get(name)
    if t is None:
        hint = registry.suggest(name)
        raise PipelineError(f"unknown transformation '{name}'" + (f" ({hint})" if hint else ""))
    return t
