"""Drafting a schema from existing data, as commented YAML for a person to review.

The draft describes the data it was made from, so that data always passes it: the exact dtype,
``nullable`` where values are missing, ``min``/``max`` rounded outward to round numbers (or whole
days), ``isin`` for text and categories with few distinct values, a ``regex`` for text whose
values all share one shape (``C\\d{5}``), ``unique`` for id-like columns, and ``strict``.
"""

from __future__ import annotations

import math
import re
from typing import TYPE_CHECKING, Any

from tessera.validation import dtypes

if TYPE_CHECKING:
    import pandas as pd

#: Text columns with at most this many distinct values get an ``isin`` list...
MAX_ISIN = 20
#: ... when each value appears at least this many times on average (so ids never do).
MIN_REPEATS = 2
#: Longest values a drafted ``regex`` describes; more distinct values than this are not scanned.
_MAX_PATTERN_LENGTH = 40
_MAX_PATTERN_VALUES = 100_000
_ID_NAME = re.compile(r"(^|_)(id|key|code|uuid)$|Id$|ID$", re.I)
_COMMENT_COLUMN = 40


def draft_schema(df: pd.DataFrame, name: str | None = None, *, source: str | None = None) -> str:
    """A schema describing ``df``, as commented YAML (see docs/validation.md).

    Args:
        df: the data to describe.
        name: the schema's ``name:`` (the table's name, say); omitted when None.
        source: where the data came from, for the heading comment (default: ``name``).

    Returns:
        YAML text that ``load_schema`` accepts and that ``df`` passes.
    """
    frame = df.reset_index(drop=True)
    n = len(frame)
    lines = [
        f"# Schema drafted from {source or name or 'a table'} "
        f"({n:,} rows, {len(frame.columns)} columns).",
        "# Each rule describes this data: keep the ones that must always hold, tighten the",
        "# bounds, and delete the rest. The format is described in docs/validation.md.",
    ]
    if name:
        lines.append(f"name: {_scalar(name)}")
    lines.append("columns:")
    for column in frame.columns:
        lines.append(f"  {_scalar(str(column))}:")
        lines += [f"    {line}" for line in _column(frame[column], str(column))]
    if n:
        lines.append("rows:")
        lines.append(_commented("  min: 1", f"this data has {n:,} rows"))
    lines.append(_commented("strict: true", "columns not listed above are errors"))
    return "\n".join(_aligned(lines)) + "\n"


def _column(series: pd.Series, name: str) -> list[str]:
    n = len(series)
    missing = int(series.isna().sum())
    present = series.dropna()
    dtype = dtypes.draft_name(series)
    lines: list[str] = []
    if dtype is not None:
        lines.append(f"dtype: {dtype}")
    if missing:
        share = f"{100 * missing / n:.1f}%" if n else ""
        lines.append(_commented("nullable: true", f"{missing:,} missing ({share})"))
    if present.empty or dtype is None:
        return lines or ["required: true"]
    if dtype in ("string", "category", "object"):
        lines += _text_rules(series, present, name, dtype)
    elif dtype not in ("bool", "boolean", "timedelta"):
        if dtypes.is_numeric(dtype):
            lines += _number_rules(present, dtype)
            if dtypes.canonical(dtype) in ("int", *_INTS) and _id_like(name, present, missing):
                lines.append("unique: true")
        elif dtypes.is_datetime(dtype):
            lines += _date_rules(present)
    return lines


_INTS: tuple[str, ...] = ("int8", "int16", "int32", "int64", "uint8", "uint16", "uint32")
_INTS += ("uint64", "Int8", "Int16", "Int32", "Int64", "UInt8", "UInt16", "UInt32", "UInt64")


def _id_like(name: str, present: pd.Series, missing: int) -> bool:
    """Unique values in a column named like an id, or in a large enough sample."""
    if missing or len(present) < 2 or not present.is_unique:
        return False
    return bool(_ID_NAME.search(name)) or len(present) >= 100


def _text_rules(series: pd.Series, present: pd.Series, name: str, dtype: str) -> list[str]:
    lines: list[str] = []
    if dtype == "category":
        categories = list(series.cat.categories)
        if len(categories) <= MAX_ISIN * 2 and all(_plain(v) for v in categories):
            lines.append(f"isin: {_flow([_python(v) for v in categories])}")
        return lines
    if dtype != "string":
        return lines
    counts = present.value_counts()
    distinct = len(counts)
    if distinct <= MAX_ISIN and len(present) >= MIN_REPEATS * distinct:
        values = sorted(str(v) for v in counts.index)
        return [_commented(f"isin: {_flow(values)}", f"{distinct} distinct values seen")]
    if distinct <= _MAX_PATTERN_VALUES:
        pattern = _pattern([str(v) for v in counts.index])
        if pattern is not None:
            lines.append(f"regex: {_scalar(pattern)}")
    if _id_like(name, present, int(series.isna().sum())):
        lines.append("unique: true")
    elif distinct > MAX_ISIN:
        lines.append(f"# {distinct:,} distinct values")
    return lines


def _number_rules(present: pd.Series, dtype: str) -> list[str]:
    import numpy as np

    values = present.astype("float64").to_numpy()
    if not np.isfinite(values).all():
        return []
    integer = dtypes.canonical(dtype) in ("int", *_INTS)
    if integer:
        lo_seen: float | int = int(present.min())
        hi_seen: float | int = int(present.max())
    else:
        lo_seen, hi_seen = float(values.min()), float(values.max())
    lo, hi = outward(lo_seen, hi_seen, integer=integer)
    return [
        _commented(f"min: {_scalar(lo)}", f"smallest seen: {_number(lo_seen)}"),
        _commented(f"max: {_scalar(hi)}", f"largest seen: {_number(hi_seen)}"),
    ]


def _date_rules(present: pd.Series) -> list[str]:
    lo_seen, hi_seen = present.min(), present.max()
    lo, hi = lo_seen.floor("D"), hi_seen.ceil("D")
    return [
        _commented(f"min: {_scalar(_iso(lo))}", f"earliest seen: {_iso(lo_seen)}"),
        _commented(f"max: {_scalar(_iso(hi))}", f"latest seen: {_iso(hi_seen)}"),
    ]


def _iso(stamp: Any) -> str:
    if stamp.tzinfo is not None:
        return str(stamp.isoformat())
    if stamp == stamp.normalize():
        return str(stamp.strftime("%Y-%m-%d"))
    return str(stamp.isoformat(sep=" "))


def outward(lo: float, hi: float, *, integer: bool = False) -> tuple[float, float]:
    """``lo`` and ``hi`` rounded outward to about two significant digits of the range.

    The step is a power of ten, a tenth to a hundredth of the range: ``outward(18, 999)`` is
    ``(10, 1000)``, ``outward(0.134, 0.871)`` is ``(0.13, 0.88)``; a constant stays itself.
    Integer columns keep integer bounds.
    """
    span = hi - lo
    reference = span if span > 0 else max(abs(lo), abs(hi))
    if reference == 0:
        return lo, hi
    exponent = math.floor(math.log10(reference)) - 1
    if integer:
        step = 10 ** max(exponent, 0)
        low = int(lo) // step * step
        high = -(-int(hi) // step) * step
        return low, high
    decimals = max(0, -exponent)
    step_f = 10.0**exponent
    low_f = round(math.floor(lo / step_f) * step_f, decimals)
    high_f = round(math.ceil(hi / step_f) * step_f, decimals)
    while low_f > lo:
        low_f = round(low_f - step_f, decimals)
    while high_f < hi:
        high_f = round(high_f + step_f, decimals)
    return _tidy(low_f), _tidy(high_f)


def _tidy(value: float) -> float:
    return int(value) if value.is_integer() and abs(value) < 1e15 else value


def _pattern(values: list[str]) -> str | None:
    """A regex all ``values`` fully match, from one shape shared by all of them, or None.

    Every value must have the same length; each position is either always the same character or
    always a digit / an upper-case letter / a lower-case letter / alphanumeric.
    """
    if len(values) < 2:
        return None
    length = len(values[0])
    if not 0 < length <= _MAX_PATTERN_LENGTH or any(len(v) != length for v in values):
        return None
    parts: list[tuple[str, str]] = []
    for chars in zip(*values, strict=True):
        distinct = set(chars)
        if len(distinct) == 1:
            parts.append(("literal", re.escape(chars[0])))
            continue
        if not all(c.isascii() for c in distinct):
            return None
        if all(c.isdigit() for c in distinct):
            parts.append(("class", r"\d"))
        elif all(c.isupper() for c in distinct):
            parts.append(("class", "[A-Z]"))
        elif all(c.islower() for c in distinct):
            parts.append(("class", "[a-z]"))
        elif all(c.isalnum() for c in distinct):
            parts.append(("class", "[A-Za-z0-9]"))
        else:
            return None
    if all(kind == "literal" for kind, _ in parts):
        return None
    _widen_digits(parts)
    out: list[str] = []
    i = 0
    while i < len(parts):
        kind, text = parts[i]
        j = i
        while j + 1 < len(parts) and parts[j + 1] == parts[i] and kind == "class":
            j += 1
        run = j - i + 1
        out.append(f"{text}{{{run}}}" if run > 1 else text)
        i = j + 1
    return "".join(out)


def _widen_digits(parts: list[tuple[str, str]]) -> None:
    """In a run of digits that varies somewhere, every digit may vary (``C00\\d{3}`` is
    ``C\\d{5}``: the leading zeros only mean there are few ids so far)."""
    digit = ("class", r"\d")
    i = 0
    while i < len(parts):
        j = i
        while j < len(parts) and (parts[j] == digit or parts[j][1].isdigit()):
            j += 1
        if j > i and digit in parts[i:j]:
            parts[i:j] = [digit] * (j - i)
        i = max(j, i + 1)


def _plain(value: Any) -> bool:
    """Whether a category can be written in YAML as itself."""
    import numpy as np

    return isinstance(value, str | int | float | bool | np.integer | np.floating | np.bool_)


def _python(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def _number(value: float) -> str:
    return str(_tidy(float(value))) if isinstance(value, float) else str(value)


def _scalar(value: Any) -> str:
    """``value`` as one line of YAML, quoted when it has to be."""
    import yaml

    text = yaml.safe_dump(value, default_flow_style=True, width=10**9, allow_unicode=True)
    return text.removesuffix("\n").removesuffix("\n...").strip()


def _flow(values: list[Any]) -> str:
    return "[" + ", ".join(_scalar(v) for v in values) + "]"


_COMMENT = "\0"


def _commented(line: str, comment: str) -> str:
    """A line with a trailing comment, aligned with the others by ``_aligned``."""
    return f"{line}{_COMMENT}{comment}"


def _aligned(lines: list[str]) -> list[str]:
    out = []
    for line in lines:
        text, sep, comment = line.partition(_COMMENT)
        out.append(f"{text.ljust(_COMMENT_COLUMN - 2)}  # {comment}" if sep else text)
    return out
