"""Loading schema files: a bad one is a ConfigError naming file, line and key of each problem."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from tessera.config.errors import ConfigError
from tessera.validation import load_schema, parse_schema


def problems_of(text: str) -> list[str]:
    with pytest.raises(ConfigError) as info:
        parse_schema(textwrap.dedent(text).lstrip("\n"), "schemas/s.yaml")
    return [p.render() for p in info.value.sorted_problems()]


def test_a_full_schema_loads(tmp_path: Path) -> None:
    path = tmp_path / "events.yaml"
    path.write_text(
        textwrap.dedent(
            """
            name: events
            description: One row per customer event.
            columns:
              customer_id: {dtype: string, regex: 'C\\d{5}'}
              age: {dtype: Int64, nullable: true, min: 18, max: 99, max_exclusive: true}
              plan: {dtype: str, isin: [Basic, Premium]}
              event_time:
                dtype: datetime
                min: '2023-01-01'
                checks: [monotonic_increasing, {name: no_future_dates, params: {now: '2030-01-01'}}]
              note:
            rows: {min: 1, max: 1000}
            strict: true
            unique: [customer_id, event_time]
            checks:
              - name: compare_columns
                params: {left: age, op: '>', right: age}
            """
        )
    )
    schema = load_schema(path, "schemas/events.yaml")
    assert schema.name == "schemas/events.yaml"
    assert list(schema.columns) == ["customer_id", "age", "plan", "event_time", "note"]
    assert schema.columns["plan"].dtype == "string"  # the alias, resolved
    assert schema.columns["note"].required and not schema.columns["note"].nullable
    assert [b.name for b in schema.column_checks["event_time"]] == [
        "monotonic_increasing",
        "no_future_dates",
    ]
    assert schema.table_checks[0].describe() == "compare_columns(left=age, op=>, right=age)"
    assert schema.rule_count() > 15


def test_missing_file_and_bad_yaml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope.yaml: file not found"):
        load_schema(tmp_path / "nope.yaml", "nope.yaml")
    (tmp_path / "bad.yaml").write_text("columns:\n  a: [\n")
    with pytest.raises(ConfigError, match=r"bad.yaml:3: invalid YAML"):
        load_schema(tmp_path / "bad.yaml", "bad.yaml")
    (tmp_path / "empty.yaml").write_text("")
    with pytest.raises(ConfigError, match="the schema is empty"):
        load_schema(tmp_path / "empty.yaml")
    (tmp_path / "list.yaml").write_text("- a\n")
    with pytest.raises(ConfigError, match="a schema must be a mapping"):
        load_schema(tmp_path / "list.yaml")


def test_unknown_keys_are_located_with_a_suggestion() -> None:
    found = problems_of(
        """
        columns:
          age:
            dtype: int64
            nulable: true
        strct: true
        """
    )
    assert found == [
        "schemas/s.yaml:4 key 'columns.age.nulable': unknown key (did you mean 'nullable'?)",
        "schemas/s.yaml:5 key 'strct': unknown key (did you mean 'strict'?)",
    ]


def test_invalid_values_are_all_reported() -> None:
    found = problems_of(
        """
        columns:
          age: {dtype: integr, min: 5, max: 1}
          name: {regex: '([a-z]'}
          when: {dtype: datetime, min: yesterday}
          plan: {isin: []}
          flag: {unique: maybe}
        rows: {min: 3, max: 2}
        """
    )
    assert found == [
        "schemas/s.yaml:2 key 'columns.age.dtype': invalid value; expected a known dtype "
        "(did you mean 'integer'?), got 'integr' (str)",
        "schemas/s.yaml:2 key 'columns.age.max': invalid value; expected a value not below min "
        "(5), got 1 (int)",
        "schemas/s.yaml:3 key 'columns.name.regex': invalid value; expected a valid regular "
        "expression (missing ), unterminated subpattern at position 0), got '([a-z]' (str)",
        "schemas/s.yaml:4 key 'columns.when.min': invalid value; expected an ISO date such as "
        "'2024-01-31' or '2024-01-31 12:00', got 'yesterday' (str)",
        "schemas/s.yaml:5 key 'columns.plan.isin': invalid value; expected list should have at "
        "least 1 item after validation, not 0, got [] (list)",
        "schemas/s.yaml:6 key 'columns.flag.unique': invalid value; expected a valid boolean, "
        "unable to interpret input, got 'maybe' (str)",
        "schemas/s.yaml:7 key 'rows.max': invalid value; expected a count not below min (3), "
        "got 2 (int)",
    ]


def test_bounds_must_suit_the_dtype() -> None:
    found = problems_of(
        """
        columns:
          b: {max_exclusive: true}
          c: {dtype: float64, min: low}
          d: {dtype: datetime, min: 5}
        """
    )
    assert found == [
        "schemas/s.yaml:2 key 'columns.b.max_exclusive': invalid value; expected false, or "
        "`max` set too, got True (bool)",
        "schemas/s.yaml:3 key 'columns.c.min': invalid value; expected a number (the column's "
        "dtype is float64), got 'low' (str)",
        "schemas/s.yaml:4 key 'columns.d.min': invalid value; expected an ISO date such as "
        "'2024-01-31' (the column's dtype is datetime), got 5 (int)",
    ]


def test_unknown_check_names_suggest_the_closest() -> None:
    found = problems_of(
        """
        columns:
          t:
            checks:
              - monotonic_increasin
              - name: no_future_date
        checks:
          - name: compare_column
            params: {left: a, op: '<', right: b}
          - name: totally_unknown
        """
    )
    assert found[0] == (
        "schemas/s.yaml:4 key 'columns.t.checks.0.name': unknown check 'monotonic_increasin' "
        "(did you mean 'monotonic_increasing'?)"
    )
    assert found[1] == (
        "schemas/s.yaml:5 key 'columns.t.checks.1.name': unknown check 'no_future_date' "
        "(did you mean 'no_future_dates'?)"
    )
    assert found[2] == (
        "schemas/s.yaml:7 key 'checks.0.name': unknown check 'compare_column' "
        "(did you mean 'compare_columns'?)"
    )
    assert found[3].startswith("schemas/s.yaml:9 key 'checks.1.name': unknown check")
    assert "table checks: between_columns, compare_columns" in found[3]


def test_check_params_are_validated_by_the_check() -> None:
    found = problems_of(
        """
        columns:
          t:
            checks:
              - name: monotonic_increasing
                params: {strikt: true}
              - name: trimmed
                params: {x: 1}
        checks:
          - name: compare_columns
            params:
              left: a
              op: '=<'
        """
    )
    assert found == [
        "schemas/s.yaml:5 key 'columns.t.checks.0.params.strikt': unknown key "
        "(did you mean 'strict'?)",
        "schemas/s.yaml:7 key 'columns.t.checks.1.params': check 'trimmed' takes no params",
        "schemas/s.yaml:10 key 'checks.0.params.right': missing required key; expected str",
        "schemas/s.yaml:12 key 'checks.0.params.op': invalid value; expected '<', '<=', '>', "
        "'>=', '==' or '!=', got '=<' (str)",
    ]


def test_checks_must_be_used_at_their_level() -> None:
    found = problems_of(
        """
        columns:
          a:
            checks: [compare_columns]
        checks: [trimmed]
        """
    )
    assert found == [
        "schemas/s.yaml:3 key 'columns.a.checks.0.name': 'compare_columns' is a table check "
        "(list it under the top-level `checks:`)",
        "schemas/s.yaml:4 key 'checks.0.name': 'trimmed' is a column check "
        "(list it under a column's `checks:`)",
    ]


def test_unique_names_listed_columns() -> None:
    found = problems_of(
        """
        columns:
          customer_id: {}
          event_time: {}
        unique: [customer_id, event_tme]
        """
    )
    assert found == [
        "schemas/s.yaml:4 key 'unique.1': `unique` names column 'event_tme', which is not under "
        "`columns` (did you mean 'event_time'?)"
    ]


def test_loading_a_schema_does_not_import_pandas() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from tessera.validation import parse_schema\n"
        "s = parse_schema('columns: {a: {dtype: int64, min: 1}}')\n"
        "import tessera.validation.stage\n"
        "print(sorted(m for m in ('pandas', 'pandera', 'numpy') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
