"""Fixtures of the validation tests: schemas from text, and ``tessera validate`` in-process."""

from __future__ import annotations

import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
import typer

from tessera.validation import Schema, parse_schema

from support import Result


@pytest.fixture
def schema_of() -> Callable[[str], Schema]:
    """``schema_of(yaml_text)``: a schema parsed from (dedented) text, named ``s.yaml``."""

    def parse(text: str) -> Schema:
        return parse_schema(textwrap.dedent(text), "s.yaml")

    return parse


@pytest.fixture
def validate_cli(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> Callable[..., Result]:
    """Run ``tessera validate ARGS`` in this process, as ``tessera.cli.main.main`` would.

    The command is mounted on an app of its own, so these tests do not depend on how the main
    command line is assembled.
    """
    from tessera.cli import validate_cmds
    from tessera.cli.output import err_console
    from tessera.errors import TesseraError

    app = typer.Typer(pretty_exceptions_enable=False, add_completion=False)

    @app.callback()
    def _root() -> None:
        """Test root."""

    validate_cmds.register(app)

    def invoke(*args: str, cwd: Path) -> Result:
        monkeypatch.chdir(cwd)
        monkeypatch.setattr(sys, "argv", ["tessera", "validate", *args])
        capsys.readouterr()
        code = 0
        try:
            app(["validate", *args])
        except SystemExit as exc:
            code = int(exc.code or 0)
        except TesseraError as exc:
            err_console.print(f"error: {exc.render()}", markup=False)
            code = exc.exit_code
        captured = capsys.readouterr()
        return Result(code, captured.out, captured.err)

    return invoke
