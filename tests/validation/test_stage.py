"""The ``validate`` transformation in a real pipeline run."""

from __future__ import annotations

import pandas as pd
import pytest

from tessera.pipeline.errors import StageReportError
from tessera.pipeline.registry import discover
from tessera.validation.stage import Validate, validate_table

from support import Project, statuses

SCHEMA = """
columns:
  x: {dtype: float64}
  y: {dtype: int64, min: 0, max: 8}
rows: {min: 100}
strict: true
"""

CHECKED = """
  checked: {uses: validate, inputs: [raw], with: {schema: schemas/raw.yaml}}
  after:   {uses: affine, inputs: [checked], with: {column: x}}
"""


@pytest.fixture
def checked(project: Project) -> Project:
    """The standard project with a validate stage after `raw` and a stage after it."""
    project.write("schemas/raw.yaml", SCHEMA)
    project.write("pipeline.yaml", project.read("pipeline.yaml") + CHECKED)
    return project


def test_the_stage_is_registered() -> None:
    t = discover(None).transformations["validate"]
    assert t.inputs == ("df",) and t.outputs == ("out",)
    assert t.config_model is Validate
    assert [f.alias for f in Validate.model_fields.values()] == ["schema"]


def test_a_valid_table_passes_through(checked: Project, tessera) -> None:
    result = tessera("run", "--json", cwd=checked.root)
    assert result.code == 0, result.err
    data = result.json()
    assert statuses(result)["checked"] == "done" and statuses(result)["after"] == "done"
    outputs = {s["stage"]: s["outputs"] for s in data["stages"]}
    assert outputs["checked"]["out"] == outputs["raw"]["out"]  # the very same table
    again = tessera("run", "--json", cwd=checked.root)
    assert statuses(again)["checked"] == "cached"


def test_an_invalid_table_fails_the_stage_and_skips_downstream(checked: Project, tessera) -> None:
    assert tessera("run", cwd=checked.root).code == 0
    # Editing the schema file re-runs the stage: the file is part of its cache key.
    checked.edit("schemas/raw.yaml", "max: 8", "max: 5")
    checked.edit("schemas/raw.yaml", "rows: {min: 100}", "rows: {min: 1000}")
    result = tessera("run", "--json", cwd=checked.root)
    assert result.code == 1
    assert statuses(result)["checked"] == "failed"
    assert statuses(result)["after"] == "skipped"
    [failure] = result.json()["failures"]
    assert failure["stage"] == "checked"
    error = failure["error"]
    assert "the table does not match the schema schemas/raw.yaml" in error
    assert "2 checks failed in 1 column and the table" in error
    assert "<table> (rows: 200 rows, expected at least 1000 rows)" in error
    assert "y (in_range: " in error
    text = tessera("run", cwd=checked.root)
    assert text.code == 1
    assert "Stage 'checked' failed" in text.err
    assert "schemas/raw.yaml" in text.err


def test_a_bad_schema_is_reported_before_running(checked: Project, tessera) -> None:
    checked.edit("schemas/raw.yaml", "max: 8", "maxx: 8")
    result = tessera("run", "--json", cwd=checked.root)
    assert result.code == 2  # a configuration mistake, found before any stage runs
    data = result.json()
    assert data["status"] == "error"
    assert (
        "schemas/raw.yaml:3 key 'columns.y.maxx': unknown key (did you mean 'max'?)"
        in (data["error"])
    )


def test_a_missing_schema_file_is_reported_before_running(checked: Project, tessera) -> None:
    checked.edit("pipeline.yaml", "schemas/raw.yaml", "schemas/nope.yaml")
    result = tessera("run", cwd=checked.root)
    assert result.code == 2
    assert "schemas/nope.yaml" in result.err


def test_calling_the_function_directly(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.yaml").write_text("columns: {a: {min: 0}}\n")
    df = pd.DataFrame({"a": [1, 2]})
    assert validate_table(df, Validate(schema="s.yaml")) is df
    with pytest.raises(StageReportError) as info:
        validate_table(pd.DataFrame({"a": [-1, 2]}), Validate(schema="s.yaml"))
    assert str(info.value) == (
        "the table does not match the schema s.yaml: 1 check failed in 1 column: "
        "a (in_range: 1 row)"
    )
    report = info.value.report
    assert isinstance(report, pd.DataFrame)
    assert report.to_dict("records") == [
        {
            "column": "a",
            "check": "in_range",
            "failures": 1,
            "samples": "-1",
            "expected": ">= 0",
            "rows": "0",
        }
    ]
