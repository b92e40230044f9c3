"""The installed ``tessera`` console script, as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from support import Project

TESSERA = str(Path(sys.executable).parent / "tessera")


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COLUMNS": "200"}
    return subprocess.run(
        [TESSERA, *args], cwd=cwd, capture_output=True, text=True, env=env, timeout=300
    )


def test_version_and_help(tmp_path: Path) -> None:
    from tessera import __version__

    assert run("--version", cwd=tmp_path).stdout.strip() == f"tessera {__version__}"
    help_text = run("--help", cwd=tmp_path).stdout
    for command in ("run", "status", "dag", "init", "demo", "transformations"):
        assert command in help_text


def test_config_error_exits_2_without_traceback(project: Project) -> None:
    project.edit("pipeline.yaml", "uses: affine, inputs: [raw]", "uses: afine, inputs: [raw]")
    proc = run("run", cwd=project.root)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "unknown transformation 'afine' (did you mean 'affine'?)" in proc.stderr


def test_bad_option_value_exits_2(project: Project) -> None:
    proc = run("run", "-j", "0", cwd=project.root)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr


def test_noop_run_does_not_import_pandas(project: Project) -> None:
    assert run("run", cwd=project.root).returncode == 0
    probe = (
        "import sys\n"
        "from tessera.cli.main import main\n"
        "sys.argv = ['tessera', 'run']\n"
        "try:\n    main()\nexcept SystemExit:\n    pass\n"
        "print('PANDAS' if 'pandas' in sys.modules else 'NO-PANDAS', file=sys.stderr)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", probe], cwd=project.root, capture_output=True, text=True, timeout=120
    )
    assert "Nothing to run: 7 stages up to date." in proc.stdout
    assert proc.stderr.strip().endswith("NO-PANDAS")


def test_init_empty_project_runs(tmp_path: Path) -> None:
    proc = run("init", "fresh", "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    files = json.loads(proc.stdout)["files"]
    assert any(f.endswith("tessera.yaml") for f in files)
    root = tmp_path / "fresh"
    assert ".tessera/" in (root / ".gitignore").read_text()
    status = run("status", "--json", cwd=root)
    assert status.returncode == 0 and json.loads(status.stdout)["stages"] == []
    again = run("init", "fresh", cwd=tmp_path)
    assert again.returncode == 2 and "Traceback" not in again.stderr


@pytest.mark.slow
def test_json_errors_are_json(project: Project) -> None:
    proc = run("run", "-o", "nosuch.x=1", "--json", cwd=project.root)
    assert proc.returncode == 2
    data = json.loads(proc.stdout)
    assert data["status"] == "error" and data["exit_code"] == 2
    assert data["problems"][0]["stage"] == "nosuch"
    assert data["problems"][0]["key"] == "x"


def test_init_drafts_a_schema_from_data(project: Project, tmp_path: Path) -> None:
    raw = project.root / "data" / "raw.csv"
    fresh = run("init", "new", "--schema-from", str(raw), cwd=tmp_path)
    assert fresh.returncode == 0, fresh.stderr
    schema = tmp_path / "new" / "schemas" / "raw.yaml"
    assert (tmp_path / "new" / "tessera.yaml").is_file() and schema.is_file()
    check = run("validate", str(raw), "--schema", str(schema), cwd=tmp_path)
    assert check.returncode == 0, check.stdout + check.stderr
    into_existing = run("init", str(project.root), "--schema-from", str(raw), cwd=tmp_path)
    assert into_existing.returncode == 0 and (project.root / "schemas" / "raw.yaml").is_file()
    again = run("init", str(project.root), "--schema-from", str(raw), cwd=tmp_path)
    assert again.returncode == 2 and "already exists" in again.stderr
