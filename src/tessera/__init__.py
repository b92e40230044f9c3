"""Tessera: modular, cached, versioned ML pipelines.

Only light names are imported eagerly; ``transformation`` and friends load on first use so that
``tessera`` commands that do no work (``tessera run`` with everything cached) start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tessera._version import __version__

__all__ = ["InputPath", "OutputPath", "__version__", "check", "transformation"]

if TYPE_CHECKING:
    from tessera.pipeline.registry import InputPath, OutputPath, transformation
    from tessera.validation.checks import check


def __getattr__(name: str) -> Any:
    if name in {"transformation", "InputPath", "OutputPath"}:
        from tessera.pipeline import registry

        return getattr(registry, name)
    if name == "check":
        from tessera.validation.checks import check

        return check
    raise AttributeError(f"module 'tessera' has no attribute {name!r}")
