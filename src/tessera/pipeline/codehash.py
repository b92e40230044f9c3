"""The code hash of a transformation: its source and the local code it calls.

Starting from the function, we follow the global names its bytecode loads (including nested
functions, lambdas and comprehensions). Functions, classes and modules that live in *local* code
(the project directory, or Tessera itself) are hashed too, recursively, and so are the constants
that local code reads (``THRESHOLD = 0.5``, a tuple of column names, a compiled regex...) by
value; third-party libraries are represented by their versions in the cache key instead.
Editing a helper in ``transforms/_helpers.py`` therefore invalidates every stage whose
transformation calls it, and nothing else.
"""

from __future__ import annotations

import inspect
import sys
import types
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tessera.data.hashing import hash_bytes

_TESSERA_DIR = str(Path(__file__).resolve().parents[1])


@dataclass
class CodeHash:
    """The hash, and the source files it was computed from (to notice edits cheaply)."""

    digest: str
    files: list[str] = field(default_factory=list)


def _names(code: types.CodeType) -> Iterator[str]:
    yield from code.co_names
    for const in code.co_consts:
        if isinstance(const, types.CodeType):
            yield from _names(const)


class _Hasher:
    def __init__(self, roots: list[str]) -> None:
        self.roots = roots
        self.seen: dict[int, tuple[str, str]] = {}
        self.files: set[str] = set()
        #: Plain values (constants) that local code reads from its globals, by qualified name.
        self.values: dict[str, str] = {}

    def is_local(self, file: str | None) -> bool:
        if not file:
            return False
        path = Path(file).resolve()
        if "site-packages" in path.parts and not path.is_relative_to(_TESSERA_DIR):
            return False
        return any(path.is_relative_to(root) for root in self.roots)

    def visit(self, obj: Any, *, force: bool = False) -> None:
        if id(obj) in self.seen:
            return
        obj = inspect.unwrap(obj) if callable(obj) else obj
        try:
            file = inspect.getsourcefile(obj)
        except TypeError:
            return
        if not file or not (force or self.is_local(file)):
            return
        try:
            source = inspect.getsource(obj)
        except (OSError, TypeError):
            return
        self.files.add(str(Path(file).resolve()))
        self.seen[id(obj)] = (f"{getattr(obj, '__module__', '')}.{obj.__qualname__}", source)
        if isinstance(obj, type):
            for member in vars(obj).values():
                func = member.__func__ if isinstance(member, classmethod | staticmethod) else member
                if inspect.isfunction(func):
                    self._follow(func)
            for base in obj.__mro__[1:]:
                self.visit(base)
        elif inspect.isfunction(obj):
            self._follow(obj)

    def _follow(self, func: types.FunctionType) -> None:
        names = set(_names(func.__code__))
        glb = func.__globals__
        for name in names:
            if name not in glb:
                continue
            value = glb[name]
            if isinstance(value, types.ModuleType):
                if self.is_local(getattr(value, "__file__", None)):
                    self.files.add(str(Path(value.__file__ or "").resolve()))
                    for attr in names:
                        if hasattr(value, attr):
                            self._reach(f"{value.__name__}.{attr}", getattr(value, attr))
            else:
                self._reach(f"{func.__module__}.{name}", value)
        for i, cell in enumerate(func.__closure__ or ()):
            try:
                contents = cell.cell_contents
            except ValueError:
                continue
            self._reach(f"{func.__module__}.{func.__qualname__}.<closure {i}>", contents)

    def _reach(self, qualname: str, value: Any) -> None:
        """Something local code uses: code is visited, a constant is recorded by value."""
        if inspect.isfunction(value) or inspect.isclass(value):
            self.visit(value)
            return
        text = value_repr(value)
        if text is not None:
            self.values[qualname] = text
        elif self.is_local(_module_file(value)):
            self.visit(type(value))  # an instance of a local class: its class's code counts


def _module_file(value: Any) -> str | None:
    module = sys.modules.get(type(value).__module__)
    return getattr(module, "__file__", None)


def value_repr(value: Any, depth: int = 0) -> str | None:
    """A deterministic text for a constant, or None when it has no stable representation.

    Numbers, strings, bytes, None, enums, compiled regexes, numpy arrays and containers of
    these are covered; arbitrary objects are not (their ``repr`` often holds a memory address).
    """
    import enum
    import re

    if depth > 20:
        return None
    if value is None or isinstance(value, bool | int | float | complex | str | bytes):
        return f"{type(value).__name__}:{value!r}"
    if isinstance(value, enum.Enum):
        return f"{type(value).__qualname__}.{value.name}"
    if isinstance(value, re.Pattern):
        return f"re:{value.pattern!r}:{value.flags}"
    if isinstance(value, list | tuple | set | frozenset):
        maybe = [value_repr(v, depth + 1) for v in value]
        items = [i for i in maybe if i is not None]
        if len(items) != len(maybe):
            return None
        body = sorted(items) if isinstance(value, set | frozenset) else items
        return f"{type(value).__name__}[{','.join(str(i) for i in body)}]"
    if isinstance(value, dict):
        pairs = [(value_repr(k, depth + 1), value_repr(v, depth + 1)) for k, v in value.items()]
        if any(k is None or v is None for k, v in pairs):
            return None
        return "dict{" + ",".join(f"{k}={v}" for k, v in sorted(pairs, key=str)) + "}"
    module = type(value).__module__
    if module == "numpy" or module.startswith("numpy."):
        import numpy as np

        array = np.asarray(value)
        if array.dtype.hasobject:
            return None
        return f"ndarray:{array.dtype}:{array.shape}:{hash_bytes(array.tobytes())}"
    return None


def code_hash(
    func: Any, config_model: type | None, project_root: Path | None, extra: Iterable[Any] = ()
) -> CodeHash:
    """Hash ``func``, its config model, ``extra`` code and the local code they reach."""
    roots = [_TESSERA_DIR]
    if project_root is not None:
        roots.append(str(project_root.resolve()))
    hasher = _Hasher(roots)
    hasher.visit(func, force=True)  # a transformation's own source always counts
    if config_model is not None:
        hasher.visit(config_model, force=True)
    for obj in extra:
        hasher.visit(obj, force=True)
    parts = sorted(hasher.seen.values()) + sorted(hasher.values.items())
    digest = hash_bytes(sys.version.split()[0].rsplit(".", 1)[0], *(f"{n}\n{s}" for n, s in parts))
    return CodeHash(digest, sorted(hasher.files))
