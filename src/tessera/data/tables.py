"""Converting between the DataFrames transformations see and the Arrow tables Tessera stores.

Tables are index-free: a named index becomes ordinary columns, an unnamed one is dropped (row
order is kept). Column names must be strings. What a downstream stage receives is always the
stored table converted back to pandas, so an in-memory run and a run from the store see exactly
the same frame.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import pyarrow as pa

from tessera.data.errors import DataError

if TYPE_CHECKING:
    import pandas as pd


def to_table(frame: Any, *, what: str = "output") -> pa.Table:
    """Normalise a pandas DataFrame (or Arrow table) into the Arrow table Tessera stores."""
    import pandas as pd

    if isinstance(frame, pa.Table):
        return frame.replace_schema_metadata(None)
    if not isinstance(frame, pd.DataFrame):
        raise DataError(f"{what} must be a pandas DataFrame, got {type(frame).__name__}")
    if not _default_index(frame.index):
        named = any(n is not None for n in frame.index.names)
        frame = frame.reset_index(drop=not named)
    bad = [c for c in frame.columns if not isinstance(c, str)]
    if bad:
        raise DataError(f"{what} has non-string column names {bad[:5]!r}; name every column")
    dupes = frame.columns[frame.columns.duplicated()].tolist()
    if dupes:
        raise DataError(f"{what} has duplicate column names {dupes[:5]!r}")
    try:
        return pa.Table.from_pandas(frame, preserve_index=False)
    except (pa.ArrowException, TypeError, ValueError) as exc:
        raise DataError(f"{what} cannot be stored as a table: {exc}") from exc


def to_frame(table: pa.Table) -> pd.DataFrame:
    """The DataFrame a transformation receives for a stored table."""
    return table.to_pandas()


def _default_index(index: Any) -> bool:
    import pandas as pd

    return (
        isinstance(index, pd.RangeIndex)
        and index.start == 0
        and index.step == 1
        and index.name is None
    )
