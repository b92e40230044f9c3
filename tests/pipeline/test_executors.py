"""Every executor produces exactly the same outputs as a sequential in-process run."""

from __future__ import annotations

import shutil

import pytest

from support import Project

WIDE = """
stages:
  raw:   {uses: load, with: {path: data/raw.csv}}
  a:     {uses: affine, inputs: [raw], with: {column: x}}
  b:     {uses: affine, inputs: [raw], with: {column: y, factor: 3}}
  c:     {uses: affine, inputs: [raw], with: {column: x, shift: 2}}
  split: {uses: halves, inputs: [c]}
  left:  {uses: affine, inputs: [split.left], with: {column: y}}
  all:   {uses: stack, inputs: [a, b, left, split.right]}
"""


def _outputs(tessera, project: Project, *args: str) -> dict[str, dict[str, str]]:
    result = tessera("run", "--json", *args, cwd=project.root)
    assert result.code == 0, result.err + result.out
    data = result.json()
    assert {s["status"] for s in data["stages"]} == {"done"}
    return {s["stage"]: s["outputs"] for s in data["stages"]}


@pytest.mark.slow
def test_parallel_processes_match_sequential(project: Project, tessera) -> None:
    project.write("pipeline.yaml", WIDE)
    sequential = _outputs(tessera, project)
    shutil.rmtree(project.root / ".tessera")
    parallel = _outputs(tessera, project, "-j", "2")
    assert parallel == sequential


@pytest.mark.slow
def test_dask_local_cluster_matches_sequential(project: Project, tessera) -> None:
    pytest.importorskip("distributed")
    project.write("pipeline.yaml", WIDE)
    sequential = _outputs(tessera, project)
    shutil.rmtree(project.root / ".tessera")
    on_dask = _outputs(tessera, project, "--executor", "dask", "-j", "2")
    assert on_dask == sequential
    result = tessera("run", "--executor", "dask", "--json", cwd=project.root).json()
    assert {s["status"] for s in result["stages"]} == {"cached"}


def test_executor_from_tessera_yaml_and_bad_executor(project: Project, tessera) -> None:
    project.write("tessera.yaml", "name: t\nexecutor: {kind: local, jobs: 2}\n")
    assert tessera("run", cwd=project.root).code == 0
    bad = tessera("run", "--executor", "spark", cwd=project.root)
    assert bad.code == 2
    assert "--executor must be 'local' or 'dask'" in bad.err
