"""``tessera``: the command line.

Start-up is kept light: each command imports what it needs when it runs, so that a ``tessera
run`` with nothing to do never imports pandas.
"""

from __future__ import annotations

import sys

import typer
from rich.markup import escape

from tessera._version import __version__
from tessera.cli import (
    data_cmds,
    model_cmds,
    pipeline_cmds,
    project_cmds,
    rollout_cmds,
    serve_cmds,
    validate_cmds,
)
from tessera.cli.output import emit_json, err_console
from tessera.errors import TesseraError

app = typer.Typer(
    name="tessera",
    help="Modular, cached, versioned ML pipelines from typed transformations and YAML.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    rich_markup_mode="rich",
)


def _version(value: bool) -> None:
    if value:
        print(f"tessera {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: bool = typer.Option(
        False,
        "--version",
        callback=_version,
        is_eager=True,
        metavar="",
        help="Show the version and exit.",
    ),
) -> None:
    """Modular, cached, versioned ML pipelines from typed transformations and YAML."""


pipeline_cmds.register(app)
data_cmds.register(app)
validate_cmds.register(app)
model_cmds.register(app)
project_cmds.register(app)
serve_cmds.register(app)
rollout_cmds.register(app)


def main() -> None:
    """Console-script entry point: user errors become one message and exit code 2 (or 1)."""
    try:
        app()
    except TesseraError as exc:
        err_console.print(
            f"[bold red]error:[/] {escape(exc.render())}", markup=True, highlight=False
        )
        if "--json" in sys.argv[1:]:  # a JSON consumer gets JSON, whatever went wrong
            problems = getattr(exc, "problems", [])
            emit_json(
                {
                    "status": "error",
                    "exit_code": exc.exit_code,
                    "error": exc.render(),
                    "problems": [p.to_dict() for p in problems],
                }
            )
        sys.exit(exc.exit_code)
    except OSError as exc:  # the machine said no: a full disk, a read-only or missing path...
        where = f": {exc.filename}" if exc.filename else ""
        err_console.print(f"[bold red]error:[/] {escape(exc.strerror or str(exc))}{escape(where)}")
        sys.exit(1)
    except KeyboardInterrupt:
        err_console.print("interrupted")
        sys.exit(130)


if __name__ == "__main__":
    main()
