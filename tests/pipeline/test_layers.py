"""Parameter layering: defaults < pipeline < params file < env overlay < command line."""

from __future__ import annotations

from tessera.pipeline.workspace import open_workspace

from support import Project


def _shift(project: Project, env: str | None = None, overrides: tuple[str, ...] = ()) -> float:
    ws = open_workspace(project.root, env=env, overrides=list(overrides))
    return float(ws.pipeline.stages["left"].config["shift"])


def test_each_layer_overrides_the_one_below(project: Project) -> None:
    project.edit("pipeline.yaml", "with: {column: x, shift: 1}}", "with: {column: x}}")
    project.write("tessera.yaml", "name: test\ndefaults:\n  affine: {shift: 10}\n")
    assert _shift(project) == 10  # project defaults
    project.edit(
        "pipeline.yaml",
        "inputs: [split.left], with: {column: x}}",
        "inputs: [split.left], with: {column: x, shift: 20}, params: params/left.yaml}",
    )
    project.write("params/left.yaml", "# nothing yet\n")
    assert _shift(project) == 20  # pipeline beats defaults
    project.write("params/left.yaml", "shift: 30\n")
    assert _shift(project) == 30  # params file beats pipeline
    project.write("envs/prod.yaml", "stages:\n  left: {shift: 40}\n")
    assert _shift(project, env="prod") == 40  # env overlay beats params file
    assert _shift(project, env="prod", overrides=("left.shift=50",)) == 50  # CLI beats all


def test_with_can_name_a_params_file(project: Project) -> None:
    project.write("params/b.yaml", "column: y\nfactor: 7\n")
    project.edit(
        "pipeline.yaml",
        "inputs: [a], with: {column: y, factor: 3}}",
        "inputs: [a], with: params/b.yaml}",
    )
    ws = open_workspace(project.root)
    assert ws.pipeline.stages["b"].config == {"column": "y", "factor": 7.0, "shift": 0.0}


def test_errors_point_at_the_layer_that_set_the_value(project: Project, tessera) -> None:
    project.write("params/b.yaml", "column: y\nfactor: lots\n")
    project.edit(
        "pipeline.yaml",
        "inputs: [a], with: {column: y, factor: 3}}",
        "inputs: [a], with: params/b.yaml}",
    )
    result = tessera("run", cwd=project.root)
    assert "params/b.yaml:2 stage 'b' key 'factor': invalid value" in result.err
    project.write("params/b.yaml", "column: y\n")
    result = tessera("run", "-o", "b.factor=[1]", cwd=project.root)
    assert "command line stage 'b' key 'factor': invalid value" in " ".join(result.err.split())


def test_override_values_are_yaml(project: Project) -> None:
    ws = open_workspace(project.root, overrides=["a.column=y", "a.factor=0.5"])
    assert ws.pipeline.stages["a"].config["column"] == "y"
    assert ws.pipeline.stages["a"].config["factor"] == 0.5


def test_dates_stay_strings_until_the_model_decides() -> None:
    from tessera.config.yaml_io import parse_yaml

    assert parse_yaml("d: 2024-01-31").data == {"d": "2024-01-31"}
