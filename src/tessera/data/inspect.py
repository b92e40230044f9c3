"""Summaries of stored tables, and what changed between two of them."""

from __future__ import annotations

import math
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

NUMERIC_STATS = ("mean", "std", "min", "max")


def _clean(value: Any) -> Any:
    if isinstance(value, float) and (math.isnan(value) or math.isinf(value)):
        return None
    if hasattr(value, "isoformat"):
        return value.isoformat()
    return value


def short_type(t: pa.DataType) -> str:
    """``category``, ``string``, ``timestamp``... rather than Arrow's full type strings."""
    if pa.types.is_dictionary(t):
        return "category"
    if pa.types.is_string(t) or pa.types.is_large_string(t):
        return "string"
    if pa.types.is_timestamp(t):
        return "timestamp" + (f"[{t.tz}]" if t.tz else "")
    return {"double": "float64", "float": "float32", "halffloat": "float16"}.get(str(t), str(t))


def summarize(table: pa.Table) -> dict[str, Any]:
    """Schema, row count and per-column statistics of a table (JSON-able)."""
    columns = []
    for name, column in zip(table.column_names, table.columns, strict=True):
        t = column.type
        stats: dict[str, Any] = {
            "name": name,
            "type": short_type(t),
            "arrow_type": str(t),
            "nulls": column.null_count,
        }
        if pa.types.is_dictionary(t):
            column = column.cast(t.value_type)
            t = t.value_type
        if pa.types.is_integer(t) or pa.types.is_floating(t) or pa.types.is_boolean(t):
            numeric = column.cast(pa.float64()) if pa.types.is_boolean(t) else column
            stats["mean"] = _clean(pc.mean(numeric).as_py())
            stats["std"] = _clean(pc.stddev(numeric, ddof=1).as_py()) if len(column) > 1 else None
            bounds = pc.min_max(numeric).as_py()
            stats["min"], stats["max"] = _clean(bounds["min"]), _clean(bounds["max"])
        elif pa.types.is_temporal(t):
            bounds = pc.min_max(column).as_py()
            stats["min"], stats["max"] = _clean(bounds["min"]), _clean(bounds["max"])
        if not pa.types.is_floating(t):
            stats["distinct"] = pc.count_distinct(column, mode="only_valid").as_py()
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            top = pc.value_counts(column.drop_null()).to_pylist()
            top.sort(key=lambda v: (-v["counts"], str(v["values"])))
            stats["top"] = [[v["values"], v["counts"]] for v in top[:3]]
        columns.append(stats)
    return {"rows": table.num_rows, "columns": columns}


def diff(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """What changed from summary ``a`` to summary ``b``."""
    cols_a = {c["name"]: c for c in a["columns"]}
    cols_b = {c["name"]: c for c in b["columns"]}
    changes: list[dict[str, Any]] = []
    for name in [n for n in cols_a if n in cols_b]:
        ca, cb = cols_a[name], cols_b[name]
        for key in ("arrow_type", "nulls", "distinct", *NUMERIC_STATS):
            va, vb = ca.get(key), cb.get(key)
            if va != vb and not _close(va, vb):
                changes.append({"column": name, "stat": key, "before": va, "after": vb})
    return {
        "rows": {"before": a["rows"], "after": b["rows"], "change": b["rows"] - a["rows"]},
        "added": [n for n in cols_b if n not in cols_a],
        "removed": [n for n in cols_a if n not in cols_b],
        "type_changes": [c for c in changes if c["stat"] == "arrow_type"],
        "stat_changes": [c for c in changes if c["stat"] != "arrow_type"],
    }


def _close(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return False
