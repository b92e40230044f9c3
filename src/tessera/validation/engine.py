"""Validating a table against a schema with pandera, lazily: every failure at once.

The schema becomes a pandera ``DataFrameSchema`` whose checks are plain functions named after the
schema's rules; pandera's failure cases are then mapped back to those rules (``not_null``,
``unique``, ``in_range``, ``isin``, ``regex``, the custom checks' names). Types are checked
here rather than by pandera, so that ``string``, ``datetime`` and the numeric families accept
whichever pandas type holds such values, and so that a wrong type is one clear failure that
lists the values that do not fit. Bad data never raises: it is what the report is for.

Pandas and pandera are imported inside the functions: importing this module is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from tessera.validation import dtypes
from tessera.validation.report import MAX_SAMPLES, TABLE, Failure, ValidationReport
from tessera.validation.schema import BoundCheck, Schema

if TYPE_CHECKING:
    import pandas as pd

#: Order of a column's rules in the report.
_RULE_ORDER = ("required", "dtype", "not_null", "unique", "in_range", "isin", "regex")
_SAMPLE_WIDTH = 60


@dataclass(frozen=True)
class _Rule:
    """What a pandera check stands for in the report."""

    column: str
    check: str
    expected: str
    order: tuple[int, int, int]
    #: Columns shown in the samples of a table check (all of them when empty).
    shows: tuple[str, ...] = ()


def validate(df: pd.DataFrame, schema: Schema) -> ValidationReport:
    """Check ``df`` against ``schema`` and report every failure; never raises for bad data.

    Args:
        df: the table. Its index is ignored: rows are reported by position.
        schema: from ``load_schema``.

    Returns:
        The report: ``report.ok``, ``report.summary`` and ``report.frame`` (one row per failing
        check with its column, check, failure count, up to 5 sample values, the rule in words and
        up to 5 row positions).
    """
    frame = df.reset_index(drop=True)
    failures: list[tuple[tuple[int, int, int], Failure]] = []
    duplicated = frame.columns.duplicated()
    if duplicated.any():  # checked once, then the first of each name stands for it
        names = tuple(dict.fromkeys(str(c) for c in frame.columns[duplicated]))
        note = f"duplicate column{'s' if len(names) > 1 else ''} {', '.join(names)}"
        twice = Failure(TABLE, "columns", len(names), names, "distinct column names", note=note)
        failures.append(((0, 2, 0), twice))
        frame = frame.loc[:, ~duplicated]
    order = _Order(schema, frame)
    failures += _row_count(frame, schema)
    # Columns holding values of another type: comparing them with bounds says nothing more.
    mistyped: set[str] = set()
    for name, spec in schema.columns.items():
        if spec.dtype is None or name not in frame.columns:
            continue
        wrong_type = _dtype_failure(frame[name], name, spec.dtype)
        if wrong_type is not None:
            if wrong_type.samples:
                mistyped.add(name)
            failures.append((order.column(name, "dtype"), wrong_type))
    failures += _pandera(frame, schema, order, mistyped)
    failures.sort(key=lambda item: item[0])
    return ValidationReport(
        schema=schema.name,
        rows_checked=len(frame),
        checks=schema.rule_count(),
        failures=tuple(f for _, f in failures),
    )


class _Order:
    """Sort keys: the table's shape first, then columns in schema order, then table rules."""

    def __init__(self, schema: Schema, frame: pd.DataFrame) -> None:
        names = list(schema.columns) + [c for c in frame.columns if c not in schema.columns]
        self.position = {name: i for i, name in enumerate(names)}

    def column(self, name: str, rule: str, index: int | None = None) -> tuple[int, int, int]:
        position = self.position.get(name, len(self.position))
        if rule in _RULE_ORDER:
            return (1, position, _RULE_ORDER.index(rule))
        return (1, position, len(_RULE_ORDER) + (index or 0))


def _row_count(frame: pd.DataFrame, schema: Schema) -> list[tuple[tuple[int, int, int], Failure]]:
    rows = schema.spec.rows
    if rows is None:
        return []
    n = len(frame)
    if rows.min is not None and rows.max is not None:
        expected = f"between {rows.min} and {_rows(rows.max)}"
    elif rows.min is not None:
        expected = f"at least {_rows(rows.min)}"
    else:
        expected = f"at most {_rows(rows.max or 0)}"
    too_few = rows.min is not None and n < rows.min
    too_many = rows.max is not None and n > rows.max
    if not (too_few or too_many):
        return []
    failure = Failure(
        TABLE, "rows", 1, (_rows(n),), expected, note=f"{_rows(n)}, expected {expected}"
    )
    return [((0, 0, 0), failure)]


def _rows(n: int) -> str:
    return f"{n} row{'' if n == 1 else 's'}"


def _dtype_failure(series: pd.Series, name: str, dtype: str) -> Failure | None:
    if dtypes.matches(series, dtype):
        return None
    got = dtypes.describe(series.dtype)
    expected = f"{dtype}, got {got}"
    try:
        bad = dtypes.misfits(series, dtype)
    except Exception:  # a column of unusual objects: report the type alone
        bad = None
    if bad is not None and bool(bad.any()):
        positions = [int(i) for i in bad.to_numpy().nonzero()[0]]
        return Failure(
            name,
            "dtype",
            len(positions),
            _samples(series.iloc[positions]),
            expected,
            tuple(positions[:MAX_SAMPLES]),
            note=f"expected {expected}",
        )
    return Failure(name, "dtype", len(series), (), expected, note=f"expected {expected}")


def _pandera(
    frame: pd.DataFrame, schema: Schema, order: _Order, mistyped: set[str]
) -> list[tuple[tuple[int, int, int], Failure]]:
    import pandera.pandas as pa
    from pandera.errors import SchemaError, SchemaErrors

    # Keyed by (column, index of the check in the column's checks) and (None, index) for table
    # checks: pandera hands back copies of the check objects, with their position.
    rules: dict[tuple[str | None, int], _Rule] = {}
    raised: dict[tuple[str | None, int], BaseException] = {}
    columns = {}
    for name, spec in schema.columns.items():
        checks: list[Any] = []
        for rule, fn, expected in _column_rules(spec):
            key = (name, len(checks))
            rules[key] = _Rule(name, rule, expected, order.column(name, rule))
            checks.append(pa.Check(_guard(fn, key, raised), name=rule, ignore_na=True))
        for i, bound in enumerate(schema.column_checks.get(name, ())):
            key = (name, len(checks))
            rules[key] = _Rule(
                name, bound.name, bound.describe(), order.column(name, bound.name, i)
            )
            checks.append(pa.Check(_guard(_custom(bound), key, raised), name=bound.name))
        columns[name] = pa.Column(
            None,
            checks=checks,
            nullable=spec.nullable,
            required=spec.required,
            name=name,
        )
    table_checks = []
    for i, bound in enumerate(schema.table_checks):
        shows = tuple(c for c in _named_columns(bound.params) if c in frame.columns)
        rules[None, i] = _Rule(TABLE, bound.name, bound.describe(), (2, 1, i), shows)
        fn = _guard(_custom(bound), (None, i), raised)
        table_checks.append(pa.Check(fn, name=bound.name, ignore_na=False))
    unique = schema.spec.unique
    if unique is not None and not all(c in frame.columns for c in unique):
        unique = None  # the missing column is reported as such; the combination cannot be
    pandera_schema = pa.DataFrameSchema(
        columns, checks=table_checks, strict=schema.spec.strict, unique=unique
    )
    try:
        pandera_schema.validate(frame, lazy=True)
    except SchemaErrors as exc:
        errors: list[Any] = list(exc.schema_errors)
    except SchemaError as exc:
        errors = [exc]
    except Exception as exc:  # pandera itself failed: say so rather than crash
        failure = Failure(
            TABLE,
            "schema",
            1,
            (),
            f"the validation could not run: {type(exc).__name__}: {exc}",
            note=f"could not run: {type(exc).__name__}: {exc}",
        )
        return [((0, 1, 0), failure)]
    else:
        return []
    return _Mapper(frame, schema, order, rules, raised, mistyped).failures(errors)


def _column_rules(spec: Any) -> list[tuple[str, Callable[[Any], Any], str]]:
    """The built-in value rules of a column: (name, check function, rule in words)."""
    rules: list[tuple[str, Callable[[Any], Any], str]] = []
    if spec.unique:
        rules.append(("unique", lambda s: ~s.duplicated(keep=False), "distinct values"))
    if spec.min is not None or spec.max is not None:
        parts = []
        if spec.min is not None:
            parts.append(f"{'>' if spec.min_exclusive else '>='} {spec.min}")
        if spec.max is not None:
            parts.append(f"{'<' if spec.max_exclusive else '<='} {spec.max}")
        rules.append(
            (
                "in_range",
                lambda s: _in_range(s, spec.min, spec.max, spec.min_exclusive, spec.max_exclusive),
                " and ".join(parts),
            )
        )
    if spec.isin is not None:
        values = list(spec.isin)
        rules.append(("isin", lambda s: s.isin(values), f"one of {_listed(values)}"))
    if spec.regex is not None:
        pattern = spec.regex
        rules.append(("regex", lambda s: _fullmatch(s, pattern), f"matches {pattern}"))
    return rules


def _listed(values: list[Any], limit: int = 10) -> str:
    shown = ", ".join(_text(v) for v in values[:limit])
    return shown + (f", ... ({len(values)} in all)" if len(values) > limit else "")


def _bound(series: pd.Series, value: Any) -> Any:
    """A schema bound comparable with ``series`` (ISO text becomes a timestamp for dates)."""
    import pandas as pd

    if not (isinstance(value, str) and getattr(series.dtype, "kind", "") == "M"):
        return value
    stamp = pd.Timestamp(value)
    tz = getattr(series.dtype, "tz", None)
    if tz is not None:
        return stamp.tz_localize(tz) if stamp.tzinfo is None else stamp.tz_convert(tz)
    return stamp.tz_convert("UTC").tz_localize(None) if stamp.tzinfo is not None else stamp


def _in_range(
    series: pd.Series, lo: Any, hi: Any, lo_exclusive: bool, hi_exclusive: bool
) -> pd.Series:
    import pandas as pd

    ok = pd.Series(True, index=series.index)
    if lo is not None:
        low = _bound(series, lo)
        ok &= (series > low) if lo_exclusive else (series >= low)
    if hi is not None:
        high = _bound(series, hi)
        ok &= (series < high) if hi_exclusive else (series <= high)
    return ok


def _fullmatch(series: pd.Series, pattern: str) -> pd.Series:
    """Whole-value matches; values that are not text are matched by their text form."""
    return series.astype("string").str.fullmatch(pattern).fillna(False).astype(bool)


def _guard(
    fn: Callable[[Any], Any],
    key: tuple[str | None, int],
    raised: dict[tuple[str | None, int], BaseException],
) -> Callable[[Any], Any]:
    """``fn``, remembering what it raised (pandera keeps only a repr of the exception)."""

    def run(data: Any) -> Any:
        try:
            return fn(data)
        except Exception as exc:
            raised[key] = exc
            raise

    return run


def _custom(bound: BoundCheck) -> Callable[[Any], Any]:
    """The check as pandera calls it, its result made a boolean Series or a bool."""

    def run(data: Any) -> Any:
        return _outcome(bound.check.call(data, bound.config), data, bound.name)

    return run


def _outcome(result: Any, data: Any, name: str) -> Any:
    import numpy as np
    import pandas as pd
    from pandas.api.types import infer_dtype, is_bool_dtype

    if isinstance(result, bool | np.bool_):
        return bool(result)
    if isinstance(result, pd.DataFrame):
        result = result.all(axis=1)
    if isinstance(result, np.ndarray | list):
        result = pd.Series(result)
    if not isinstance(result, pd.Series):
        raise TypeError(
            f"check '{name}' must return a boolean Series or a bool, got {type(result).__name__}"
        )
    if len(result) != len(data):
        raise ValueError(f"check '{name}' returned {len(result)} values for {len(data)} rows")
    if not is_bool_dtype(result.dtype) and infer_dtype(result, skipna=True) not in (
        "boolean",
        "empty",
    ):
        raise TypeError(f"check '{name}' must return booleans, got values of type {result.dtype}")
    if not result.index.equals(data.index):
        result = pd.Series(result.to_numpy(), index=data.index)
    # A missing outcome is not a failure: the check could not tell.
    return result.astype("boolean").fillna(True).astype(bool)


def _named_columns(params: dict[str, Any]) -> list[str]:
    """Column names a table check's params mention (``left: start``, ``columns: [a, b]``)."""
    names: list[str] = []
    for value in params.values():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and item not in names:
                names.append(item)
    return names


class _Mapper:
    """Turns pandera's schema errors into report failures."""

    def __init__(
        self,
        frame: pd.DataFrame,
        schema: Schema,
        order: _Order,
        rules: dict[tuple[str | None, int], _Rule],
        raised: dict[tuple[str | None, int], BaseException],
        mistyped: set[str],
    ) -> None:
        self.frame = frame
        self.schema = schema
        self.order = order
        self.rules = rules
        self.raised = raised
        self.mistyped = mistyped

    def failures(self, errors: Iterable[Any]) -> list[tuple[tuple[int, int, int], Failure]]:
        out: list[tuple[tuple[int, int, int], Failure]] = []
        extra: list[str] = []
        for err in errors:
            reason = getattr(err.reason_code, "name", str(err.reason_code))
            rule = self._rule(err)
            if reason == "COLUMN_NOT_IN_SCHEMA":
                extra.append(str(err.failure_cases))
            elif reason == "COLUMN_NOT_IN_DATAFRAME":
                name = str(err.failure_cases)
                failure = Failure(name, "required", 1, (), "the column exists", note="missing")
                out.append((self.order.column(name, "required"), failure))
            elif (
                rule is not None
                and rule.column in self.mistyped
                and (reason == "CHECK_ERROR" or rule.check == "in_range")
            ):
                continue  # the dtype failure already lists the values of the wrong type
            elif reason == "CHECK_ERROR" and rule is not None:
                exc = self.raised.get(self._key(err) or (None, -1))
                error = f"{type(exc).__name__}: {exc}" if exc else str(err.failure_cases)
                failure = Failure(
                    rule.column,
                    rule.check,
                    len(self.frame),
                    (),
                    f"{rule.expected}; the check raised {error}".lstrip("; "),
                    note=f"raised {error}",
                )
                out.append((rule.order, failure))
            elif rule is not None:
                out.append((rule.order, self._rows(rule, err.failure_cases)))
            elif reason == "SERIES_CONTAINS_NULLS":
                name = str(err.schema.name)
                key = self.order.column(name, "not_null")
                rule = _Rule(name, "not_null", "no missing values", key)
                out.append((rule.order, self._rows(rule, err.failure_cases)))
            elif reason == "DUPLICATES":
                cols = tuple(self.schema.spec.unique or ())
                rule = _Rule(
                    TABLE, "unique", f"unique combinations of {', '.join(cols)}", (2, 0, 0), cols
                )
                out.append((rule.order, self._rows(rule, err.failure_cases)))
            else:  # anything pandera adds later: reported as pandera names it
                column = getattr(err.schema, "name", None) or TABLE
                rule = _Rule(str(column), str(err.check), str(reason).lower(), (3, 0, 0))
                out.append((rule.order, self._rows(rule, err.failure_cases)))
        if extra:
            failure = Failure(
                TABLE,
                "strict",
                len(extra),
                tuple(extra[:MAX_SAMPLES]),
                "only the schema's columns",
                note=f"unexpected column{'s' if len(extra) > 1 else ''} {', '.join(extra)}",
            )
            out.append(((0, 1, 0), failure))
        return out

    def _key(self, err: Any) -> tuple[str | None, int] | None:
        """(column or None, check index) of a failed pandera check; None for pandera's own."""
        import pandera.pandas as pa

        index = getattr(err, "check_index", None)
        if not isinstance(index, int):
            return None
        if isinstance(err.schema, pa.Column):
            return (str(err.schema.name), index)
        if isinstance(err.schema, pa.DataFrameSchema):
            return (None, index)
        return None

    def _rule(self, err: Any) -> _Rule | None:
        """The schema rule behind a failed pandera check (None for pandera's own checks)."""
        key = self._key(err)
        return None if key is None else self.rules.get(key)

    def _rows(self, rule: _Rule, cases: Any) -> Failure:
        import pandas as pd

        if not isinstance(cases, pd.DataFrame) or "index" not in cases:
            # The check judged the column (or table) as a whole.
            return Failure(rule.column, rule.check, 1, (), rule.expected, note="failed")
        index = pd.Series(cases["index"]).dropna()
        positions = sorted({int(i) for i in index if _is_position(i, len(self.frame))})
        if not positions:
            return Failure(rule.column, rule.check, 1, (), rule.expected, note="failed")
        if rule.column == TABLE:
            shown = list(rule.shows) or list(self.frame.columns[:4])
            rows = self.frame.iloc[positions][shown]
            values = [
                ", ".join(f"{c}={_text(v)}" for c, v in zip(shown, row, strict=True))
                for row in rows.itertuples(index=False, name=None)
            ]
            samples = _distinct(values)
        else:
            samples = _samples(self.frame[rule.column].iloc[positions])
        return Failure(
            rule.column,
            rule.check,
            len(positions),
            samples,
            rule.expected,
            tuple(positions[:MAX_SAMPLES]),
        )


def _is_position(value: Any, n: int) -> bool:
    try:
        return float(value).is_integer() and 0 <= int(value) < n
    except (TypeError, ValueError):
        return False


def _samples(values: pd.Series) -> tuple[str, ...]:
    return _distinct(_text(v) for v in values)


def _distinct(texts: Iterable[str]) -> tuple[str, ...]:
    seen: list[str] = []
    for text in texts:
        if text not in seen:
            seen.append(text)
            if len(seen) == MAX_SAMPLES:
                break
    return tuple(seen)


def _text(value: Any) -> str:
    """A value as a report shows it: text as is (quoted when spaces would hide), null as null."""
    import pandas as pd

    try:
        missing = bool(pd.isna(value))
    except (TypeError, ValueError):
        missing = False
    if missing:
        return "null"
    if isinstance(value, str):
        text = value
        if not text or text != text.strip() or not text.isprintable():
            text = repr(text)
    elif isinstance(value, float):
        text = repr(value) if math.isfinite(value) else str(value)
        if len(text) > 12:  # -2.3250307746388343: six decimals say enough
            fixed = 1e-4 <= abs(value) < 1e12
            text = f"{value:.6f}".rstrip("0").rstrip(".") if fixed else f"{value:.6g}"
    elif isinstance(value, pd.Timestamp):
        midnight = value.tzinfo is None and value == value.normalize()
        text = value.strftime("%Y-%m-%d") if midnight else value.isoformat(sep=" ")
    else:
        text = str(value)
    return text if len(text) <= _SAMPLE_WIDTH else text[: _SAMPLE_WIDTH - 3] + "..."
