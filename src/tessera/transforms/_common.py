"""Helpers shared by the built-in transformations: strict configs and self-explanatory errors.

Every error raised here is shown to the user as the reason a stage failed, so each message names
the column (or value) at fault, says what was expected and, when it can, suggests a fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Hashable, Iterable, Sequence
from typing import Annotated, TypeVar

import pandas as pd
from pandas.api.types import is_bool_dtype, is_datetime64_any_dtype, is_numeric_dtype
from pydantic import AfterValidator, BaseModel, ConfigDict, Field

T = TypeVar("T", bound=Hashable)

#: How many column names an error message lists before eliding the rest.
_PREVIEW = 20


class TransformConfig(BaseModel):
    """Base of every built-in config model: unknown keys are errors, not silently ignored."""

    model_config = ConfigDict(extra="forbid")


def distinct(values: list[T]) -> list[T]:
    """``values``, checked to hold no duplicates (a pydantic validator)."""
    seen: set[T] = set()
    dupes: list[T] = []
    for value in values:
        if value in seen and value not in dupes:
            dupes.append(value)
        seen.add(value)
    if dupes:
        raise ValueError(f"values must be distinct, got duplicates: {quoted(dupes)}")
    return values


#: A column name (never empty).
ColumnName = Annotated[str, Field(min_length=1)]
#: A list of distinct column names (possibly empty).
ColumnNames = Annotated[list[ColumnName], AfterValidator(distinct)]
#: A non-empty list of distinct column names.
SomeColumns = Annotated[list[ColumnName], Field(min_length=1), AfterValidator(distinct)]


def quoted(names: Iterable[Hashable]) -> str:
    """``'a', 'b'``: names quoted for a message."""
    return ", ".join(f"'{n}'" for n in names)


def preview(names: Sequence[Hashable], limit: int = _PREVIEW) -> str:
    """``a, b, c, ... (42 in all)``: the columns of a table, for a message."""
    shown = ", ".join(str(n) for n in names[:limit])
    if len(names) > limit:
        shown += f", ... ({len(names)} in all)"
    return shown or "none"


def suggest(name: str, choices: Iterable[Hashable]) -> str | None:
    """The closest name among ``choices``, or None when nothing is close."""
    close = difflib.get_close_matches(name, [str(c) for c in choices], n=1, cutoff=0.6)
    return close[0] if close else None


def require_columns(df: pd.DataFrame, columns: Iterable[str], what: str = "the input") -> None:
    """Raise a ``ValueError`` naming every column of ``columns`` that ``df`` lacks.

    The message suggests the closest existing name and lists the columns there are, e.g.
    ``column 'x' not found in the input; did you mean 'y'? (columns: a, b, y)``.
    """
    present = set(df.columns)
    missing = [c for c in dict.fromkeys(columns) if c not in present]
    if not missing:
        return
    hints = [(m, s) for m in missing if (s := suggest(m, df.columns)) is not None]
    if len(missing) == 1:
        text = f"column '{missing[0]}' not found in {what}"
        if hints:
            text += f"; did you mean '{hints[0][1]}'?"
    else:
        text = f"columns {quoted(missing)} not found in {what}"
        if hints:
            text += "; did you mean " + ", ".join(f"'{s}' for '{m}'" for m, s in hints) + "?"
    raise ValueError(f"{text} (columns: {preview(list(df.columns))})")


def require_absent(df: pd.DataFrame, columns: Iterable[str], hint: str) -> None:
    """Raise a ``ValueError`` if a column the transformation would add already exists."""
    clash = [c for c in dict.fromkeys(columns) if c in set(df.columns)]
    if clash:
        noun = "column" if len(clash) == 1 else "columns"
        raise ValueError(
            f"output {noun} {quoted(clash)} already exist{'s' if len(clash) == 1 else ''} "
            f"in the input; {hint}"
        )


def is_number_column(series: pd.Series) -> bool:
    """Whether ``series`` holds numbers (booleans are not numbers here)."""
    return is_numeric_dtype(series.dtype) and not is_bool_dtype(series.dtype)


def require_numeric(df: pd.DataFrame, columns: Iterable[str], what: str = "the input") -> None:
    """Raise a ``ValueError`` naming the first column of ``columns`` that is not numeric."""
    require_columns(df, columns, what)
    for column in columns:
        if not is_number_column(df[column]):
            raise ValueError(
                f"column '{column}' must be numeric, but its type is {df[column].dtype}; "
                f"convert it first (e.g. with cast_columns)"
            )


def as_datetime(series: pd.Series, column: str) -> pd.Series:
    """``series`` as datetimes, parsing strings; a clear ``ValueError`` if it cannot be."""
    if is_datetime64_any_dtype(series.dtype):
        return series
    if is_numeric_dtype(series.dtype):
        raise ValueError(
            f"column '{column}' holds numbers ({series.dtype}), not dates; store dates as "
            "ISO strings (2024-01-31) or datetimes"
        )
    try:
        return pd.to_datetime(series)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ValueError(f"column '{column}' cannot be parsed as dates: {exc}") from exc


def fresh_index(df: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the default index 0..n-1 (tables are index-free)."""
    if isinstance(df.index, pd.RangeIndex) and df.index.start == 0 and df.index.step == 1:
        return df
    return df.reset_index(drop=True)


def evaluate(df: pd.DataFrame, expr: str, what: str) -> object:
    """``df.eval(expr)``, turning every failure into a ``ValueError`` that quotes ``expr``.

    The expression sees the table's columns only (no Python variables).
    """
    try:
        return df.eval(expr, local_dict={}, global_dict={})
    except pd.errors.UndefinedVariableError as exc:
        name = str(exc).split("'")[1] if "'" in str(exc) else ""
        close = suggest(name, df.columns) if name else None
        hint = f"; did you mean '{close}'?" if close else ""
        raise ValueError(
            f"{what} {expr!r} uses unknown column '{name}'{hint} (columns: "
            f"{preview(list(df.columns))}); quote names with spaces in backticks: `my col`"
        ) from exc
    except Exception as exc:
        raise ValueError(
            f"{what} {expr!r} cannot be evaluated: {type(exc).__name__}: {exc}"
        ) from exc
