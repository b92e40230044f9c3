"""Content fingerprints of tables that do not depend on how the table happens to be stored.

The same rows and columns (names, logical types, values, nulls) give the same fingerprint whether
the table was built in memory or read back from Parquet, whatever its chunking, compression or
string offset width. Each column feeds two streams, validity (global null positions) and values,
so chunk boundaries never show. Fixed-width buffers are hashed in place (xxh3 runs at several
GB/s), so fingerprinting is bound by memory bandwidth.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import xxhash

_VERSION = b"tessera-table-v1"


def _type_name(t: pa.DataType) -> str:
    if pa.types.is_dictionary(t):
        return f"dictionary<{_type_name(t.value_type)}>"
    if pa.types.is_string(t) or pa.types.is_large_string(t) or _is_view(t, "string"):
        return "string"
    if pa.types.is_binary(t) or pa.types.is_large_binary(t) or _is_view(t, "binary"):
        return "binary"
    return str(t)


def _is_view(t: pa.DataType, kind: str) -> bool:
    return str(t) == f"{kind}_view"


def fingerprint_table(table: pa.Table) -> str:
    """Fingerprint (32 hex digits) of a table's schema and contents."""
    h = xxhash.xxh3_128()
    h.update(_VERSION)
    h.update(str(table.num_rows).encode())
    for name, column in zip(table.column_names, table.columns, strict=True):
        h.update(b"\x1e" + name.encode() + b"\x1f" + _type_name(column.type).encode())
        h.update(_hash_column(column))
    return h.hexdigest()


def _hash_column(column: pa.ChunkedArray) -> bytes:
    validity = xxhash.xxh3_128()
    values = xxhash.xxh3_128()
    lengths = xxhash.xxh3_128()
    start = 0
    for chunk in column.chunks:
        if len(chunk) == 0:
            continue
        if chunk.null_count:
            nulls = np.flatnonzero(chunk.is_null().to_numpy(zero_copy_only=False)) + start
            validity.update(nulls.astype(np.int64).tobytes())
        _feed(chunk, values, lengths)
        start += len(chunk)
    return validity.digest() + values.digest() + lengths.digest()


def _feed(chunk: pa.Array, values: Any, lengths: Any) -> None:
    t = chunk.type
    if pa.types.is_dictionary(t):
        chunk = chunk.dictionary_decode()
        t = chunk.type
    if pa.types.is_string(t) or pa.types.is_large_string(t) or _is_view(t, "string"):
        _feed_binary(chunk, pa.large_string(), "", values, lengths)
    elif pa.types.is_binary(t) or pa.types.is_large_binary(t) or _is_view(t, "binary"):
        _feed_binary(chunk, pa.large_binary(), b"", values, lengths)
    elif pa.types.is_boolean(t):
        filled = chunk.fill_null(False) if chunk.null_count else chunk
        values.update(filled.to_numpy(zero_copy_only=False).tobytes())
    elif _fixed_width(t):
        if chunk.null_count:
            chunk = pc.if_else(chunk.is_valid(), chunk, pa.scalar(0).cast(t))
        width = t.bit_width // 8
        buf = chunk.buffers()[1]
        values.update(memoryview(buf)[chunk.offset * width : (chunk.offset + len(chunk)) * width])
    else:  # nested and other rare types: value by value (slower, but exact and chunk-free)
        for value in chunk.to_pylist():
            values.update(repr(value).encode() + b"\x1e")


def _fixed_width(t: pa.DataType) -> bool:
    """Types stored as one buffer of fixed-size values (numbers, dates, times, decimals...)."""
    try:
        width = t.bit_width
    except ValueError:  # lists, structs, maps...: not fixed width
        return False
    return t.num_buffers == 2 and width > 0 and width % 8 == 0


def _feed_binary(chunk: pa.Array, wide: pa.DataType, empty: Any, values: Any, lengths: Any) -> None:
    if chunk.null_count:
        chunk = chunk.fill_null(empty)
    chunk = chunk.cast(wide)
    bufs = chunk.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[chunk.offset : chunk.offset + len(chunk) + 1]
    lengths.update(np.diff(offsets).tobytes())
    if bufs[2] is not None:
        values.update(memoryview(bufs[2])[int(offsets[0]) : int(offsets[-1])])
