"""``tessera data push/pull``: choosing the remote, stage selection, and the end-to-end promise:
a fresh clone plus ``data pull`` reproduces a colleague's results without recomputing.

The ``data`` command group is wired into the real CLI separately; these tests mount the commands
on a Typer app of their own, exactly as ``register`` does.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from tessera.cli.remote_cmds import register
from tessera.errors import UsageError

from support import Project, statuses


@pytest.fixture
def cli(monkeypatch: pytest.MonkeyPatch):
    """``cli("push", "--json", cwd=...)`` runs ``tessera data push --json`` in-process."""
    app = typer.Typer()
    data = typer.Typer()
    app.add_typer(data, name="data")
    register(data)
    runner = CliRunner()

    def invoke(*args: str, cwd: Path):
        monkeypatch.chdir(cwd)
        return runner.invoke(app, ["data", *args], catch_exceptions=True)

    return invoke


def with_remote(project: Project, remote: Path, extra: str = "") -> None:
    project.write("tessera.yaml", f"name: test\nremotes:\n  origin:\n    url: {remote.as_uri()}\n")
    if extra:
        (project.root / "tessera.yaml").write_text(project.read("tessera.yaml") + extra)


def clone(project: Project, dest: Path) -> Project:
    """What a colleague gets from git: every project file, but no ``.tessera/``."""
    shutil.copytree(project.root, dest, ignore=shutil.ignore_patterns(".tessera"))
    return Project(dest)


def outputs(result) -> dict[str, dict[str, str]]:
    return {s["stage"]: s["outputs"] for s in result.json()["stages"]}


def test_fresh_clone_plus_pull_reproduces_results_without_recomputing(
    project: Project, tessera, cli, tmp_path: Path
) -> None:
    with_remote(project, tmp_path / "remote")
    first = tessera("run", "--json", cwd=project.root)
    assert first.code == 0, first.err
    assert set(statuses(first).values()) == {"done"}

    pushed = cli("push", "--json", cwd=project.root)
    assert pushed.exit_code == 0, pushed.output
    summary = json.loads(pushed.stdout)
    assert summary["status"] == "success" and summary["remote"] == "origin"
    # 8 outputs, but `right` returns split.right unchanged: one object for both.
    assert summary["objects"] == 7 and summary["keys"] == 7

    colleague = clone(project, tmp_path / "colleague")
    assert not (colleague.root / ".tessera").exists()
    pulled = cli("pull", cwd=colleague.root)
    assert pulled.exit_code == 0, pulled.output
    # ... and the raw input file the `raw` stage read, kept in the store by content hash.
    assert pulled.stdout.startswith("pulled 7 objects, 7 keys, 1 file (")
    assert "from origin in" in pulled.stdout

    second = tessera("run", "--json", cwd=colleague.root)
    assert second.code == 0, second.err
    assert set(statuses(second).values()) == {"cached"}  # nothing recomputed
    assert outputs(second) == outputs(first)
    assert second.json()["run_id"] is None

    again = cli("push", "--json", cwd=project.root)
    assert json.loads(again.stdout)["files"] == 0  # the remote already has it all


def test_stage_selection_moves_only_what_those_stages_need(
    project: Project, tessera, cli, tmp_path: Path
) -> None:
    with_remote(project, tmp_path / "remote")
    assert tessera("run", cwd=project.root).code == 0
    pushed = cli("push", "a", "--json", cwd=project.root)
    assert pushed.exit_code == 0, pushed.output
    assert json.loads(pushed.stdout)["objects"] == 2  # raw and a, not b..joined

    cli("push", cwd=project.root)  # now everything
    colleague = clone(project, tmp_path / "colleague")
    pulled = cli("pull", "b", "--json", cwd=colleague.root)
    assert pulled.exit_code == 0, pulled.output
    got = json.loads(pulled.stdout)
    assert (got["objects"], got["keys"], got["not_ready"]) == (3, 3, [])
    status = tessera("status", "--json", cwd=colleague.root).json()
    fresh = {s["stage"]: s["status"] for s in status["stages"]}
    assert fresh["raw"] == fresh["a"] == fresh["b"] == "up-to-date"
    assert fresh["joined"] == "stale"
    run = tessera("run", "--json", "b", cwd=colleague.root)
    assert set(statuses(run).values()) == {"cached"}


def test_push_of_a_stale_stage_says_what_to_do(
    project: Project, tessera, cli, tmp_path: Path
) -> None:
    with_remote(project, tmp_path / "remote")
    tessera("run", "a", cwd=project.root)
    result = cli("push", "b", cwd=project.root)
    assert result.exit_code == 0, result.output
    assert "pushed 2 objects, 2 keys" in result.stdout
    assert "not pushed (not up to date): b; run `tessera run b` first" in result.stderr


def test_choosing_the_remote(project: Project, cli, tmp_path: Path) -> None:
    result = cli("push", cwd=project.root)
    assert isinstance(result.exception, UsageError)
    assert "no remote is configured" in str(result.exception)
    assert "remotes:\n  origin:\n    url: s3://" in str(result.exception)  # an example

    with_remote(project, tmp_path / "remote", "  backup:\n    url: file:///nonexistent\n")
    result = cli("push", cwd=project.root)
    assert isinstance(result.exception, UsageError) and "--remote NAME" in str(result.exception)
    result = cli("push", "--remote", "orign", cwd=project.root)
    assert isinstance(result.exception, UsageError)
    assert "no remote named 'orign'" in str(result.exception)
    assert "origin" in str(result.exception)  # did you mean
    ok = cli("push", "-r", "origin", "--json", cwd=project.root)
    assert ok.exit_code == 0, ok.output

    with_remote(project, tmp_path / "remote", "default_remote: origin\n")
    assert cli("push", "--json", cwd=project.root).exit_code == 0
    with_remote(project, tmp_path / "remote", "default_remote: nope\n")
    result = cli("push", cwd=project.root)
    assert isinstance(result.exception, UsageError) and "default_remote 'nope'" in str(
        result.exception
    )


def test_relative_remote_paths_are_relative_to_the_project(
    project: Project, tessera, cli, tmp_path: Path
) -> None:
    project.write("tessera.yaml", "name: test\nremotes:\n  origin: {url: ../shared-cache}\n")
    tessera("run", "raw", cwd=project.root)
    (project.root / "transforms").mkdir(exist_ok=True)
    result = cli("push", "--json", cwd=project.root / "transforms")
    assert result.exit_code == 0, result.output
    assert (tmp_path / "shared-cache" / "objects").is_dir()


def test_corrupt_remote_files_fail_the_pull(project: Project, tessera, cli, tmp_path: Path) -> None:
    with_remote(project, tmp_path / "remote")
    tessera("run", "raw", cwd=project.root)
    cli("push", cwd=project.root)
    obj = next((tmp_path / "remote" / "objects").rglob("*.parquet"))
    obj.write_bytes(b"garbage")
    colleague = clone(project, tmp_path / "colleague")
    result = cli("pull", "--json", cwd=colleague.root)
    assert result.exit_code == 1
    got = json.loads(result.stdout)
    assert got["status"] == "error" and len(got["corrupt"]) == 1
    assert got["incomplete_keys"]  # the entry is not installed without its table
    plain = cli("pull", cwd=colleague.root)
    assert "corrupt file(s) on the remote were not installed" in str(plain.exception)
