"""The live view of a run: one row per stage (queued, running, cached, done, failed)."""

from __future__ import annotations

import time
from types import TracebackType
from typing import Any

from rich.live import Live
from rich.table import Table
from rich.text import Text

from tessera.cli.output import console

STYLE = {
    "queued": ("·", "dim"),
    "running": ("▶", "bold yellow"),
    "cached": ("✓", "cyan"),
    "done": ("✓", "green"),
    "failed": ("✗", "bold red"),
    "skipped": ("-", "dim"),
}


class RunView:
    """Shows stage states live on a terminal, or one line per stage that ran otherwise."""

    def __init__(self, stages: dict[str, str], enabled: bool = True) -> None:
        self.uses = stages
        self.state: dict[str, str] = {}
        self.seconds: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.rows: dict[str, int | None] = {}
        self.enabled = enabled
        self.live: Live | None = None

    def __enter__(self) -> RunView:
        # In-process stages print into their log files; the view keeps the real terminal.
        self._pinned = console.file
        console.file = self._pinned
        if self.enabled and console.is_terminal:
            self.live = Live(
                console=console, get_renderable=self._table, refresh_per_second=8, transient=False
            )
            self.live.__enter__()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.live is not None:
            self.live.refresh()
            self.live.__exit__(exc_type, exc, tb)
        console.file = None  # type: ignore[assignment]  # follow sys.stdout again

    def __call__(self, event: Any) -> None:
        self.state[event.stage] = event.kind
        if event.kind == "running":
            self.started[event.stage] = time.perf_counter()
        if event.duration is not None:
            self.seconds[event.stage] = event.duration
        if getattr(event, "rows", None) is not None:
            self.rows[event.stage] = event.rows
        if self.live is not None:
            self.live.refresh()
        elif self.enabled and event.kind in ("done", "failed", "skipped"):
            # Without a terminal, one line per stage that did something; the summary counts
            # the cached ones.
            mark, style = STYLE[event.kind]
            took = f" {self.seconds[event.stage]:.2f}s" if event.stage in self.seconds else ""
            console.print(f"[{style}]{mark} {event.kind:<7}[/] {event.stage}{took}")

    def _table(self) -> Table:
        table = Table(box=None, pad_edge=False, show_header=True, header_style="bold")
        table.add_column("", width=1)
        table.add_column("stage")
        table.add_column("uses", style="dim")
        table.add_column("state")
        table.add_column("rows", justify="right")
        table.add_column("time", justify="right")
        now = time.perf_counter()
        for name, uses in self.uses.items():
            kind = self.state.get(name, "queued")
            mark, style = STYLE[kind]
            if kind == "running":
                took = f"{now - self.started.get(name, now):.1f}s"
            elif name in self.seconds:
                took = f"{self.seconds[name]:.2f}s"
            else:
                took = ""
            rows = self.rows.get(name)
            table.add_row(
                Text(mark, style=style),
                name,
                uses,
                Text(kind, style=style),
                f"{rows:,}" if rows is not None else "",
                took,
            )
        return table
