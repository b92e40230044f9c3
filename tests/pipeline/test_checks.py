"""The whole pipeline is checked before anything runs; every problem is reported at once."""

from __future__ import annotations

from support import Project

BROKEN = """
stages:
  raw:    {uses: laod, with: {path: data/raw.csv}}
  a:      {uses: affine, inputs: [rwa], with: {column: x, factor: big}}
  b:
    uses: affine
    inputs: [a]
    with:
      column: y
      factr: 2
  split:  {uses: halves, inputs: [b, a]}
  left:   {uses: affine, inputs: [split], with: {column: x}}
  right:  {uses: untouched, inputs: [split.middle]}
  c:      {uses: affine, inputs: [d], with: {column: x}}
  d:      {uses: affine, inputs: [c], with: {column: x}}
  e:      {uses: untouched, inputs: [raw], colour: red}
"""


def test_all_problems_reported_with_file_line_stage_and_key(project: Project, tessera) -> None:
    project.write("pipeline.yaml", BROKEN)
    result = tessera("run", cwd=project.root)
    assert result.code == 2
    assert "Traceback" not in result.err
    err = result.err
    expected = [
        "pipeline.yaml:2 stage 'raw' key 'uses': unknown transformation 'laod'",
        "(did you mean 'load'?)",
        "pipeline.yaml:3 stage 'a' key 'factor': invalid value; expected a valid number",
        "got 'big' (str)",
        "pipeline.yaml:9 stage 'b' key 'factr': unknown key (did you mean 'factor'?)",
        "pipeline.yaml:10 stage 'split' key 'inputs': wrong number of inputs for 'halves'",
        "stage 'left' key 'inputs.0': stage 'split' has 2 outputs",
        "expected split.left, split.right",
        "stage 'right' key 'inputs.0': stage 'split' has no output 'middle'",
        "stage 'a' key 'inputs.0': input 'rwa' is not a stage (did you mean 'raw'?)",
        "the stages form a cycle",
        "pipeline.yaml:15 stage 'e' key 'colour': unknown key",
    ]
    for text in expected:
        assert text in " ".join(err.split()), f"missing: {text}\n---\n{err}"
    assert "configuration errors:" in err
    assert not (project.root / ".tessera" / "cache").exists()  # nothing ran


def test_yaml_syntax_error_names_file_and_line(project: Project, tessera) -> None:
    project.write("pipeline.yaml", "stages:\n  a: {uses: [\n")
    result = tessera("run", cwd=project.root)
    assert result.code == 2
    assert "pipeline.yaml:3: invalid YAML" in result.err


def test_missing_params_file_and_bad_override(project: Project, tessera) -> None:
    project.edit("pipeline.yaml", "with: {column: x}}", "with: params/nope.yaml}")
    result = tessera("run", "-o", "nosuch.x=1", "-o", "bad", cwd=project.root)
    assert result.code == 2
    err = " ".join(result.err.split())
    assert "3 configuration errors" in err
    assert "override 'nosuch.x=1' names an unknown stage" in err
    assert "malformed override; expected STAGE.KEY=VALUE" in err
    assert "stage 'a' key 'with': params file not found, got 'params/nope.yaml'" in err


def test_unknown_target_and_env(project: Project, tessera) -> None:
    result = tessera("run", "splt", cwd=project.root)
    assert result.code == 2
    assert "no stage named 'splt' (did you mean 'split'?)" in result.err
    result = tessera("run", "--env", "prod", cwd=project.root)
    assert result.code == 2
    assert "environment 'prod' not found" in result.err


def test_no_project(tmp_path, tessera) -> None:
    result = tessera("run", cwd=tmp_path)
    assert result.code == 2
    assert "no tessera.yaml" in result.err
    assert "tessera init" in result.err


def test_broken_transform_module_is_reported_with_line(project: Project, tessera) -> None:
    project.write("transforms/bad.py", "import pandas\n\nx = 1 / 0\n")
    result = tessera("run", cwd=project.root)
    assert result.code == 2
    assert "transforms/bad.py:3: cannot import: ZeroDivisionError" in result.err


def test_duplicate_transformation_names(project: Project, tessera) -> None:
    project.write(
        "transforms/dupe.py",
        """
        import pandas as pd
        from tessera import transformation

        @transformation
        def untouched(df: pd.DataFrame) -> pd.DataFrame:
            return df
        """,
    )
    result = tessera("run", cwd=project.root)
    assert result.code == 2
    assert "transformation 'untouched' is defined twice" in result.err


def test_bad_tessera_yaml(project: Project, tessera) -> None:
    project.write("tessera.yaml", "name: t\nexecutor: {kind: spark, jobs: 0}\n")
    result = tessera("status", cwd=project.root)
    assert result.code == 2
    err = " ".join(result.err.split())
    assert "tessera.yaml:2 key 'executor.kind': invalid value; expected 'local' or 'dask'" in err
    assert "key 'executor.jobs': invalid value; expected greater than or equal to 1" in err


def test_defaults_for_unknown_transformation(project: Project, tessera) -> None:
    project.write("tessera.yaml", "name: t\ndefaults:\n  afine: {shift: 1}\n  stack: {}\n")
    result = tessera("status", cwd=project.root)
    assert result.code == 2
    assert "tessera.yaml:3 key 'defaults.afine': defaults for unknown transformation 'afine'" in (
        " ".join(result.err.split())
    )
    assert "did you mean 'affine'?" in result.err


def test_missing_transforms_directory_is_named(project: Project, tessera) -> None:
    project.write("tessera.yaml", "name: t\ntransforms: code\n")
    result = tessera("run", cwd=project.root)
    assert result.code == 2
    assert "the transforms directory 'code' does not exist" in result.err


def test_missing_input_file_is_caught_before_running(project: Project, tessera) -> None:
    result = tessera("run", "-o", "raw.path=data/nope.csv", cwd=project.root)
    assert result.code == 2
    err = " ".join(result.err.split())
    assert "pipeline.yaml:2 stage 'raw': input file 'data/nope.csv' does not exist" in err
    assert not (project.root / ".tessera" / "metadata.db").exists()


def test_unreadable_run_records(project: Project, tessera) -> None:
    tessera("run", cwd=project.root)
    (project.root / ".tessera" / "metadata.db").write_text("garbage " * 200)
    result = tessera("run", "-o", "a.factor=9", cwd=project.root)
    assert result.code == 1
    assert "cannot be read" in result.err and "Traceback" not in result.err


def test_duplicate_keys_are_errors(project: Project, tessera) -> None:
    project.edit(
        "pipeline.yaml",
        "  joined:  {uses: stack",
        "  right:   {uses: untouched, inputs: [split.left]}\n  joined:  {uses: stack",
    )
    result = tessera("run", cwd=project.root)
    assert result.code == 2
    assert "pipeline.yaml:8 key 'stages.right': duplicate key" in " ".join(result.err.split())


def test_validate_stage_schema_is_checked_before_running(project: Project, tessera) -> None:
    project.write("schemas/a.yaml", "columns:\n  x: {dtype: float64}\n")
    project.edit(
        "pipeline.yaml",
        "  b:       {uses: affine",
        "  checked: {uses: validate, inputs: [a], with: {schema: schemas/a.yaml}}\n"
        "  b:       {uses: affine",
    )
    assert tessera("run", cwd=project.root).code == 0
    project.write("schemas/a.yaml", "columns:\n  x: {dtype: float64, mni: 0}\n")  # a typo
    result = tessera("run", "-o", "a.factor=3", cwd=project.root)
    assert result.code == 2  # the memo must notice the edited schema file
    err = " ".join(result.err.split())
    assert "stage 'checked' key 'schema': invalid value; expected a valid schema" in err
    assert "schemas/a.yaml:2 key 'columns.x.mni': unknown key (did you mean 'min'?)" in err
    assert "a.factor" not in (project.root / ".tessera").as_posix()  # nothing ran
