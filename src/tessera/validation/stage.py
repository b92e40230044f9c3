"""The ``validate`` transformation: a schema file as a pipeline stage.

Registered through the ``tessera.transformations`` entry point. Importing this module must stay
cheap (discovery imports it for every command that builds the registry): pandas and pandera
load only when the stage runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator

from tessera.pipeline.errors import StageReportError
from tessera.pipeline.registry import InputPath, transformation
from tessera.validation import engine, schema

if TYPE_CHECKING:
    import pandas as pd


class Validate(BaseModel):
    """Config of ``validate``."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    schema_file: InputPath = Field(
        alias="schema",
        description="The schema file, relative to the project root (see docs/validation.md); "
        "its content is part of the stage's cache key.",
    )

    @field_validator("schema_file")
    @classmethod
    def _schema_is_valid(cls, value: str, info: ValidationInfo) -> str:
        """When the pipeline is checked (before anything runs), the schema is checked too."""
        root = (info.context or {}).get("project_root")
        if root is None:  # running: the stage loads (and checks) the schema itself
            return value
        from pathlib import Path

        from tessera.config.errors import ConfigError
        from tessera.validation.schema import load_schema

        if not (Path(root) / value).is_file():
            raise ValueError("an existing schema file")
        try:
            load_schema(Path(root) / value, value)
        except ConfigError as exc:
            raise ValueError(
                "a valid schema: " + "; ".join(p.render() for p in exc.problems)
            ) from None
        return value


def _check_code() -> list[Any]:
    """Every check a schema could name: editing one must invalidate cached validations."""
    from tessera.validation.checks import collect_checks

    found: list[Any] = []
    for c in collect_checks().checks.values():
        found.append(c.func)
        if c.config_model is not None:
            found.append(c.config_model)
    return found


@transformation(name="validate", code=_check_code)
def validate_table(df: pd.DataFrame, cfg: Validate) -> pd.DataFrame:
    """Check a table against a schema file; pass it on unchanged when it conforms.

    Every rule is checked (not just up to the first failure). When any fails, the stage fails
    with a report of every failing check: the column, the check, how many rows fail it and a
    few of the failing values. Downstream stages then do not run.

    Example:
        ```yaml
        checked:
          uses: validate
          inputs: [raw]
          with:
            schema: schemas/events.yaml
        ```

    Args:
        df: the table to check.
        cfg: the schema file.

    Returns:
        ``df`` itself, when every check passes.

    Raises:
        StageReportError: a check failed; carries the report as a DataFrame.
    """
    loaded = schema.load_schema(cfg.schema_file)
    report = engine.validate(df, loaded)
    if not report.ok:
        raise StageReportError(
            f"the table does not match the schema {cfg.schema_file}: {report.summary}",
            report.frame,
        )
    return df
