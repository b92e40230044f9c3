"""Console output shared by commands: one console, errors, JSON."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

import typer
from rich.console import Console

# Both follow whatever sys.stdout / sys.stderr are when they print (tests capture them).
console = Console(highlight=False, soft_wrap=True)
err_console = Console(stderr=True, highlight=False, soft_wrap=True)


def emit_json(data: Any) -> None:
    """Print ``data`` as JSON on stdout (nothing else goes to stdout with ``--json``)."""
    sys.stdout.write(json.dumps(data, indent=2, default=str) + "\n")


def fail(message: str, code: int = 2) -> NoReturn:
    err_console.print(f"[bold red]error:[/] {message}", markup=True, soft_wrap=True)
    raise typer.Exit(code)


def print_table(table: Any) -> None:
    """Print a Rich table; when not on a terminal, wide enough not to truncate ids."""
    if console.is_terminal:
        console.print(table)
        return
    saved = console.width
    console.width = max(saved, 200)
    try:
        console.print(table)
    finally:
        console.width = saved
