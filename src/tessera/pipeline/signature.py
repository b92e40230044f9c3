"""Reading a decorated function: where it is defined, and its resolved annotations.

Shared by ``@transformation`` and by plugins built the same way (``@check``).
"""

from __future__ import annotations

import contextlib
import typing
from collections.abc import Callable
from typing import Any


def origin(fn: Callable[..., Any]) -> str:
    """``file:line`` where ``fn`` is defined (for messages)."""
    code = getattr(fn, "__code__", None)
    return f"{code.co_filename}:{code.co_firstlineno}" if code else repr(fn)


def resolved_hints(fn: Callable[..., Any], *, include_extras: bool = False) -> dict[str, Any]:
    """Parameter annotations, resolved where possible.

    Annotations naming things imported only for type checking cannot all be resolved; those that
    can are, and the others stay strings (they are then neither a table nor a config model).
    """
    try:
        return typing.get_type_hints(fn, include_extras=include_extras)
    except Exception:
        hints: dict[str, Any] = {}
        for name, ann in getattr(fn, "__annotations__", {}).items():
            if isinstance(ann, str):
                with contextlib.suppress(Exception):
                    ann = eval(ann, getattr(fn, "__globals__", {}))
            hints[name] = ann
        return hints
