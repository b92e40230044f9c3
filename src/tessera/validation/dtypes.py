"""The ``dtype`` vocabulary of schemas: exact pandas types and a few lenient families.

Exact names (``int64``, ``Int64``, ``float64``, ``bool``, ``category``...) match that pandas type
only. Family names match any member: ``int`` (any integer type, nullable or not), ``float``,
``number`` (integers and floats, not booleans), ``string`` (any pandas string type, or an object
column holding only text), ``datetime`` (timezone-naive, any resolution), ``datetime_tz``
(timezone-aware) and ``timedelta``.

Pandas is imported inside the functions only: schemas are parsed before any data is loaded.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from tessera.config.errors import did_you_mean

if TYPE_CHECKING:
    import pandas as pd

_NUMPY_INTS = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64")
_NULLABLE_INTS = ("Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64")
_FLOATS = ("float32", "float64")
_NULLABLE_FLOATS = ("Float32", "Float64")

#: Every name a schema may use, in the order the documentation lists them.
DTYPES: tuple[str, ...] = (
    *_NUMPY_INTS,
    *_NULLABLE_INTS,
    *_FLOATS,
    *_NULLABLE_FLOATS,
    "bool",
    "boolean",
    "string",
    "category",
    "datetime",
    "datetime_tz",
    "timedelta",
    "object",
    "int",
    "float",
    "number",
)
#: Other spellings accepted for the same types.
ALIASES = {"str": "string", "integer": "int", "numeric": "number"}

_INTEGER_NAMES = {*_NUMPY_INTS, *_NULLABLE_INTS, "int"}
_NUMERIC_NAMES = {*_INTEGER_NAMES, *_FLOATS, *_NULLABLE_FLOATS, "float", "number"}
_DATETIME_NAMES = {"datetime", "datetime_tz"}


def canonical(name: str) -> str:
    """The schema's dtype name as it is checked (aliases resolved).

    Raises:
        ValueError: an unknown name, with a suggestion.
    """
    name = ALIASES.get(name, name)
    if name in DTYPES:
        return name
    hint = did_you_mean(name, [*DTYPES, *ALIASES])
    raise ValueError(f"a known dtype ({hint or 'one of ' + ', '.join(DTYPES)})")


def is_numeric(name: str) -> bool:
    return canonical(name) in _NUMERIC_NAMES


def is_datetime(name: str) -> bool:
    return canonical(name) in _DATETIME_NAMES


def describe(dtype: Any) -> str:
    """A pandas dtype as a schema would name it (``str`` columns are ``string``)."""
    import pandas as pd

    if isinstance(dtype, pd.StringDtype):
        return "string"
    if isinstance(dtype, pd.DatetimeTZDtype):
        return f"datetime_tz ({dtype.tz})"
    kind = getattr(dtype, "kind", "")
    if kind == "M" and not isinstance(dtype, pd.ArrowDtype):
        return "datetime"
    if kind == "m" and not isinstance(dtype, pd.ArrowDtype):
        return "timedelta"
    return str(dtype)


def draft_name(series: pd.Series) -> str | None:
    """The dtype name a drafted schema gives ``series``: exact where possible, else a family.

    None when no name fits (an unusual extension type): the draft then leaves ``dtype`` out.
    """
    if matches(series, "string"):
        return "string"
    text = str(series.dtype)
    if text in DTYPES and text not in ("int", "float", "number") and matches(series, text):
        return text
    for name in ("datetime", "datetime_tz", "timedelta", "category", "int", "float", "number"):
        if matches(series, name):
            return name
    return "object" if matches(series, "object") else None


def matches(series: pd.Series, name: str) -> bool:
    """Whether ``series`` has the type the schema's dtype ``name`` asks for."""
    import numpy as np
    import pandas as pd
    from pandas.api import types as pt

    name = canonical(name)
    dtype = series.dtype
    if name in _NUMPY_INTS or name in _FLOATS or name == "bool" or name == "object":
        return isinstance(dtype, np.dtype) and dtype == np.dtype(name)
    if name in _NULLABLE_INTS or name in _NULLABLE_FLOATS or name == "boolean":
        return isinstance(dtype, pd.api.extensions.ExtensionDtype) and dtype.name == name
    if name == "int":
        return pt.is_integer_dtype(dtype) and not pt.is_bool_dtype(dtype)
    if name == "float":
        return pt.is_float_dtype(dtype)
    if name == "number":
        return pt.is_numeric_dtype(dtype) and not pt.is_bool_dtype(dtype)
    if name == "string":
        if isinstance(dtype, pd.StringDtype):
            return True
        if isinstance(dtype, pd.ArrowDtype):
            import pyarrow as pa

            return bool(pa.types.is_string(dtype.pyarrow_dtype)) or bool(
                pa.types.is_large_string(dtype.pyarrow_dtype)
            )
        return pt.is_object_dtype(dtype) and pt.infer_dtype(series, skipna=True) in (
            "string",
            "empty",
        )
    if name == "category":
        return isinstance(dtype, pd.CategoricalDtype)
    if name == "datetime":
        return isinstance(dtype, np.dtype) and dtype.kind == "M"
    if name == "datetime_tz":
        return isinstance(dtype, pd.DatetimeTZDtype)
    if name == "timedelta":
        return isinstance(dtype, np.dtype) and dtype.kind == "m"
    return False  # pragma: no cover - canonical() admits only the names above


def misfits(series: pd.Series, name: str) -> pd.Series:
    """A mask of the present values that cannot be represented in dtype ``name``.

    Empty (all False) when every value would fit and only the column's type is wrong (an
    ``int64`` column where ``Int64`` is asked for, say).
    """
    import numpy as np
    import pandas as pd
    from pandas.api import types as pt

    name = canonical(name)
    present = series.notna()
    if name in _NUMERIC_NAMES:
        if pt.is_bool_dtype(series.dtype):
            return present
        numbers = series
        if not pt.is_numeric_dtype(series.dtype):
            numbers = pd.to_numeric(series, errors="coerce")
        if not pt.is_numeric_dtype(numbers.dtype):
            return present
        bad = present & numbers.isna()
        if name in _INTEGER_NAMES:
            bad |= present & numbers.notna() & (numbers.astype("float64") % 1 != 0)
        if name.startswith(("uint", "UInt")):
            bad |= present & numbers.notna() & (numbers.astype("float64") < 0)
        return bad.astype(bool)
    if name in ("bool", "boolean"):
        is_bool = series.map(lambda v: isinstance(v, bool | np.bool_)).astype(bool)
        return present & ~is_bool
    if name == "string":
        return present & ~series.map(lambda v: isinstance(v, str)).astype(bool)
    if name in _DATETIME_NAMES:
        if pt.is_numeric_dtype(series.dtype) or pt.is_bool_dtype(series.dtype):
            return present
        if series.dtype.kind == "M":
            return pd.Series(False, index=series.index)
        parsed = pd.to_datetime(series, errors="coerce", format="ISO8601")
        return (present & parsed.isna()).astype(bool)
    return pd.Series(False, index=series.index)


def conform(series: pd.Series, name: str) -> pd.Series:
    """``series`` converted to dtype ``name`` when nothing is lost, else unchanged.

    Text files carry no types: a CSV column of ISO dates is read as text, an integer column with
    a gap as floats. Converting those (and nothing else) lets a schema describe the data rather
    than the file format.
    """
    import pandas as pd
    from pandas.api import types as pt

    name = canonical(name)
    if matches(series, name) or misfits(series, name).any():
        return series
    present = series.notna()
    converted: pd.Series
    try:
        if name in _DATETIME_NAMES:
            if pt.is_numeric_dtype(series.dtype) or pt.is_bool_dtype(series.dtype):
                return series
            converted = pd.to_datetime(series, format="ISO8601", utc=name == "datetime_tz")
        elif name in ("int", "number", "float"):
            return series
        elif name == "category":
            converted = series.astype("category")
        elif name == "string":
            converted = series.astype("string")
        else:
            converted = series.astype(name)  # type: ignore[call-overload]
    except (ValueError, TypeError, OverflowError):
        return series
    if not converted.notna().eq(present).all():
        return series
    if name in _NUMERIC_NAMES:
        same = converted[present].astype("float64").to_numpy() == (
            series[present].astype("float64").to_numpy()
        )
        if not same.all():
            return series
    return converted if matches(converted, name) else series
