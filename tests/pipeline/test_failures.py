"""A failing stage: its error, where it happened, its log, and how to resume."""

from __future__ import annotations

from pathlib import Path

from support import Project, statuses


def test_failed_stage_reports_error_log_and_resume(project: Project, tessera) -> None:
    project.edit("pipeline.yaml", "right:   {uses: untouched,", "right:   {uses: explode,")
    result = tessera("run", "-o", "a.factor=3", cwd=project.root)
    assert result.code == 1
    err = " ".join(result.err.split())
    assert "Stage 'right' failed: RuntimeError: boom: the data is wrong" in err
    assert "at transforms/ops.py:" in err
    assert "Fix it, then resume with: tessera run -o a.factor=3" in err
    assert "Traceback" not in result.err
    log = Path(err.split("log: ")[1].split()[0])
    assert "RuntimeError: boom" in log.read_text()
    # Independent work that finished is kept; the resume re-runs only what is left.
    project.edit("pipeline.yaml", "right:   {uses: explode,", "right:   {uses: untouched,")
    resumed = statuses(tessera("run", "-o", "a.factor=3", "--json", cwd=project.root))
    assert resumed["b"] == "cached"
    assert resumed["right"] == "done" and resumed["joined"] == "done"


def test_failure_json(project: Project, tessera) -> None:
    project.edit("pipeline.yaml", "right:   {uses: untouched,", "right:   {uses: explode,")
    result = tessera("run", "--json", cwd=project.root)
    assert result.code == 1
    data = result.json()
    assert data["status"] == "failed"
    assert statuses(result)["joined"] == "skipped"
    assert data["failures"][0]["stage"] == "right"


def test_stage_output_is_captured_in_its_log(project: Project, tessera) -> None:
    project.edit(
        "transforms/ops.py",
        '    """Return the input unchanged."""\n',
        '    """Return the input unchanged."""\n    print("hello from right")\n',
    )
    result = tessera("run", "--json", cwd=project.root)
    assert "hello from right" not in result.out
    logs = list((project.root / ".tessera" / "logs").rglob("right.log"))
    assert "hello from right" in logs[0].read_text()


def test_returning_a_non_table_fails_clearly(project: Project, tessera) -> None:
    project.write(
        "transforms/wrong.py",
        """
        import pandas as pd
        from tessera import transformation

        @transformation
        def not_a_table(df: pd.DataFrame) -> pd.DataFrame:
            return 42
        """,
    )
    project.write(
        "pipeline.yaml",
        "stages:\n  raw: {uses: load, with: {path: data/raw.csv}}\n"
        "  w: {uses: not_a_table, inputs: [raw]}\n",
    )
    result = tessera("run", cwd=project.root)
    assert result.code == 1
    assert "output 'out' of stage 'w' must be a pandas DataFrame, got int" in result.err


def test_builtin_failure_points_at_the_stage(project: Project, tessera) -> None:
    project.edit(
        "pipeline.yaml",
        "  joined:  {uses: stack, inputs: [left, right]}",
        "  joined:  {uses: stack, inputs: [left, right]}\n"
        "  picked:  {uses: select_columns, inputs: [joined], with: {columns: [x, nope]}}",
    )
    result = tessera("run", cwd=project.root)
    assert result.code == 1
    err = " ".join(result.err.split())
    assert "column 'nope' not found" in err
    assert "at pipeline.yaml:9 (stage 'picked')" in err


def test_sink_directories_are_created(project: Project, tessera) -> None:
    project.edit(
        "pipeline.yaml",
        "  joined:  {uses: stack, inputs: [left, right]}",
        "  joined:  {uses: stack, inputs: [left, right]}\n"
        "  saved:   {uses: write_table, inputs: [joined], with: {path: out/deep/joined.csv}}",
    )
    assert tessera("run", cwd=project.root).code == 0
    assert (project.root / "out/deep/joined.csv").is_file()
