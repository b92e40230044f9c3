"""``tessera data push`` and ``tessera data pull``: artifacts to and from a remote.

The remote is named in ``tessera.yaml``::

    remotes:
      origin: {url: s3://bucket/tessera, options: {profile: team}}
    default_remote: origin

Without STAGE arguments everything moves: the whole local store (push) or the whole remote
(pull). With stages, only the current cache entries of those stages and of what they need, and
the tables those entries point to.
"""

from __future__ import annotations

from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from tessera.cli.output import console, emit_json, err_console
from tessera.cli.pipeline_cmds import JsonOpt

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from tessera.config.project import Project
    from tessera.data.remote import Remote, TransferSummary
    from tessera.data.store import ArtifactStore
    from tessera.pipeline.workspace import Workspace

StagesArg = typer.Argument(None, help="Only these stages and what they need (default: everything).")
RemoteOpt = typer.Option(
    None,
    "--remote",
    "-r",
    metavar="NAME",
    help="Remote from tessera.yaml (default: default_remote, or the only one).",
)
JobsOpt = typer.Option(8, "--jobs", "-j", min=1, metavar="N", help="Parallel transfers.")


def push(
    stages: list[str] = StagesArg,
    remote: str = RemoteOpt,
    jobs: int = JobsOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Upload artifacts the remote does not have yet (tables first, then cache entries)."""
    _transfer("push", stages, remote, jobs, as_json)


def pull(
    stages: list[str] = StagesArg,
    remote: str = RemoteOpt,
    jobs: int = JobsOpt,
    as_json: bool = JsonOpt,
) -> None:
    """Download artifacts from the remote, verifying each one before it is installed."""
    _transfer("pull", stages, remote, jobs, as_json)


def _transfer(
    direction: str, stages: list[str] | None, remote: str | None, jobs: int, as_json: bool
) -> None:
    """Push or pull everything, or just what ``stages`` need; then report."""
    from tessera.config.project import load_project

    project = load_project()
    target = resolve_remote(project, remote)
    not_ready: list[str] = []
    with BytesBar(enabled=not as_json) as bar:
        if stages:
            by_stage = _push_stages if direction == "push" else _pull_stages
            summary, not_ready = by_stage(target, stages, jobs, bar)
        else:
            move = target.push if direction == "push" else target.pull
            summary = move(_store(project), jobs=jobs, progress=bar)
    _report(summary, as_json, not_ready=not_ready)


def register(data_app: typer.Typer) -> None:
    """Add ``push`` and ``pull`` to the ``tessera data`` group."""
    data_app.command()(push)
    data_app.command()(pull)


# -- resolving the remote -----------------------------------------------------------------------


def resolve_remote(project: Project, name: str | None) -> Remote:
    """``--remote NAME``, else ``default_remote``, else the only remote configured."""
    from tessera.config.errors import did_you_mean
    from tessera.data.remote import REMOTES_EXAMPLE, Remote
    from tessera.errors import UsageError

    remotes = project.config.remotes
    if not remotes:
        raise UsageError(
            f"no remote is configured in {project.root / 'tessera.yaml'}; add one, e.g.\n"
            + REMOTES_EXAMPLE
        )
    if name is None:
        name = project.config.default_remote
        if name is not None and name not in remotes:
            hint = did_you_mean(name, remotes) or f"remotes: {', '.join(sorted(remotes))}"
            raise UsageError(
                f"default_remote '{name}' is not under remotes: in tessera.yaml ({hint})"
            )
    if name is None:
        if len(remotes) > 1:
            raise UsageError(
                f"{len(remotes)} remotes are configured ({', '.join(sorted(remotes))}): choose "
                "one with --remote NAME, or set default_remote: NAME in tessera.yaml"
            )
        name = next(iter(remotes))
    if name not in remotes:
        hint = did_you_mean(name, remotes) or f"remotes: {', '.join(sorted(remotes))}"
        raise UsageError(f"no remote named '{name}' in tessera.yaml ({hint})")
    config = remotes[name]
    return Remote(_absolute(config.url, project.root), config.options, name=name)


def _absolute(url: str, root: Path) -> str:
    """A plain relative path is relative to the project root, not to the working directory."""
    if "://" in url or "::" in url:
        return url
    path = Path(url).expanduser()
    return str(path if path.is_absolute() else (root / path).resolve())


def _store(project: Project) -> ArtifactStore:
    from tessera.data.store import ArtifactStore

    return ArtifactStore(project.state_dir / "cache")


# -- stages -------------------------------------------------------------------------------------


def _open(stages: list[str]) -> Workspace:
    from tessera.cli.pipeline_cmds import check_targets, open_ws

    ws = open_ws(None, None, None)
    try:
        check_targets(ws, stages)
    except BaseException:
        ws.close()
        raise
    return ws


def _push_stages(
    remote: Remote, stages: list[str], jobs: int, bar: BytesBar
) -> tuple[TransferSummary, list[str]]:
    """Push the current cache entries of ``stages`` and their ancestors."""
    from tessera.pipeline.plan import stage_status

    ws = _open(stages)
    try:
        statuses = stage_status(ws, stages)
        keys = [s.key for s in statuses if s.up_to_date and s.key]
        not_ready = [s.stage for s in statuses if not s.up_to_date]
        return remote.push(ws.store, keys=keys, jobs=jobs, progress=bar), not_ready
    finally:
        ws.close()


def _pull_stages(
    remote: Remote, stages: list[str], jobs: int, bar: BytesBar
) -> tuple[TransferSummary, list[str]]:
    """Pull what ``stages`` (and their ancestors) need, one layer of the pipeline at a time.

    A stage's key depends on the fingerprints its upstream stages produced, which are only known
    once their cache entries are here. So: compute the keys that can be computed, pull those
    entries and the tables they point to, and repeat until no new key turns up. The remote is
    listed once; each round fetches only the (small) entries it needs.
    """
    from tessera.data.remote import TransferSummary
    from tessera.pipeline.plan import stage_status

    ws = _open(stages)
    total = TransferSummary("pull", remote.name, remote.written_url)
    try:
        asked: set[str] = set()
        while True:
            statuses = stage_status(ws, stages)
            keys = [s.key for s in statuses if s.key and not s.up_to_date and s.key not in asked]
            if not keys:
                break
            got = remote.pull(
                ws.store, keys=keys, jobs=jobs, progress=bar, reuse_listing=bool(asked)
            )
            asked.update(keys)
            total.merge(got)
        return total, [s.stage for s in statuses if not s.up_to_date]
    finally:
        ws.close()


# -- output -------------------------------------------------------------------------------------


def _report(summary: TransferSummary, as_json: bool, *, not_ready: list[str]) -> None:
    from tessera.data.errors import DataError

    problems = []
    if summary.corrupt:
        where = "on the remote" if summary.action == "pull" else "in the local store"
        problems.append(
            f"{len(summary.corrupt)} corrupt file(s) {where} were not "
            f"{'installed' if summary.action == 'pull' else 'pushed'}: "
            + ", ".join(summary.corrupt[:5])
            + (" ..." if len(summary.corrupt) > 5 else "")
            + (
                "; delete them from the remote and push again from a machine with good copies"
                if summary.action == "pull"
                else ""
            )
        )
    if as_json:
        data = summary.to_dict()
        data["not_ready"] = not_ready
        data["status"] = "error" if problems else "success"
        emit_json(data)
        if problems:
            raise typer.Exit(1)
        return
    console.print(summary.line())
    if summary.incomplete_keys:
        err_console.print(
            f"[yellow]note:[/] {len(summary.incomplete_keys)} cache entries were left out because "
            "a table they point to is missing on the sending side",
            markup=True,
        )
    if summary.missing_keys and not not_ready:
        err_console.print(
            f"[yellow]note:[/] {len(summary.missing_keys)} requested cache entries were not found",
            markup=True,
        )
    if not_ready:
        verb = "pushed" if summary.action == "push" else "found on the remote"
        fix = (
            f"run `tessera run {' '.join(not_ready)}` first"
            if summary.action == "push"
            else "they will run on the next `tessera run`"
        )
        err_console.print(
            f"[yellow]note:[/] not {verb} (not up to date): {escape(', '.join(not_ready))}; {fix}",
            markup=True,
        )
    if problems:
        raise DataError("; ".join(problems))


class BytesBar:
    """A Rich progress bar in bytes on a terminal (stderr); does nothing otherwise.

    Implements ``tessera.data.remote.TransferProgress``; called from transfer threads (Rich's
    progress is thread-safe).
    """

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled and err_console.is_terminal
        self.progress: Progress | None = None
        self.task: TaskID | None = None
        self.total = 0

    def __enter__(self) -> BytesBar:
        if self.enabled:
            from rich.progress import (
                BarColumn,
                DownloadColumn,
                Progress,
                TextColumn,
                TimeRemainingColumn,
                TransferSpeedColumn,
            )

            self.progress = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                DownloadColumn(),
                TransferSpeedColumn(),
                TimeRemainingColumn(),
                console=err_console,
                transient=True,
            )
            self.progress.__enter__()
            self.task = self.progress.add_task("transfer", total=0)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self.progress is not None:
            self.progress.__exit__(exc_type, exc, tb)

    def start(self, files: int, nbytes: int) -> None:
        if self.progress is not None and self.task is not None:
            self.total += nbytes
            self.progress.update(self.task, total=self.total, description=f"{files} files")

    def advance(self, nbytes: int) -> None:
        if self.progress is not None and self.task is not None:
            self.progress.advance(self.task, nbytes)
