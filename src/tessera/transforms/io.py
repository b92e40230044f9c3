"""Reading and writing tables: CSV and Parquet files inside the project.

Paths are relative to the project root. ``read_table`` marks its path as an input, so editing the
file invalidates the stage; ``write_table`` marks its path as an output and writes atomically, so
a reader never sees a half-written file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import Field, model_validator

from tessera.data.atomic import atomic_write
from tessera.pipeline.registry import InputPath, OutputPath, transformation
from tessera.transforms._common import (
    TransformConfig,
    as_datetime,
    quoted,
    require_columns,
)

Format = Literal["auto", "csv", "parquet"]

_CSV_SUFFIXES = {".csv", ".tsv", ".txt"}
_PARQUET_SUFFIXES = {".parquet", ".pq"}
_COMPRESSION: dict[str, Literal["gzip", "bz2", "xz", "zstd", "zip"]] = {
    ".gz": "gzip",
    ".bz2": "bz2",
    ".xz": "xz",
    ".zst": "zstd",
    ".zip": "zip",
}


def table_format(path: str, fmt: Format = "auto") -> Literal["csv", "parquet"]:
    """``csv`` or ``parquet``: ``fmt`` when given, else from the suffix (compression allowed)."""
    if fmt != "auto":
        return fmt
    suffixes = [s.lower() for s in Path(path).suffixes]
    if suffixes and suffixes[-1] in _COMPRESSION:
        suffixes = suffixes[:-1]
    last = suffixes[-1] if suffixes else ""
    if last in _CSV_SUFFIXES:
        return "csv"
    if last in _PARQUET_SUFFIXES:
        return "parquet"
    raise ValueError(
        f"cannot tell the format of '{path}' from its suffix; name it *.csv or *.parquet, "
        "or set `format: csv` or `format: parquet`"
    )


class ReadTable(TransformConfig):
    """Config of ``read_table``."""

    path: InputPath = Field(
        description="The file to read, relative to the project root (CSV or Parquet)."
    )
    format: Format = Field(
        "auto",
        description="File format; `auto` decides by suffix (.csv/.tsv/.txt, optionally "
        "compressed, or .parquet/.pq).",
    )
    columns: list[str] | None = Field(
        None,
        min_length=1,
        description="Read only these columns, in this order (default: every column).",
    )
    parse_dates: list[str] = Field(
        default_factory=list, description="Columns to parse as datetimes."
    )
    sep: str = Field(",", min_length=1, description="CSV field separator (ignored for Parquet).")

    @model_validator(mode="after")
    def _dates_are_read(self) -> ReadTable:
        if self.columns is not None:
            left_out = [c for c in self.parse_dates if c not in self.columns]
            if left_out:
                raise ValueError(
                    f"parse_dates names {quoted(left_out)}, which `columns` does not read"
                )
        return self


def _read_csv(path: Path, cfg: ReadTable) -> pd.DataFrame:
    # pyarrow only takes one-character separators; the C parser neither regexes nor longer ones.
    fallback: Literal["c", "python"] = "python" if len(cfg.sep) > 1 else "c"
    header = pd.read_csv(path, sep=cfg.sep, nrows=0, engine=fallback)
    wanted = cfg.columns if cfg.columns is not None else list(header.columns)
    require_columns(header, [*wanted, *cfg.parse_dates], f"'{cfg.path}'")
    # Dates are parsed by pandas whatever the engine, so both engines give the same types.
    as_text = dict.fromkeys(cfg.parse_dates, "str")
    if fallback == "c":
        try:
            return _read_csv_pyarrow(path, cfg, as_text)
        except (ValueError, pa.ArrowException):
            # Types pyarrow inferred from the first block only, or a malformed file: the C
            # parser handles the first and reports the second with line numbers.
            pass
    return pd.read_csv(path, sep=cfg.sep, usecols=cfg.columns, dtype=as_text, engine=fallback)


def _read_csv_pyarrow(path: Path, cfg: ReadTable, as_text: dict[str, str]) -> pd.DataFrame:
    df = pd.read_csv(path, sep=cfg.sep, usecols=cfg.columns, dtype=as_text, engine="pyarrow")
    # pyarrow infers dates and times by itself; keep those columns as text, like pandas does.
    inferred = [
        str(c)
        for c in df.columns
        if c not in as_text and (df[c].dtype == object or df[c].dtype.kind in "mM")
    ]
    if inferred:
        text = pd.read_csv(path, sep=cfg.sep, usecols=inferred, dtype="str", engine="pyarrow")
        for c in inferred:
            df[c] = text[c]
    return df


@transformation(name="read_table")
def read_table(cfg: ReadTable) -> pd.DataFrame:
    """Read a CSV or Parquet file into a table.

    CSV files are parsed with pyarrow when it can (much faster), falling back to pandas' own
    parser otherwise; both give the same column types. Dates are only parsed for the columns
    in ``parse_dates`` (other date-like columns stay text).

    Example:
        ```yaml
        raw:
          uses: read_table
          with:
            path: data/transactions.csv
            columns: [customer_id, amount, event_time]
            parse_dates: [event_time]
        ```

    Args:
        cfg: the file, its format and what to read from it.

    Returns:
        The table, columns in file order (or in the order of ``columns``).

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a named column is not in the file, or the file cannot be parsed.
    """
    path = Path(cfg.path)
    fmt = table_format(cfg.path, cfg.format)
    if not path.is_file():
        where = path if path.is_absolute() else Path.cwd() / path
        raise FileNotFoundError(
            f"input file '{cfg.path}' not found (looked for {where}); check `path`"
        )
    try:
        if fmt == "csv":
            df = _read_csv(path, cfg)
        else:
            names = pq.read_schema(path).names
            require_columns(
                pd.DataFrame(columns=names), [*(cfg.columns or []), *cfg.parse_dates], f"'{path}'"
            )
            df = pd.read_parquet(path, columns=cfg.columns)
            if any(name is not None for name in df.index.names):
                # A pandas index saved in the file: tables are index-free, it becomes columns.
                df = df.reset_index()
    except (
        pa.ArrowException,
        pd.errors.ParserError,
        pd.errors.EmptyDataError,
        UnicodeDecodeError,
    ) as exc:
        raise ValueError(f"cannot read '{cfg.path}' as {fmt}: {exc}") from exc
    if cfg.columns is not None:
        df = df[cfg.columns]
    for column in cfg.parse_dates:
        df[column] = as_datetime(df[column], column)
    return df.reset_index(drop=True)


class WriteTable(TransformConfig):
    """Config of ``write_table``."""

    path: OutputPath = Field(
        description="The file to write, relative to the project root; parent directories are "
        "created. A .gz/.bz2/.xz/.zst/.zip suffix after .csv compresses it."
    )
    format: Format = Field(
        "auto", description="File format; `auto` decides by suffix (.csv or .parquet)."
    )
    sep: str = Field(
        ",", min_length=1, max_length=1, description="CSV field separator, one character."
    )


@transformation(name="write_table", outputs=())
def write_table(df: pd.DataFrame, cfg: WriteTable) -> None:
    """Write a table to a CSV or Parquet file (a sink: the stage has no output table).

    The file is written to a temporary name beside the target and renamed over it, so readers
    never see a partial file. The index is never written.

    Example:
        ```yaml
        export:
          uses: write_table
          inputs: [features]
          with:
            path: out/features.parquet
        ```

    Args:
        df: the table to write.
        cfg: where and how to write it.
    """
    target = Path(cfg.path)
    fmt = table_format(cfg.path, cfg.format)
    compression = _COMPRESSION.get(target.suffix.lower())

    def write(tmp: str) -> None:
        if fmt == "csv":
            df.to_csv(tmp, sep=cfg.sep, index=False, compression=compression)
        else:
            df.to_parquet(tmp, index=False)

    atomic_write(target, write)
