"""The structure of a schema file, as pydantic models (unknown keys are errors)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictFloat,
    StrictInt,
    ValidationInfo,
    field_validator,
)

from tessera.validation import dtypes

Bound = StrictInt | StrictFloat | str
Value = StrictInt | StrictFloat | bool | str


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class CheckRef(_Strict):
    """A custom check used by a column or by the table."""

    name: str = Field(min_length=1, description="The check's registered name.")
    params: dict[str, Any] = Field(
        default_factory=dict, description="The check's parameters (validated by the check)."
    )


class RowsSpec(_Strict):
    """How many rows the table may have."""

    min: int | None = Field(None, ge=0, description="Fewest rows allowed.")
    max: int | None = Field(None, ge=0, description="Most rows allowed.")

    @field_validator("max")
    @classmethod
    def _above_min(cls, value: int | None, info: ValidationInfo) -> int | None:
        low = info.data.get("min")
        if low is not None and value is not None and value < low:
            raise ValueError(f"a count not below min ({low})")
        return value


class ColumnSpec(_Strict):
    """The rules of one column."""

    description: str | None = Field(None, description="What the column holds (documentation).")
    dtype: str | None = Field(None, description="The column's type (see the dtype table).")
    required: bool = Field(True, description="The column must exist.")
    nullable: bool = Field(False, description="Missing values are allowed.")
    unique: bool = Field(False, description="No value appears twice (missing values excepted).")
    min: Bound | None = Field(
        None, description="Smallest allowed value (a number, or an ISO date for datetimes)."
    )
    max: Bound | None = Field(
        None, description="Largest allowed value (a number, or an ISO date for datetimes)."
    )
    min_exclusive: bool = Field(False, description="Values must be greater than `min`.")
    max_exclusive: bool = Field(False, description="Values must be less than `max`.")
    isin: list[Value] | None = Field(None, min_length=1, description="The allowed values.")
    regex: str | None = Field(
        None, description="A regular expression every value must match entirely."
    )
    checks: list[CheckRef] = Field(default_factory=list, description="Custom column checks.")

    @field_validator("dtype")
    @classmethod
    def _known_dtype(cls, value: str | None) -> str | None:
        return None if value is None else dtypes.canonical(value)

    @field_validator("regex")
    @classmethod
    def _compiles(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"a valid regular expression ({exc})") from None
        return value

    @field_validator("min", "max")
    @classmethod
    def _fits_dtype(cls, value: Bound | None, info: ValidationInfo) -> Bound | None:
        dtype = info.data.get("dtype")
        if value is None or dtype is None:
            return value
        if dtypes.is_numeric(dtype) and not isinstance(value, int | float):
            raise ValueError(f"a number (the column's dtype is {dtype})")
        if dtypes.is_datetime(dtype):
            if not isinstance(value, str):
                raise ValueError(
                    f"an ISO date such as '2024-01-31' (the column's dtype is {dtype})"
                )
            try:
                dt.datetime.fromisoformat(value)
            except ValueError:
                raise ValueError("an ISO date such as '2024-01-31' or '2024-01-31 12:00'") from None
        return value

    @field_validator("max")
    @classmethod
    def _above_min(cls, value: Bound | None, info: ValidationInfo) -> Bound | None:
        low = info.data.get("min")
        if isinstance(low, int | float) and isinstance(value, int | float) and value < low:
            raise ValueError(f"a value not below min ({low})")
        return value

    @field_validator("min_exclusive", "max_exclusive")
    @classmethod
    def _has_bound(cls, value: bool, info: ValidationInfo) -> bool:
        bound = "min" if info.field_name == "min_exclusive" else "max"
        # A bound that failed validation is absent from info.data; one not given is None.
        if value and bound in info.data and info.data[bound] is None:
            raise ValueError(f"false, or `{bound}` set too")
        return value


class SchemaSpec(_Strict):
    """A schema file: the columns, and rules about the whole table."""

    name: str | None = Field(None, description="A name for messages (default: the file name).")
    description: str | None = Field(None, description="What the table holds (documentation).")
    columns: dict[str, ColumnSpec] = Field(
        default_factory=dict, description="The columns, by name, with their rules."
    )
    rows: RowsSpec | None = Field(None, description="Bounds on the number of rows.")
    strict: bool = Field(False, description="Columns not listed under `columns` are errors.")
    unique: list[str] | None = Field(
        None, min_length=1, description="Columns whose combination identifies a row."
    )
    checks: list[CheckRef] = Field(default_factory=list, description="Custom table checks.")

    @field_validator("unique")
    @classmethod
    def _distinct(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and len(set(value)) != len(value):
            raise ValueError("the columns of `unique` must be distinct")
        return value


def normalise(data: Any) -> Any:
    """Shorthands written out: ``column:`` (no rules) is ``{}``, ``- name`` is ``{name: ...}``."""
    if not isinstance(data, dict):
        return data
    out = dict(data)
    columns = out.get("columns")
    if isinstance(columns, dict):
        out["columns"] = {
            k: _column(v) if isinstance(v, dict) else ({} if v is None else v)
            for k, v in columns.items()
        }
    if "checks" in out:
        out["checks"] = _checks(out["checks"])
    return out


def _column(spec: dict[str, Any]) -> dict[str, Any]:
    if "checks" not in spec:
        return spec
    return {**spec, "checks": _checks(spec["checks"])}


def _checks(items: Any) -> Any:
    if not isinstance(items, list):
        return items
    return [{"name": item} if isinstance(item, str) else item for item in items]
