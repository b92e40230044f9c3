"""Helpers shared by the built-in transformations: strict configs and self-explanatory errors.

Every error raised here is shown to the user as the reason a stage failed, so each message names
the column (or value) at fault, says what was expected and, when it can, suggests a fix.
"""

from __future__ import annotations

import difflib
from collections.abc import Hashable, Iterable, Sequence

import pandas as pd
from pandas.api.types import is_bool_dtype, is_datetime64_any_dtype, is_numeric_dtype
from pydantic import BaseModel, ConfigDict, field_validator

#: How many column names an error message lists before eliding the rest.
_PREVIEW = 20


class TransformConfig(BaseModel):
    """Base of every built-in config model.

    Unknown keys are errors, not silently ignored. Every list of strings (column names, parts,
    aggregates, labels) must hold distinct, non-empty values, and the keys of every mapping
    (column names) must not be empty.
    """

    model_config = ConfigDict(extra="forbid")

    @field_validator("*", mode="after")
    @classmethod
    def _names(cls, value: object) -> object:
        if isinstance(value, list):
            _check_names(value)
        elif isinstance(value, dict):
            if "" in value:
                raise ValueError("column names must not be empty")
            for item in value.values():
                if isinstance(item, list):
                    _check_names(item)
        return value


def _check_names(values: list[object]) -> None:
    """Reject empty and repeated strings in a list of names."""
    if not all(isinstance(v, str) for v in values):
        return
    if "" in values:
        raise ValueError("names must not be empty")
    seen: set[object] = set()
    dupes: list[object] = []
    for value in values:
        if value in seen and value not in dupes:
            dupes.append(value)
        seen.add(value)
    if dupes:
        raise ValueError(f"values must be distinct, got duplicates: {quoted(dupes)}")


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
    """The closest name among ``choices``, or None when nothing is close.

    A different case (``Age`` for ``age``) wins, then a similar spelling, then the only name
    containing ``name`` (``event_time`` for ``time``).
    """
    names = [str(c) for c in choices]
    lowered = name.lower()
    same = [n for n in names if n.lower() == lowered]
    if same:
        return same[0]
    close = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if close:
        return close[0]
    containing = [n for n in names if lowered and lowered in n.lower()]
    return containing[0] if len(containing) == 1 else None


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
        first_error = exc
    try:
        # ISO 8601 values in several shapes: dates and datetimes mixed, with or without seconds.
        return pd.to_datetime(series, format="ISO8601")
    except (ValueError, TypeError, OverflowError):
        raise ValueError(
            f"column '{column}' cannot be parsed as dates: {first_error}"
        ) from first_error


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
        if f"@{name}" in expr:
            raise ValueError(
                f"{what} {expr!r} refers to the variable '@{name}'; only the table's columns "
                "can be used"
            ) from exc
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
