"""Table fingerprints depend on content only, never on how the table was serialised."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tessera.data.fingerprint import fingerprint_table
from tessera.data.tables import to_table


@pytest.fixture
def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "f": [1.5, None, 3.0, 4.0],
            "i": [1, 2, 3, 4],
            "s": ["a", None, "ccc", ""],
            "c": pd.Categorical(["u", "v", "u", None]),
            "t": pd.to_datetime(["2024-01-01", None, "2024-01-03", "2024-02-01"]),
            "b": [True, False, None, True],
        }
    )


def test_parquet_round_trip_keeps_the_fingerprint(frame: pd.DataFrame, tmp_path) -> None:
    table = to_table(frame)
    for compression in ("none", "snappy", "zstd"):
        path = tmp_path / f"{compression}.parquet"
        pq.write_table(table, path, compression=compression, row_group_size=2)
        assert fingerprint_table(pq.read_table(path)) == fingerprint_table(table)


def test_chunking_and_string_width_do_not_matter(frame: pd.DataFrame) -> None:
    table = to_table(frame)
    rechunked = pa.concat_tables([table.slice(0, 1), table.slice(1, 2), table.slice(3)])
    assert rechunked.column(0).num_chunks == 3
    assert fingerprint_table(rechunked) == fingerprint_table(table)
    narrow = table.set_column(2, "s", table.column("s").cast(pa.string()))
    assert fingerprint_table(narrow) == fingerprint_table(table)


def test_content_changes_change_the_fingerprint(frame: pd.DataFrame) -> None:
    base = fingerprint_table(to_table(frame))
    variants = [
        frame.assign(f=[1.5, None, 3.0, 4.5]),  # a value
        frame.assign(s=["a", "", "ccc", ""]),  # null vs empty string
        frame.assign(f=[1.5, 0.0, 3.0, 4.0]),  # null vs zero
        frame.rename(columns={"i": "j"}),  # a name
        frame.astype({"i": "float64"}),  # a type
        frame[["i", "f", "s", "c", "t", "b"]],  # column order
        frame.iloc[[1, 0, 2, 3]].reset_index(drop=True),  # row order
        frame.iloc[:3],  # row count
    ]
    prints = {fingerprint_table(to_table(v)) for v in variants}
    assert base not in prints
    assert len(prints) == len(variants)


def test_string_boundaries_matter() -> None:
    a = pa.table({"s": ["ab", "c"]})
    b = pa.table({"s": ["a", "bc"]})
    assert fingerprint_table(a) != fingerprint_table(b)


def test_index_handling() -> None:
    df = pd.DataFrame({"x": [1, 2, 3]})
    filtered = df[df.x > 1]  # gappy unnamed index: dropped
    assert to_table(filtered).column_names == ["x"]
    named = df.set_index("x")  # a named index becomes a column
    assert to_table(named).column_names == ["x"]


def test_bad_frames_are_rejected() -> None:
    from tessera.data.errors import DataError

    with pytest.raises(DataError, match="non-string column names"):
        to_table(pd.DataFrame({0: [1]}))
    with pytest.raises(DataError, match="must be a pandas DataFrame, got list"):
        to_table([1, 2])


def test_wide_numeric_table_hashes_fast_enough_to_matter() -> None:
    # Behaviour, not speed: the buffers of a large table are hashed in place (no copies).
    table = pa.table({f"c{i}": np.arange(100_000, dtype="float64") for i in range(4)})
    assert len(fingerprint_table(table)) == 32


def test_nested_columns_are_fingerprinted() -> None:
    a = pa.table({"l": [[1, 2], [], None], "s": [{"x": 1}, {"x": 2}, None]})
    b = pa.table({"l": [[1, 2], [3], None], "s": [{"x": 1}, {"x": 2}, None]})
    assert fingerprint_table(a) != fingerprint_table(b)
    assert fingerprint_table(a) == fingerprint_table(pa.concat_tables([a.slice(0, 1), a.slice(1)]))
