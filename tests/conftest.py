"""Fixtures: small real projects on disk and an in-process ``tessera`` runner."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable, Iterator
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


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A fresh database on the PostgreSQL server of TESSERA_TEST_POSTGRES_URL (dropped after).

    Skipped when no server answers, unless TESSERA_REQUIRE_SERVICES=1 (as in CI).
    """
    import uuid

    import sqlalchemy as sa

    base = os.environ.get(
        "TESSERA_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
    )
    try:
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text("SELECT 1"))
    except Exception as exc:
        if os.environ.get("TESSERA_REQUIRE_SERVICES") == "1":
            pytest.fail(f"PostgreSQL is required but unreachable at {base}: {exc}")
        pytest.skip(f"PostgreSQL not reachable at {base} (set TESSERA_TEST_POSTGRES_URL)")
    name = f"tessera_test_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    url = sa.engine.make_url(base).set(database=name).render_as_string(hide_password=False)
    try:
        yield url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()
