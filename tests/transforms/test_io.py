"""read_table and write_table: round trips, column selection, formats and errors."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pyarrow as pa
import pytest
from pandas.testing import assert_frame_equal
from pydantic import ValidationError

import tessera.transforms.io as io_module
from tessera.transforms.io import ReadTable, WriteTable, read_table, write_table


@pytest.fixture
def table() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "id": [1, 2, 3],
            "when": ["2024-01-01", "2024-01-02", None],
            "x": [1.5, None, 3.0],
            "label": ["a", None, "c"],
        }
    )


@pytest.mark.parametrize("name", ["t.csv", "t.parquet", "t.csv.gz", "t.tsv"])
def test_round_trip(tmp_path: Path, table: pd.DataFrame, name: str) -> None:
    path = str(tmp_path / name)
    sep = "\t" if name.endswith(".tsv") else ","
    assert write_table(table, WriteTable(path=path, sep=sep)) is None
    back = read_table(ReadTable(path=path, sep=sep))
    assert_frame_equal(back, table)


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_parse_dates_and_columns(tmp_path: Path, table: pd.DataFrame, suffix: str) -> None:
    path = str(tmp_path / f"t.{suffix}")
    write_table(table, WriteTable(path=path))
    back = read_table(ReadTable(path=path, columns=["when", "id"], parse_dates=["when"]))
    assert list(back.columns) == ["when", "id"]
    assert back["when"].dtype.kind == "M"
    assert back["when"].tolist()[:2] == [pd.Timestamp("2024-01-01"), pd.Timestamp("2024-01-02")]
    assert pd.isna(back["when"].iloc[2])
    assert back["id"].tolist() == [1, 2, 3]


def test_date_like_text_stays_text(tmp_path: Path) -> None:
    """pyarrow would infer dates by itself; only ``parse_dates`` columns become dates."""
    path = tmp_path / "d.csv"
    path.write_text("d,t\n2024-01-01,2024-01-01 10:00:00\n2024-01-02,\n")
    back = read_table(ReadTable(path=str(path)))
    assert back["d"].tolist() == ["2024-01-01", "2024-01-02"]
    assert back["t"].iloc[0] == "2024-01-01 10:00:00"
    assert pd.api.types.is_string_dtype(back["d"].dtype)


def test_both_csv_parsers_give_the_same_table(
    tmp_path: Path, table: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = tmp_path / "t.csv"
    path.write_text("id,when,x,label,flag\n1,2024-01-01,1.5,a,true\n2,,,,false\n")
    fast = read_table(ReadTable(path=str(path), parse_dates=["when"]))

    def fail(*args: object) -> pd.DataFrame:
        raise pa.ArrowInvalid("simulated: types inferred from the first block only")

    monkeypatch.setattr(io_module, "_read_csv_pyarrow", fail)
    slow = read_table(ReadTable(path=str(path), parse_dates=["when"]))
    assert_frame_equal(fast, slow)


def test_multi_character_separator_falls_back(tmp_path: Path) -> None:
    path = tmp_path / "m.csv"
    path.write_text("a;;b\n1;;x\n2;;y\n")
    back = read_table(ReadTable(path=str(path), sep=";;"))
    assert_frame_equal(back, pd.DataFrame({"a": [1, 2], "b": ["x", "y"]}))


def test_relative_path_from_project_root(
    tmp_path: Path, table: pd.DataFrame, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    write_table(table, WriteTable(path="out/deep/t.parquet"))
    assert (tmp_path / "out" / "deep" / "t.parquet").is_file()
    assert [p.name for p in (tmp_path / "out" / "deep").iterdir()] == ["t.parquet"]
    assert_frame_equal(read_table(ReadTable(path="out/deep/t.parquet")), table)


def test_parquet_index_becomes_columns(tmp_path: Path, table: pd.DataFrame) -> None:
    path = tmp_path / "indexed.parquet"
    table.set_index("id").to_parquet(path)
    assert_frame_equal(read_table(ReadTable(path=str(path))), table)


def test_write_replaces_existing_file(tmp_path: Path, table: pd.DataFrame) -> None:
    path = str(tmp_path / "t.csv")
    write_table(table, WriteTable(path=path))
    write_table(table.head(1), WriteTable(path=path))
    assert len(read_table(ReadTable(path=path))) == 1


def test_write_drops_the_index(tmp_path: Path, table: pd.DataFrame) -> None:
    path = str(tmp_path / "t.csv")
    write_table(table.set_index("id"), WriteTable(path=path))
    assert list(read_table(ReadTable(path=path)).columns) == ["when", "x", "label"]


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match=r"input file '.*nope\.csv' not found"):
        read_table(ReadTable(path=str(tmp_path / "nope.csv")))


@pytest.mark.parametrize("suffix", ["csv", "parquet"])
def test_missing_column(tmp_path: Path, table: pd.DataFrame, suffix: str) -> None:
    path = str(tmp_path / f"t.{suffix}")
    write_table(table, WriteTable(path=path))
    with pytest.raises(ValueError, match=r"column 'lable' not found in .*did you mean 'label'"):
        read_table(ReadTable(path=path, columns=["id", "lable"]))


def test_unknown_suffix(tmp_path: Path, table: pd.DataFrame) -> None:
    with pytest.raises(ValueError, match=r"cannot tell the format of .*t\.dat"):
        write_table(table, WriteTable(path=str(tmp_path / "t.dat")))
    path = str(tmp_path / "t.dat")
    write_table(table, WriteTable(path=path, format="parquet"))
    assert_frame_equal(read_table(ReadTable(path=path, format="parquet")), table)


def test_unparsable_file(tmp_path: Path) -> None:
    path = tmp_path / "bad.parquet"
    path.write_text("not parquet")
    with pytest.raises(ValueError, match=r"cannot read .*bad\.parquet"):
        read_table(ReadTable(path=str(path)))


def test_bad_dates(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text("d\nyesterday\n")
    with pytest.raises(ValueError, match="column 'd' cannot be parsed as dates"):
        read_table(ReadTable(path=str(path), parse_dates=["d"]))


def test_config_validation() -> None:
    with pytest.raises(ValidationError, match="extra"):
        ReadTable.model_validate({"path": "a.csv", "colums": ["a"]})
    with pytest.raises(ValidationError, match="parse_dates names 'd'"):
        ReadTable(path="a.csv", columns=["a"], parse_dates=["d"])
    with pytest.raises(ValidationError):
        ReadTable.model_validate({"path": "a.csv", "format": "xlsx"})
    with pytest.raises(ValidationError):
        ReadTable.model_validate({"path": "a.csv", "columns": []})
    with pytest.raises(ValidationError, match="duplicates"):
        ReadTable.model_validate({"path": "a.csv", "columns": ["a", "a"]})
    with pytest.raises(ValidationError):
        WriteTable.model_validate({"path": "a.csv", "sep": ";;"})
