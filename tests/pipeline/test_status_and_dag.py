"""`tessera status` explains staleness; `tessera dag` draws the graph."""

from __future__ import annotations

from support import Project


def _reasons(tessera, project: Project) -> dict[str, list[str]]:
    result = tessera("status", "--json", cwd=project.root)
    assert result.code == 0, result.err
    return {s["stage"]: s["reasons"] for s in result.json()["stages"]}


def test_status_reasons(project: Project, tessera) -> None:
    assert _reasons(tessera, project)["raw"] == ["never run"]
    tessera("run", cwd=project.root)
    assert all(r == [] for r in _reasons(tessera, project).values())

    project.edit("pipeline.yaml", "{column: y, factor: 3}", "{column: y, factor: 4}")
    reasons = _reasons(tessera, project)
    assert reasons["b"] == ["config changed: factor 3.0 -> 4.0"]
    assert reasons["split"] == ["upstream 'b' will run"]
    assert reasons["a"] == []
    project.edit("pipeline.yaml", "{column: y, factor: 4}", "{column: y, factor: 3}")

    project.edit("transforms/ops.py", '"""Return the input unchanged."""', '"""Unchanged."""')
    assert _reasons(tessera, project)["right"] == ["code changed"]
    tessera("run", cwd=project.root)

    (project.root / "data/raw.csv").write_text("x,y\n1.0,2\n3.0,4\n")
    assert _reasons(tessera, project)["raw"] == ["input file changed: data/raw.csv"]
    (project.root / "data/raw.csv").unlink()
    assert "input file missing: data/raw.csv" in _reasons(tessera, project)["raw"]


def test_status_compares_with_the_last_run(project: Project, tessera) -> None:
    tessera("run", "-o", "a.factor=5", cwd=project.root)
    reasons = _reasons(tessera, project)
    assert reasons["a"] == ["config changed: factor 5.0 -> 2.0"]
    assert reasons["b"] == ["upstream 'a' will run"]
    assert reasons["raw"] == []


def test_status_text_output(project: Project, tessera) -> None:
    result = tessera("status", cwd=project.root)
    assert "raw: never run" in result.out
    assert "7 of 7 stages would run." in result.out
    tessera("run", cwd=project.root)
    assert "Everything is up to date (7 stages)." in tessera("status", cwd=project.root).out


def test_dag_formats(project: Project, tessera) -> None:
    text = tessera("dag", cwd=project.root).out
    assert "left    (affine)  <- split.left" in text
    assert "joined  (stack)  <- left, right" in text
    mermaid = tessera("dag", "--format", "mermaid", cwd=project.root).out
    assert mermaid.startswith("graph TD")
    assert "split -->|left| left" in mermaid
    dot = tessera("dag", "-F", "dot", cwd=project.root).out
    assert '"split" -> "right" [label="right"];' in dot
    as_json = tessera("dag", "--json", cwd=project.root).json()
    joined = next(s for s in as_json["stages"] if s["stage"] == "joined")
    assert joined["inputs"] == ["left.out", "right.out"]
    bad = tessera("dag", "--format", "png", cwd=project.root)
    assert bad.code == 2 and "--format must be text, mermaid or dot" in bad.err


def test_reasons_compare_with_what_was_last_used(project: Project, tessera) -> None:
    tessera("run", cwd=project.root)
    tessera("run", "-o", "a.factor=5", cwd=project.root)
    tessera("run", cwd=project.root)  # back to factor 2: everything cached, nothing ran
    project.edit("transforms/_helpers.py", "return series * factor", "return factor * series")
    reasons = _reasons(tessera, project)
    assert reasons["a"] == ["code changed"]  # not "config changed: factor 5.0 -> 2.0"
