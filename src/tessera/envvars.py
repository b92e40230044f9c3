"""``${VAR}`` in configuration values: secrets and hosts stay out of committed YAML."""

from __future__ import annotations

import os
import re

from tessera.errors import UsageError

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(text: str, *, what: str = "a setting") -> str:
    """Replace every ``${VAR}`` in ``text`` by the environment variable VAR.

    Raises:
        UsageError: a referenced variable is not set.
    """

    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if name not in os.environ:
            raise UsageError(
                f"{what} uses ${{{name}}}, but the environment variable {name} is not set"
            )
        return os.environ[name]

    return _VAR.sub(value, text)
