"""Request bodies to validated tables: the native and MLflow scoring formats, JSON and CSV.

Every request is parsed into a :class:`pandas.DataFrame` holding exactly the model's input
columns, in the signature's order, converted to the declared MLflow types (``double``,
``float``, ``long``, ``integer``, ``string``, ``boolean``). Conversion is per column and
vectorised; only a column that fails the fast check is scanned value by value, to name every
offending row.

Bad input raises :class:`InputError` (HTTP 422) listing one ``{"field", "problem"}`` for each
missing column, unexpected column and wrong value; :class:`TooLarge` (413),
:class:`MalformedInput` (400) and :class:`UnsupportedMediaType` (415) are its kinds.
"""

from __future__ import annotations

import io
import json
import math
from collections import Counter
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

MLFLOW_FORMATS = ("dataframe_split", "dataframe_records", "instances", "inputs")
MAX_PROBLEMS = 100
_NUMERIC: dict[str, Any] = {
    "double": "float64",
    "float": "float32",
    "long": "int64",
    "integer": "int32",
}
_TYPE_WORDS = {
    "double": "number",
    "float": "number",
    "long": "integer",
    "integer": "integer",
    "string": "string",
    "boolean": "boolean",
    "datetime": "ISO 8601 date-time",
}


class InputError(Exception):
    """Input the model cannot score; ``problems`` names every offending field.

    Attributes:
        status: the HTTP status to answer with.
        error_code: MLflow's error code for the body of the answer.
        problems: ``[{"field": ..., "problem": ...}]``, one per offending field.
    """

    status = 422
    error_code = "INVALID_PARAMETER_VALUE"

    def __init__(self, message: str, problems: list[dict[str, str]] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []

    def to_dict(self) -> dict[str, Any]:
        """The JSON body of the error answer."""
        return {"error_code": self.error_code, "message": self.message, "problems": self.problems}


class TooLarge(InputError):
    """A body or batch over the configured limits."""

    status = 413
    error_code = "RESOURCE_LIMIT_EXCEEDED"


class MalformedInput(InputError):
    """A body that is not JSON (or CSV) at all."""

    status = 400
    error_code = "MALFORMED_REQUEST"


class UnsupportedMediaType(InputError):
    """A content type other than JSON or CSV."""

    status = 415
    error_code = "BAD_REQUEST"


@dataclass(frozen=True)
class Column:
    """One input column of the model's signature."""

    name: str
    type: str
    required: bool = True


@dataclass(frozen=True)
class InputSchema:
    """The model's input columns, in order, as its MLflow signature declares them."""

    columns: tuple[Column, ...]

    @cached_property
    def names(self) -> list[str]:
        """The column names, in order (not to be modified)."""
        return [c.name for c in self.columns]

    @cached_property
    def index(self) -> pd.Index:
        """The column names as the index of the tables built for this schema: one object,
        which also tells the prediction log that the tables share their columns."""
        import pandas as pd

        return pd.Index(self.names)

    @classmethod
    def from_signature(cls, inputs: Any) -> InputSchema:
        """From the ``signature.inputs`` of an ``MLmodel`` file (JSON text or a list)."""
        columns = json.loads(inputs) if isinstance(inputs, str) else inputs or []
        return cls(
            tuple(
                Column(str(c["name"]), str(c.get("type", "")), bool(c.get("required", True)))
                for c in columns
                if isinstance(c, dict) and "name" in c
            )
        )

    @classmethod
    def from_model_dir(cls, model_dir: Path) -> InputSchema:
        """From the ``MLmodel`` file of an MLflow model directory."""
        import yaml

        mlmodel = yaml.safe_load((model_dir / "MLmodel").read_text(encoding="utf-8")) or {}
        return cls.from_signature((mlmodel.get("signature") or {}).get("inputs"))


# --- parsing ---------------------------------------------------------------------------------


def parse_json(body: bytes) -> Any:
    """JSON bytes, parsed with orjson; with the standard library when orjson refuses them, as
    it refuses ``NaN`` and ``Infinity``, which MLflow's clients (and its input examples) write
    for missing and infinite values.

    Raises:
        MalformedInput: the body is not JSON.
    """
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        try:
            return json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise MalformedInput(f"malformed JSON: {exc}") from None
        except RecursionError:
            raise MalformedInput("malformed JSON: nested too deeply") from None


def _check_rows(n: int, max_rows: int) -> None:
    if n > max_rows:
        raise TooLarge(f"the request holds {n} rows; at most {max_rows} are accepted per request")


def _records(rows: Any, where: str, schema: InputSchema, max_rows: int) -> pd.DataFrame:
    """A table from a list of records (objects); rows given as lists follow the schema order."""
    import pandas as pd

    if not isinstance(rows, list):
        raise InputError(
            f"{where} must be a list of rows",
            [{"field": where, "problem": "expected a list of objects"}],
        )
    _check_rows(len(rows), max_rows)
    if rows and all(isinstance(r, list) for r in rows):
        return _split(schema.names, rows, where, max_rows)
    bad = [
        {"field": f"{where}[{i}]", "problem": f"expected an object, got {_show(r)}"}
        for i, r in enumerate(rows)
        if not isinstance(r, dict)
    ]
    if bad:
        raise InputError(f"{where} must hold objects (column: value)", bad[:MAX_PROBLEMS])
    frame = pd.DataFrame.from_records(rows) if rows else pd.DataFrame(columns=schema.names)
    frame.attrs["where"] = where
    return frame


def _split(columns: Any, rows: Any, where: str, max_rows: int) -> pd.DataFrame:
    """A table from ``columns`` and ``data`` (rows as lists)."""
    import pandas as pd

    cols_at = where.removesuffix(".data").removesuffix("data") + (
        ".columns" if where.endswith(".data") else "columns"
    )
    if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
        raise InputError(
            "the column names must be a list of strings",
            [{"field": cols_at, "problem": "expected a list of column names"}],
        )
    if not isinstance(rows, list):
        raise InputError(
            f"{where} must be a list of rows", [{"field": where, "problem": "expected a list"}]
        )
    _check_rows(len(rows), max_rows)
    bad = [
        {
            "field": f"{where}[{i}]",
            "problem": f"expected a list of {len(columns)} values (one per column), got "
            + (f"{len(r)} values" if isinstance(r, list) else _show(r)),
        }
        for i, r in enumerate(rows)
        if not isinstance(r, list) or len(r) != len(columns)
    ]
    if bad:
        raise InputError(f"the rows of {where} do not fit the columns", bad[:MAX_PROBLEMS])
    frame = pd.DataFrame(rows, columns=columns) if rows else pd.DataFrame(columns=columns)
    frame.attrs["where"] = where
    return frame


def _columnar(value: dict[str, Any], where: str, max_rows: int) -> pd.DataFrame:
    """A table from ``{"column": [values...]}`` (or one row of scalars)."""
    import pandas as pd

    lists = [v for v in value.values() if isinstance(v, list)]
    if not lists:
        frame = pd.DataFrame([value])
    elif len(lists) != len(value) or len({len(v) for v in lists}) != 1:
        raise InputError(
            f"{where} as an object must map every column to a list of one length",
            [{"field": where, "problem": "columns of different lengths, or mixed with scalars"}],
        )
    else:
        _check_rows(len(lists[0]), max_rows)
        frame = pd.DataFrame(value)
    frame.attrs["where"] = where
    return frame


def native_frame(data: Any, schema: InputSchema, max_rows: int) -> pd.DataFrame:
    """The table of a ``POST /predict`` body: ``{"inputs": [records]}`` or
    ``{"columns": [...], "data": [[...]]}`` (an optional ``"key"`` is ignored here).

    Raises:
        InputError: the body has neither shape, or its table does not fit the schema.
    """
    if not isinstance(data, dict):
        raise InputError(
            'expected a JSON object: {"inputs": [...]} or {"columns": [...], "data": [[...]]}',
            [{"field": "(body)", "problem": f"expected an object, got {_show(data)}"}],
        )
    extra = sorted(set(data) - {"inputs", "columns", "data", "key"})
    if not extra:
        fast = _fast_frame(data.get("inputs"), data.get("columns"), data.get("data"), schema)
        if fast is not None:
            _check_rows(len(fast), max_rows)
            return fast
    if "inputs" in data and not ({"columns", "data"} & set(data)):
        frame = _records(data["inputs"], "inputs", schema, max_rows)
    elif "data" in data and "columns" in data and "inputs" not in data:
        frame = _split(data["columns"], data["data"], "data", max_rows)
    else:
        raise InputError(
            'expected either "inputs" (a list of objects) or "columns" and "data"',
            [{"field": "(body)", "problem": f"got keys: {', '.join(sorted(data)) or 'none'}"}],
        )
    if extra:
        raise InputError(
            "unexpected keys in the request",
            [{"field": k, "problem": "unexpected key"} for k in extra],
        )
    return validate(frame, schema)


def mlflow_frame(data: Any, schema: InputSchema, max_rows: int) -> pd.DataFrame:
    """The table of an MLflow scoring request (``POST /invocations`` JSON).

    Raises:
        InputError: not exactly one of the MLflow formats, or a table that does not fit.
    """
    if not isinstance(data, dict):
        raise InputError(
            f"expected a JSON object with one of: {', '.join(MLFLOW_FORMATS)}",
            [{"field": "(body)", "problem": f"expected an object, got {_show(data)}"}],
        )
    keys = [k for k in MLFLOW_FORMATS if k in data]
    if len(keys) != 1:
        raise InputError(
            f"expected exactly one of {', '.join(MLFLOW_FORMATS)} in the JSON object",
            [{"field": "(body)", "problem": f"got keys: {', '.join(sorted(data)) or 'none'}"}],
        )
    key = keys[0]
    extra = sorted(set(data) - {key, "params"})
    if extra:
        raise InputError(
            f"unexpected keys next to {key}",
            [{"field": k, "problem": "unexpected key"} for k in extra],
        )
    value = data[key]
    if not extra:
        fast = (
            _fast_frame(None, value.get("columns"), value.get("data"), schema)
            if key == "dataframe_split" and isinstance(value, dict)
            else _fast_frame(value, None, None, schema)
        )
        if fast is not None:
            _check_rows(len(fast), max_rows)
            return fast
    if key == "dataframe_split":
        if not isinstance(value, dict):
            raise InputError(
                "dataframe_split must be an object with columns and data",
                [{"field": key, "problem": f"expected an object, got {_show(value)}"}],
            )
        frame = _split(value.get("columns"), value.get("data", []), f"{key}.data", max_rows)
    elif isinstance(value, dict) and key != "dataframe_records":
        frame = _columnar(value, key, max_rows)
    else:
        frame = _records(value, key, schema, max_rows)
    return validate(frame, schema)


def csv_frame(body: bytes, schema: InputSchema, max_rows: int) -> pd.DataFrame:
    """The table of a ``text/csv`` body with a header row.

    Raises:
        MalformedInput: not CSV; TooLarge: too many rows; InputError: does not fit the schema.
    """
    import pandas as pd

    if body.count(b"\n") > max_rows + 1:  # cheap bound before parsing
        _check_rows(body.count(b"\n") - 1, max_rows)
    strings = {c.name: str for c in schema.columns if c.type == "string"}
    try:
        frame = pd.read_csv(io.BytesIO(body), dtype=strings)
    except pd.errors.EmptyDataError:
        raise MalformedInput("the CSV input is empty (a header row is required)") from None
    except (ValueError, UnicodeDecodeError, pd.errors.ParserError) as exc:
        raise MalformedInput(f"cannot parse the CSV input: {exc}") from None
    _check_rows(len(frame), max_rows)
    frame.attrs["where"] = "rows"
    return validate(frame, schema, text=True)


# --- the fast path ---------------------------------------------------------------------------

#: Batches up to this many rows are first tried on the fast path.
FAST_ROWS = 512
_FAST_TYPES: dict[str, tuple[type, ...]] = {
    "double": (float, int),
    "float": (float, int),
    "long": (int,),
    "integer": (int,),
    "string": (str,),
    "boolean": (bool,),
}


def _fast_frame(records: Any, columns: Any, rows: Any, schema: InputSchema) -> pd.DataFrame | None:
    """The table of a small, well-formed request, built straight from the parsed JSON.

    Every value must already be of its column's type exactly (``None`` only as a missing
    number), records must have exactly the schema's keys, and split rows exactly its columns.
    Anything else returns None and takes the general path, which names every problem; for
    what it accepts, both paths give the same table.
    """
    import numpy as np
    import pandas as pd

    spec = schema.columns
    if not spec or any(c.type not in _FAST_TYPES for c in spec):
        return None
    names = schema.names
    if records is not None:
        if columns is not None or rows is not None:
            return None
        if not isinstance(records, list) or not records or len(records) > FAST_ROWS:
            return None
        wanted = set(names)
        try:
            if any(r.keys() != wanted for r in records):
                return None
        except AttributeError:  # not objects
            return None
        table = [[r[n] for n in names] for r in records]
    else:
        if columns != names and not (
            isinstance(columns, list)
            and all(isinstance(c, str) for c in columns)
            and sorted(columns) == sorted(names)
        ):
            return None
        if not isinstance(rows, list) or not rows or len(rows) > FAST_ROWS:
            return None
        width = len(names)
        if any(type(r) is not list or len(r) != width for r in rows):
            return None
        if columns == names:
            table = rows
        else:
            order = [columns.index(n) for n in names]
            table = [[r[i] for i in order] for r in rows]
    if all(c.type == "double" for c in spec):  # all numbers, the common case: one array
        for r in table:
            for v in r:
                if type(v) is not float and type(v) is not int and v is not None:
                    return None
        try:
            return pd.DataFrame(np.array(table, dtype=np.float64), columns=schema.index)
        except (OverflowError, ValueError):  # an integer beyond a double's range
            return None
    arrays: dict[str, Any] = {}
    for j, column in enumerate(spec):
        allowed = _FAST_TYPES[column.type]
        numeric = column.type in ("double", "float")
        values = [r[j] for r in table]
        for v in values:
            kind = type(v)
            if kind not in allowed and not (numeric and v is None):
                return None
        try:
            arrays[column.name] = (
                pd.Series(values, dtype=object)  # not pandas' inferred string dtype
                if column.type == "string"
                else np.array(values, dtype=_NUMERIC.get(column.type, bool))
            )
        except (OverflowError, ValueError):  # an integer beyond 64 bits
            return None
    first = spec[0].type
    if all(c.type == first for c in spec) and first != "string":
        return pd.DataFrame(np.column_stack(list(arrays.values())), columns=schema.index)
    return pd.DataFrame(arrays)


def uniform_values(frame: pd.DataFrame) -> np.ndarray | None:
    """The frame's values as one array when all its columns share one type, else None.

    Cheap for the tables of the fast path (one block: a view, no copy); pandas' own check
    (``_is_homogeneous_type``) avoids building ``frame.dtypes`` (about 20 µs).
    """
    if frame.shape[1] and getattr(frame, "_is_homogeneous_type", False):
        return frame.to_numpy()
    return None


def infinite_values(frame: pd.DataFrame) -> list[dict[str, str]]:
    """Where ``frame`` holds infinite numbers (which most models refuse), one problem per
    value: for the answer to a request the model could not score."""
    import numpy as np

    problems: list[dict[str, str]] = []
    for name in frame.columns:
        values = frame[name].to_numpy()
        if values.dtype.kind != "f":
            continue
        for i in np.flatnonzero(np.isinf(values))[: MAX_PROBLEMS - len(problems)]:
            problems.append(
                {"field": f"rows[{int(i)}].{name}", "problem": f"infinite value ({values[i]})"}
            )
    return problems


# --- validation ------------------------------------------------------------------------------


def validate(frame: pd.DataFrame, schema: InputSchema, *, text: bool = False) -> pd.DataFrame:
    """``frame`` reduced to the schema's columns, in order, each of its declared type.

    ``text``: values came from text (CSV), so numbers written as strings are parsed.

    Raises:
        InputError: naming every missing column, unexpected column and value of a wrong type.
    """
    where = str(frame.attrs.get("where", "data"))
    if not schema.columns:  # no signature: the model takes what it gets
        return frame
    problems: list[dict[str, str]] = []
    present = set(map(str, frame.columns))
    known = set(schema.names)
    counts = Counter(map(str, frame.columns))
    for c in schema.columns:
        if c.name not in present and (c.required or len(frame)):
            problems.append({"field": c.name, "problem": "missing column"})
    for name in dict.fromkeys(map(str, frame.columns)):
        if name not in known:
            problems.append({"field": name, "problem": "unexpected column"})
        if counts[name] > 1:
            problems.append({"field": name, "problem": f"{counts[name]} columns of this name"})
    converted: dict[str, Any] = {}
    for c in schema.columns:
        if counts[c.name] == 1 and len(problems) < MAX_PROBLEMS:
            converted[c.name] = _convert(frame[c.name], c, where, problems, text)
    if problems:
        shown = problems[:MAX_PROBLEMS]
        if len(problems) > MAX_PROBLEMS:
            shown.append({"field": "...", "problem": f"{len(problems) - MAX_PROBLEMS} more"})
        raise InputError(
            f"the input does not fit the model's schema ({len(problems)} problem"
            f"{'s' if len(problems) != 1 else ''}): "
            + "; ".join(f"{p['field']}: {p['problem']}" for p in shown[:5]),
            shown,
        )
    import pandas as pd

    return pd.DataFrame(converted, index=frame.index)[schema.names]


def _convert(
    column: pd.Series, spec: Column, where: str, problems: list[dict[str, str]], text: bool
) -> Any:
    """The column converted to its declared type; offending values appended to ``problems``."""
    import numpy as np
    import pandas as pd

    kind = spec.type
    dtype = column.dtype
    if kind in ("double", "float"):
        if pd.api.types.is_numeric_dtype(dtype) and not pd.api.types.is_bool_dtype(dtype):
            return column.astype(_NUMERIC[kind])
        ok = _scalar_mask(
            column, lambda v: (_is_number(v) and _fits_double(v)) or (text and _parses_float(v))
        )
        if ok.all():
            return pd.to_numeric(column, errors="coerce").astype(_NUMERIC[kind])
    elif kind in ("long", "integer"):
        if pd.api.types.is_integer_dtype(dtype):
            return column.astype(_NUMERIC[kind])
        # A missing value (null, NaN, an empty CSV field) is kept as NaN, in a float column: an
        # integer feature with gaps was a float column in training, and the model's imputer
        # fills it. MLflow's own scoring refuses such rows.
        if pd.api.types.is_float_dtype(dtype):
            values = column.to_numpy()
            missing = np.isnan(values)
            ok = pd.Series(
                missing | (np.isfinite(values) & (values == np.round(values))), index=column.index
            )
            if ok.all():
                return column if missing.any() else column.astype(_NUMERIC[kind])
        else:
            bits = 64 if kind == "long" else 32
            ok = _scalar_mask(
                column,
                lambda v: (
                    v is None
                    or _nan(v)
                    or (_is_integral(v) and -(2 ** (bits - 1)) <= v < 2 ** (bits - 1))
                    or (text and _parses_int(v))
                ),
            )
            if ok.all():
                numbers = pd.to_numeric(column)
                return numbers if numbers.isna().any() else numbers.astype(_NUMERIC[kind])
    elif kind == "string":
        if pd.api.types.infer_dtype(column, skipna=True) in ("string", "empty"):
            return column.astype(object)
        ok = _scalar_mask(column, lambda v: v is None or isinstance(v, str) or _nan(v))
    elif kind == "boolean":
        if pd.api.types.is_bool_dtype(dtype):
            return column
        ok = _scalar_mask(column, lambda v: isinstance(v, bool | np.bool_))
        if ok.all():
            return column.astype(bool)
    elif kind == "datetime":
        if pd.api.types.is_datetime64_any_dtype(dtype):
            return column
        ok = _scalar_mask(column, lambda v: v is None or _nan(v) or _parses_datetime(v))
        if ok.all():
            try:
                return pd.to_datetime(column, format="ISO8601")
            except (ValueError, TypeError, OverflowError) as exc:  # e.g. mixed time zones
                problems.append({"field": f"{where}.{spec.name}", "problem": str(exc)})
                return column
    else:  # a type this server does not convert (binary, arrays, objects): passed as given
        return column
    expected = _TYPE_WORDS.get(kind, kind)
    rows = np.flatnonzero(~ok.to_numpy())
    for i in rows[: MAX_PROBLEMS + 1]:
        value = column.iloc[int(i)]
        problems.append(
            {
                "field": f"{where}[{int(i)}].{spec.name}",
                "problem": f"expected {expected} ({kind}), got {_show(value)}",
            }
        )
    return column


def _scalar_mask(column: pd.Series, test: Any) -> pd.Series:
    """Which values pass ``test`` (only used once the fast dtype check failed)."""
    return column.map(test, na_action=None).astype(bool)


def _fits_double(v: Any) -> bool:
    """False for an integer beyond a double's range (other values: True)."""
    if not isinstance(v, int):
        return True
    try:
        float(v)
    except OverflowError:
        return False
    return True


def _nan(v: Any) -> bool:
    return isinstance(v, float) and math.isnan(v)


def _is_number(v: Any) -> bool:
    import numpy as np

    return v is None or (isinstance(v, int | float | np.number) and not isinstance(v, bool))


def _is_integral(v: Any) -> bool:
    import numpy as np

    if isinstance(v, bool | np.bool_):
        return False
    if isinstance(v, int | np.integer):
        return True
    return isinstance(v, float | np.floating) and math.isfinite(v) and float(v).is_integer()


def _parses_float(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        float(v)
    except ValueError:
        return False
    return True


def _parses_datetime(v: Any) -> bool:
    """An ISO 8601 date or time stamp (as JSON and CSV carry datetimes)."""
    import datetime as dt

    if not isinstance(v, str):
        return False
    try:
        dt.datetime.fromisoformat(v)
    except ValueError:
        return False
    return True


def _parses_int(v: Any) -> bool:
    if not isinstance(v, str):
        return False
    try:
        int(v)
    except ValueError:
        return False
    return True


def _show(value: Any) -> str:
    """A value as the client wrote it, short: ``'abc'``, ``null``, ``true``, ``[1, 2]``."""
    if value is None or _nan(value):
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        text = repr(value)
    elif isinstance(value, dict | list):
        text = orjson.dumps(value, default=str).decode()
    else:
        text = str(value)
    return text if len(text) <= 60 else text[:57] + "..."
