"""Cache keys: what a stage's result depends on, hashed."""

from __future__ import annotations

import importlib.metadata
import sys
from functools import cache
from typing import Any

from tessera.data.hashing import hash_json
from tessera.pipeline.model import ResolvedStage

#: Libraries that decide the result of every transformation.
BASE_LIBRARIES = ("tessera", "pandas", "numpy", "pyarrow")
KEY_VERSION = 1


@cache
def _version(dist: str) -> str:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return "absent"


def library_versions(extra: list[str] | tuple[str, ...] = ()) -> dict[str, str]:
    """Versions of Python and of the libraries a stage's output depends on."""
    versions = {"python": ".".join(map(str, sys.version_info[:2]))}
    for dist in (*BASE_LIBRARIES, *extra):
        versions[dist] = _version(dist)
    return versions


def stage_key(
    stage: ResolvedStage, inputs: list[tuple[str, str]], deps: dict[str, str]
) -> tuple[str, dict[str, Any]]:
    """The cache key of ``stage`` given its input fingerprints and input-file hashes.

    Returns:
        The key and the components it hashes (recorded, to explain later why it changed).
    """
    parts: dict[str, Any] = {
        "v": KEY_VERSION,
        "uses": stage.uses,
        "code": stage.code_hash,
        "config": stage.config_hash,
        "inputs": inputs,
        "deps": deps,
        "versions": library_versions(stage.libraries),
    }
    return hash_json(parts), parts
