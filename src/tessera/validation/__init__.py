"""Data validation: schemas declared in YAML, checked with pandera, every failure at once.

``load_schema`` reads a schema file (a bad one is a ``ConfigError`` with file, line and key),
``validate`` checks a DataFrame and returns a ``ValidationReport``, ``draft_schema`` writes a
schema from existing data, and ``@check`` registers a custom check by name. The ``validate``
transformation (``tessera.validation.stage``) runs a schema inside a pipeline.

Importing this package is cheap: pandas and pandera load when a table is validated.
"""

from tessera.validation.checks import CheckDef, CheckRegistry, check, collect_checks
from tessera.validation.draft import draft_schema
from tessera.validation.engine import validate
from tessera.validation.report import Failure, ValidationReport
from tessera.validation.schema import Schema, load_schema, parse_schema

__all__ = [
    "CheckDef",
    "CheckRegistry",
    "Failure",
    "Schema",
    "ValidationReport",
    "check",
    "collect_checks",
    "draft_schema",
    "load_schema",
    "parse_schema",
    "validate",
]
