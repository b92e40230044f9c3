"""Tessera: modular, cached, versioned ML pipelines.

Only light names are imported eagerly; ``transformation`` and friends load on first use so that
``tessera`` commands that do no work (``tessera run`` with everything cached) start fast.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["InputPath", "OutputPath", "__version__", "transformation"]

if TYPE_CHECKING:
    from tessera.pipeline.registry import InputPath, OutputPath, transformation


def __getattr__(name: str) -> Any:
    if name in {"transformation", "InputPath", "OutputPath"}:
        from tessera.pipeline import registry

        return getattr(registry, name)
    raise AttributeError(f"module 'tessera' has no attribute {name!r}")
