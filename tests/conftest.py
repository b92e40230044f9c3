"""Fixtures: small real projects on disk and an in-process ``tessera`` runner."""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from support import HELPERS, OPS, PIPELINE, Project, Result, write_raw


@pytest.fixture
def project(tmp_path: Path) -> Project:
    """The standard test project: 7 stages, a project transform file and a helper module."""
    p = Project(tmp_path / "proj")
    p.write("tessera.yaml", "name: test\n")
    p.write("pipeline.yaml", PIPELINE)
    p.write("transforms/ops.py", OPS)
    p.write("transforms/_helpers.py", HELPERS)
    write_raw(p.root)
    return p


@pytest.fixture
def tessera(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Result]:
    """Run the ``tessera`` CLI in this process: ``tessera("run", cwd=path)``."""
    from tessera.cli.main import main

    def invoke(*args: str, cwd: Path) -> Result:
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["tessera", *args])
        capsys.readouterr()
        code = 0
        try:
            main()
        except SystemExit as exc:
            code = int(exc.code or 0)
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke
