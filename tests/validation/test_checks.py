"""Custom checks: the decorator, discovery in the project's modules, and the built-ins."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pytest
from pydantic import BaseModel

from tessera.config.errors import ConfigError
from tessera.pipeline.registry import discover
from tessera.validation import Schema, check, collect_checks, parse_schema, validate
from tessera.validation.checks import CheckDefinitionError

CHECKS = '''
import pandas as pd
from pydantic import BaseModel, ConfigDict

from tessera.validation import check


class Multiple(BaseModel):
    model_config = ConfigDict(extra="forbid")
    of: int


@check
def multiple_of(series: pd.Series, cfg: Multiple) -> pd.Series:
    """Values are multiples of a number."""
    return series % cfg.of == 0


@check(level="table")
def total_matches(df: pd.DataFrame) -> pd.Series:
    """Each row's total is the sum of its parts."""
    return df["total"] == df["a"] + df["b"]


@check(name="has_rows")
def non_empty(df: pd.DataFrame) -> bool:
    """The table is not empty."""
    return len(df) > 0


@check
def explodes(series: pd.Series) -> pd.Series:
    """Always raises."""
    raise RuntimeError("boom")
'''


@pytest.fixture
def tmp_project(tmp_path: Path) -> Iterator[Path]:
    """A project whose transforms/ package defines checks, imported by discovery."""
    root = tmp_path / "proj"
    (root / "transforms").mkdir(parents=True)
    (root / "tessera.yaml").write_text("name: checks\n")
    (root / "transforms" / "quality.py").write_text(textwrap.dedent(CHECKS))
    discover(root)
    yield root
    for name in [m for m in sys.modules if m == "transforms" or m.startswith("transforms.")]:
        del sys.modules[name]  # leave nothing of this project bound as `transforms`


def test_project_checks_are_found_after_discovery(tmp_project: Path) -> None:
    registry = collect_checks()
    assert registry.checks["multiple_of"].level == "column"
    assert registry.checks["total_matches"].level == "table"
    assert registry.checks["has_rows"].level == "table"  # inferred from the DataFrame annotation
    assert registry.checks["multiple_of"].origin.endswith("quality.py:13")
    assert {"monotonic_increasing", "compare_columns"} <= set(registry.checks)


def test_project_checks_in_a_schema(tmp_project: Path) -> None:
    schema = parse_schema(
        textwrap.dedent(
            """
            columns:
              a: {checks: [{name: multiple_of, params: {of: 5}}]}
              b: {}
              total: {}
            checks: [total_matches, has_rows]
            """
        ),
        "s.yaml",
    )
    df = pd.DataFrame({"a": [5, 7, 10, 11], "b": [1, 1, 1, 1], "total": [6, 8, 12, 12]})
    report = validate(df, schema)
    rows = [(r.column, r.check, r.failures, list(r.samples)) for r in report.failures]
    assert rows == [
        ("a", "multiple_of", 2, ["7", "11"]),
        ("<table>", "total_matches", 1, ["a=10, b=1, total=12"]),
    ]
    assert report.frame["expected"][0] == "multiple_of(of=5)"
    assert report.frame["expected"][1] == "Each row's total is the sum of its parts"
    empty = validate(df.iloc[:0], schema)
    assert [(r.check, r.failures) for r in empty.failures] == [("has_rows", 1)]
    assert "<table> (has_rows: failed)" in empty.summary


def test_project_check_params_are_validated(tmp_project: Path) -> None:
    with pytest.raises(ConfigError) as info:
        parse_schema("columns:\n  a:\n    checks:\n      - name: multiple_of\n", "s.yaml")
    assert info.value.render() == (
        "s.yaml:4 key 'columns.a.checks.0.params.of': missing required key; expected int"
    )


def test_a_check_that_raises_is_reported(tmp_project: Path) -> None:
    schema = parse_schema("columns:\n  a: {checks: [explodes]}\n", "s.yaml")
    report = validate(pd.DataFrame({"a": [1, 2]}), schema)
    assert [(r.column, r.check, r.failures) for r in report.failures] == [("a", "explodes", 2)]
    assert report.frame["expected"][0] == "Always raises; the check raised RuntimeError: boom"
    assert report.summary == "1 check failed in 1 column: a (explodes: raised RuntimeError: boom)"


def test_checks_passed_explicitly_and_results_normalised() -> None:
    import types

    module = types.ModuleType("my_checks")

    @check
    def small(series: pd.Series) -> list[bool]:
        """Values below 10."""
        return [v < 10 for v in series]

    @check
    def not_bool(series: pd.Series) -> pd.Series:
        """Returns numbers."""
        return series * 2

    @check
    def maybe(series: pd.Series) -> pd.Series:
        """Unknown outcomes pass."""
        return pd.Series([pd.NA, False], dtype="boolean", index=series.index[::-1])

    module.small, module.not_bool, module.maybe = small, not_bool, maybe  # type: ignore[attr-defined]
    registry = collect_checks([module])
    schema = parse_schema(
        "columns:\n  a: {checks: [small, not_bool, maybe]}\n", "s.yaml", checks=registry
    )
    report = validate(pd.DataFrame({"a": [1, 20]}, index=[5, 6]), schema)
    rows = [(r.check, r.failures, list(r.samples)) for r in report.failures]
    assert rows[0] == ("small", 1, ["20"])
    assert rows[1][0] == "not_bool" and "must return booleans" in report.frame["expected"][1]
    assert rows[2] == ("maybe", 1, ["20"])  # results are taken by position when the index differs


class A(BaseModel):
    x: int = 1


class B(BaseModel):
    y: int = 1


def test_decorator_rejects_unusable_signatures() -> None:
    with pytest.raises(CheckDefinitionError, match="two config parameters"):

        @check
        def two(series: pd.Series, a: A, b: B) -> bool:
            return True

    with pytest.raises(CheckDefinitionError, match="needs a parameter for the data"):

        @check
        def nothing(cfg: A) -> bool:
            return True

    with pytest.raises(CheckDefinitionError, match="neither the data nor the config"):

        @check
        def extra(series: pd.Series, other: int) -> bool:
            return True

    with pytest.raises(CheckDefinitionError, match="level must be"):
        check(level="row")  # type: ignore[call-overload]


def test_duplicate_names_are_an_error() -> None:
    import types

    module = types.ModuleType("dupes")

    @check(name="trimmed")
    def mine(series: pd.Series) -> bool:
        return True

    module.mine = mine  # type: ignore[attr-defined]
    with pytest.raises(ConfigError, match="check 'trimmed' is defined twice"):
        collect_checks([module])


def test_entry_point_checks(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import importlib.metadata

    (tmp_path / "ext_checks.py").write_text(
        "from tessera.validation import check\n\n@check\ndef always(series):\n    return True\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    ep = importlib.metadata.EntryPoint("ext", "ext_checks", "tessera.checks")
    real = importlib.metadata.entry_points

    def fake(**kwargs: object) -> object:
        if kwargs.get("group") == "tessera.checks":
            return [ep]
        return real(**kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(importlib.metadata, "entry_points", fake)
    try:
        assert "always" in collect_checks().checks
    finally:
        sys.modules.pop("ext_checks", None)


# --- the built-in checks --------------------------------------------------------------------


def run(schema_of: Callable[[str], Schema], text: str, df: pd.DataFrame) -> list[tuple]:
    report = validate(df, schema_of(text))
    return [(r.column, r.check, r.failures, list(r.samples)) for r in report.failures]


def test_monotonic(schema_of: Callable[[str], Schema]) -> None:
    df = pd.DataFrame({"t": [1, 2, 2, 5, 3, None, 6], "d": [9, 8, 8, 9, 1, 0, 0]})
    assert run(schema_of, "columns: {t: {nullable: true, checks: [monotonic_increasing]}}", df) == [
        ("t", "monotonic_increasing", 1, ["3.0"])
    ]
    strict = (
        "columns: {t: {nullable: true, "
        "checks: [{name: monotonic_increasing, params: {strict: true}}]}}"
    )
    assert run(schema_of, strict, df) == [("t", "monotonic_increasing", 2, ["2.0", "3.0"])]
    assert run(schema_of, "columns: {d: {checks: [monotonic_decreasing]}}", df) == [
        ("d", "monotonic_decreasing", 1, ["9"])
    ]
    dates = pd.DataFrame({"t": ["2024-01-01", "2024-02-01", "2024-01-15"]})
    assert run(schema_of, "columns: {t: {checks: [monotonic_increasing]}}", dates) == [
        ("t", "monotonic_increasing", 1, ["2024-01-15"])
    ]


def test_no_future_dates(schema_of: Callable[[str], Schema]) -> None:
    df = pd.DataFrame({"t": pd.to_datetime(["2020-01-01", "2999-01-01"])})
    assert run(schema_of, "columns: {t: {checks: [no_future_dates]}}", df) == [
        ("t", "no_future_dates", 1, ["2999-01-01"])
    ]
    fixed = "columns: {t: {checks: [{name: no_future_dates, params: {now: '2019-12-31'}}]}}"
    assert len(run(schema_of, fixed, df)) == 1 and run(schema_of, fixed, df)[0][2] == 2
    aware = pd.DataFrame({"t": pd.to_datetime(["2020-01-01"]).tz_localize("Europe/Paris")})
    assert run(schema_of, "columns: {t: {checks: [no_future_dates]}}", aware) == []


def test_text_checks(schema_of: Callable[[str], Schema]) -> None:
    df = pd.DataFrame({"s": ["ab", " ab", "abcd", "  ", ""]})
    assert run(schema_of, "columns: {s: {checks: [trimmed]}}", df) == [
        ("s", "trimmed", 2, ["' ab'", "'  '"])
    ]
    assert run(schema_of, "columns: {s: {checks: [no_blank_strings]}}", df) == [
        ("s", "no_blank_strings", 2, ["'  '", "''"])
    ]
    length = "columns: {s: {checks: [{name: str_length, params: {min: 2, max: 3}}]}}"
    assert run(schema_of, length, df) == [("s", "str_length", 2, ["abcd", "''"])]


def test_table_checks(schema_of: Callable[[str], Schema]) -> None:
    df = pd.DataFrame(
        {
            "start": [1, 5, 3, None],
            "end": [2, 4, 3, 1],
            "price": [10, 20, 30, 40],
            "lat": [1.0, None, None, 2.0],
            "lon": [1.0, 2.0, None, 2.0],
        }
    )
    compare = "checks: [{name: compare_columns, params: {left: start, op: '<', right: end}}]"
    assert run(schema_of, compare, df) == [
        ("<table>", "compare_columns", 2, ["start=5.0, end=4", "start=3.0, end=3"])
    ]
    between = "checks: [{name: between_columns, params: {column: price, low: start, high: end}}]"
    assert run(schema_of, between, df) == [
        (
            "<table>",
            "between_columns",
            3,
            [
                "price=10, start=1.0, end=2",
                "price=20, start=5.0, end=4",
                "price=30, start=3.0, end=3",
            ],
        )
    ]
    complete = "checks: [{name: complete_rows, params: {columns: [lat, lon]}}]"
    assert run(schema_of, complete, df) == [("<table>", "complete_rows", 1, ["lat=null, lon=2.0"])]
    missing = "checks: [{name: compare_columns, params: {left: nope, op: '<', right: end}}]"
    [(column, name, _, _)] = run(schema_of, missing, df)
    assert (column, name) == ("<table>", "compare_columns")


def test_builtins_are_documented() -> None:
    for c in collect_checks().checks.values():
        if c.func.__module__ == "tessera.validation.builtin_checks":
            assert c.summary.endswith("."), c.name
            assert "Example:" in c.doc and "```yaml" in c.doc, c.name
