"""``tessera validate DATA --schema FILE [--json]`` and ``--draft``."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pandas as pd
import pytest

from tessera.examples.churn_data import write_events

from support import Project

SCHEMA = """
columns:
  customer_id: {dtype: string, unique: true}
  age: {dtype: Int64, nullable: true, min: 18, max: 99}
  plan: {dtype: string, isin: [Basic, Premium]}
  signup: {dtype: datetime, max: '2025-01-01'}
"""

GOOD = """customer_id,age,plan,signup
C1,34,Basic,2024-01-05
C2,,Premium,2024-02-01 10:00:00
C3,51,Basic,2024-03-01
"""

BAD = """customer_id,age,plan,signup
C1,34,Basic,2024-01-05
C1,150,Gold,2024-02-01
C3,,basic,someday
"""


@pytest.fixture
def files(tmp_path: Path) -> Path:
    (tmp_path / "schema.yaml").write_text(textwrap.dedent(SCHEMA).lstrip())
    (tmp_path / "good.csv").write_text(GOOD)
    (tmp_path / "bad.csv").write_text(BAD)
    return tmp_path


def test_valid_csv(files: Path, validate_cli) -> None:
    # CSV has no types: the dates and the integers with a gap are read as the schema says.
    result = validate_cli("good.csv", "--schema", "schema.yaml", cwd=files)
    assert result.code == 0, result.out + result.err
    assert "good.csv matches schema.yaml: all 15 checks passed on 3 rows." in result.out


def test_invalid_csv_lists_every_failure(files: Path, validate_cli) -> None:
    result = validate_cli("bad.csv", "--schema", "schema.yaml", cwd=files)
    assert result.code == 1
    lines = [" ".join(line.split()) for line in result.out.splitlines()]
    assert lines[0] == "column check failures samples expected"
    assert lines[1:5] == [
        "customer_id unique 2 C1 distinct values",
        "age in_range 1 150 >= 18 and <= 99",
        "plan isin 2 Gold, basic one of Basic, Premium",
        "signup dtype 1 someday datetime, got string",
    ]
    out = " ".join(result.out.split())
    assert (
        "✗ bad.csv does not match schema.yaml: 4 checks failed in 4 columns: customer_id "
        "(unique: 2 rows), age (in_range: 1 row), plan (isin: 2 rows), signup (dtype: expected "
        "datetime, got string)" in out
    )


def test_json(files: Path, validate_cli) -> None:
    result = validate_cli("bad.csv", "--schema", "schema.yaml", "--json", cwd=files)
    assert result.code == 1
    data = result.json()
    assert data["data"] == "bad.csv" and data["schema"] == "schema.yaml"
    assert data["ok"] is False and data["rows_checked"] == 3
    assert data["failures"][2] == {
        "column": "plan",
        "check": "isin",
        "failures": 2,
        "samples": ["Gold", "basic"],
        "expected": "one of Basic, Premium",
        "rows": [1, 2],
    }
    good = validate_cli("good.csv", "--schema", "schema.yaml", "--json", cwd=files)
    assert good.code == 0 and good.json()["ok"] is True


def test_parquet(files: Path, validate_cli) -> None:
    df = pd.DataFrame(
        {
            "customer_id": ["C1", "C2"],
            "age": pd.array([20, None], dtype="Int64"),
            "plan": ["Basic", "Basic"],
            "signup": pd.to_datetime(["2024-01-01", "2024-01-02"]),
        }
    )
    df.to_parquet(files / "t.parquet")
    assert validate_cli("t.parquet", "--schema", "schema.yaml", cwd=files).code == 0
    df["age"] = df["age"].astype("float64")  # a Parquet file has types: they are checked as is
    df.to_parquet(files / "t.parquet")
    result = validate_cli("t.parquet", "--schema", "schema.yaml", cwd=files)
    assert result.code == 1
    assert "age (dtype: expected Int64, got float64)" in " ".join(result.out.split())


def test_usage_errors_exit_2(files: Path, validate_cli) -> None:
    (files / "broken.yaml").write_text("columns:\n  age: {dtype: int64, mni: 3}\n")
    result = validate_cli("good.csv", "--schema", "broken.yaml", cwd=files)
    assert result.code == 2
    assert "broken.yaml:2 key 'columns.age.mni': unknown key (did you mean 'min'?)" in result.err
    result = validate_cli("good.csv", "--schema", "nope.yaml", cwd=files)
    assert (result.code, "nope.yaml: file not found" in result.err) == (2, True)
    result = validate_cli("missing.csv", "--schema", "schema.yaml", cwd=files)
    assert (result.code, "no such file: missing.csv" in result.err) == (2, True)
    result = validate_cli("good.csv", cwd=files)
    assert (result.code, "give the schema with --schema FILE" in result.err) == (2, True)
    (files / "data.json").write_text("{}")
    result = validate_cli("data.json", "--schema", "schema.yaml", cwd=files)
    assert (result.code, "cannot tell the format of data.json" in result.err) == (2, True)
    result = validate_cli("0123456789abcdef", "--schema", "schema.yaml", cwd=files)
    assert result.code == 2 and "there is no tessera.yaml" in result.err


def test_draft_prints_writes_and_never_overwrites(files: Path, validate_cli) -> None:
    printed = validate_cli("good.csv", "--draft", cwd=files)
    assert printed.code == 0
    assert printed.out.startswith("# Schema drafted from good.csv (3 rows, 4 columns).")
    assert "  signup:\n    dtype: datetime\n" in printed.out  # ISO dates in a CSV are dates
    assert "  age:\n    dtype: Int64\n" in printed.out  # whole numbers with a gap
    written = validate_cli("good.csv", "--draft", "--schema", "drafts/good.yaml", cwd=files)
    assert written.code == 0
    assert (files / "drafts/good.yaml").read_text() == printed.out
    assert "tessera validate good.csv --schema drafts/good.yaml" in written.out
    again = validate_cli("good.csv", "--draft", "--schema", "drafts/good.yaml", cwd=files)
    assert again.code == 2 and "already exists; not overwriting it" in again.err
    assert validate_cli("good.csv", "--schema", "drafts/good.yaml", cwd=files).code == 0
    as_json = validate_cli("good.csv", "--draft", "--json", cwd=files).json()
    assert as_json["schema"] == printed.out and as_json["path"] is None


def test_draft_round_trip_on_the_churn_csv(tmp_path: Path, validate_cli) -> None:
    write_events(tmp_path / "events.csv", n_customers=150)
    drafted = validate_cli("events.csv", "--draft", "--schema", "events.yaml", cwd=tmp_path)
    assert drafted.code == 0
    text = (tmp_path / "events.yaml").read_text()
    assert "  event_time:\n    dtype: datetime\n" in text
    assert "  age:\n    dtype: Int64\n    nullable: true" in text
    result = validate_cli("events.csv", "--schema", "events.yaml", cwd=tmp_path)
    assert result.code == 0, result.out
    (tmp_path / "events.yaml").write_text(text.replace("max: 1000", "max: 120", 1))
    result = validate_cli("events.csv", "--schema", "events.yaml", cwd=tmp_path)
    assert result.code == 1
    assert "age in_range" in " ".join(result.out.split())


def test_stored_tables_by_version_id_and_project_checks(
    project: Project, tessera, validate_cli
) -> None:
    project.write(
        "transforms/quality.py",
        '''
        import pandas as pd
        from tessera.validation import check


        @check
        def positive(series: pd.Series) -> pd.Series:
            """Values above zero."""
            return series > 0
        ''',
    )
    run = tessera("run", "--json", "a", cwd=project.root)
    assert run.code == 0, run.err
    version = next(s for s in run.json()["stages"] if s["stage"] == "a")["outputs"]["out"]
    project.write("schemas/a.yaml", "columns:\n  x: {dtype: float64}\n  y: {checks: [positive]}\n")
    (project.root / "sub").mkdir()
    result = validate_cli(version, "--schema", "../schemas/a.yaml", cwd=project.root / "sub")
    assert result.code == 1
    out = " ".join(result.out.split())
    assert "y positive" in out and "1 check failed in 1 column: y (positive:" in out
    short = validate_cli(version[:12], "--schema", "schemas/a.yaml", "--json", cwd=project.root)
    assert short.code == 1 and short.json()["rows_checked"] == 200
    unknown = validate_cli("ffffffffffff", "--schema", "schemas/a.yaml", cwd=project.root)
    assert unknown.code == 2 and "no stored table with version id ffffffffffff" in unknown.err
