"""The metadata store's contract, run against SQLite and a real PostgreSQL server."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tessera.data.metadata import HEAD_REVISION, MetadataStore, StageRecord, default_url


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "sqlite":
        url = default_url(tmp_path / ".tessera")
    else:
        url = request.getfixturevalue("postgres_url")
    s = MetadataStore(url)
    yield s
    s.close()


def _record(stage: str, status: str = "done", **kw) -> StageRecord:
    base = dict(
        run_id="",
        stage=stage,
        status=status,
        key="k" * 32,
        uses="t",
        code_hash="c" * 32,
        config_hash="h" * 32,
        config={"a": 1},
        versions={"python": "3.11"},
        started=time.time(),
        duration=0.5,
        host="h",
    )
    base.update(kw)
    return StageRecord(**base)


def test_runs_and_history(store: MetadataStore) -> None:
    store.start_run(
        "r1",
        "pipeline.yaml",
        command="tessera run",
        git_commit="abc",
        git_dirty=True,
        host="h",
        user="u",
        executor="local",
    )
    store.finish_run(
        "r1",
        "success",
        [
            _record(
                "raw",
                outputs={"out": "a" * 32},
                shapes={"out": [10, 2]},
                deps={"data/raw.csv": "f" * 32},
            ),
            _record(
                "clean",
                inputs=[["raw.out", "a" * 32]],
                outputs={"out": "b" * 32},
                shapes={"out": [9, 2]},
            ),
        ],
    )
    time.sleep(0.01)
    store.start_run("r2", "pipeline.yaml", command="tessera run")
    store.finish_run(
        "r2",
        "failed",
        [
            _record("raw", status="cached", outputs={"out": "a" * 32}),
            _record("clean", status="failed", error="boom", report="e" * 32),
        ],
    )
    runs = store.runs()
    assert [r["id"] for r in runs] == ["r2", "r1"]
    assert runs[1]["status"] == "success" and runs[1]["git_dirty"] is True
    clean = store.last_success("pipeline.yaml", "clean")
    assert clean is not None and clean.run_id == "r1"
    assert clean.inputs == [["raw.out", "a" * 32]] and clean.shapes == {"out": [9, 2]}
    assert clean.run["git_commit"] == "abc"
    assert [r.status for r in store.history("raw")] == ["done", "cached"]
    producer = store.producer("a" * 32)
    assert producer is not None and producer.stage == "raw" and producer.status == "done"
    assert producer.deps == {"data/raw.csv": "f" * 32}
    assert [r.run_id for r in store.file_history("data/raw.csv")] == ["r1"]
    assert store.find_versions("bbbb") == ["b" * 32]
    assert store.find_versions("ffff") == ["f" * 32]
    tables, files, reports = store.referenced()
    assert tables == {"a" * 32, "b" * 32} and files == {"f" * 32} and reports == {"e" * 32}


def test_reads_on_a_store_not_created_yet(tmp_path: Path) -> None:
    s = MetadataStore(default_url(tmp_path / "nothing"))
    assert s.runs() == [] and s.history("x") == [] and s.producer("a" * 32) is None
    assert not (tmp_path / "nothing").exists()  # reading creates nothing


def test_schema_is_migrated_to_head_and_matches_the_tables(store: MetadataStore) -> None:
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext
    from alembic.script import ScriptDirectory

    from tessera.data.metadata.schema import metadata

    store.runs()  # opens (and migrates)
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == (
            HEAD_REVISION
        )
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    scripts = ScriptDirectory(
        str(
            Path(__import__("tessera.data.metadata", fromlist=["x"]).__file__).parent / "migrations"
        )
    )
    assert scripts.get_current_head() == HEAD_REVISION


def test_migrations_build_exactly_the_declared_tables(store: MetadataStore) -> None:
    """An empty database migrated step by step equals one created fresh from the tables."""
    import sqlalchemy as sa
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    from tessera.data.metadata.schema import metadata
    from tessera.data.metadata.store import migrate

    if store.sqlite_path is not None:
        store.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(store.url)
    migrate(engine)
    with engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == (
            HEAD_REVISION
        )
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    engine.dispose()


def test_bad_urls_are_clear(tmp_path: Path) -> None:
    from tessera.data.errors import DataError

    with pytest.raises(DataError, match="not usable"):
        MetadataStore("nosuchdb://x/y").runs()
    with pytest.raises(DataError, match="cannot use the metadata store"):
        MetadataStore("postgresql+psycopg://nobody@127.0.0.1:1/none").runs()
    bad = tmp_path / "metadata.db"
    bad.write_text("not a database" * 100)
    with pytest.raises(DataError, match="cannot be read"):
        MetadataStore(f"sqlite:///{bad}").runs()


@pytest.mark.parametrize(
    "url", ["nosuchdb://x/y", "notaurl", "postgresql+psycopg://postgres@127.0.0.1:notaport/x"]
)
def test_misconfigured_urls_are_configuration_errors(url: str) -> None:
    from tessera.data.errors import StoreConfigError

    with pytest.raises(StoreConfigError, match=r"stores\.metadata in tessera\.yaml") as info:
        MetadataStore(url).runs()
    assert info.value.exit_code == 2


def test_model_events_form_an_ordered_audit_trail(store: MetadataStore) -> None:
    assert store.model_events("churn") == []
    store.start_run("r1", "pipeline.yaml")  # creates the database
    store.record_model_event("churn", "register", version="1", actor="a@h", at=1.0)
    store.record_model_event(
        "churn",
        "promote",
        alias="champion",
        version="1",
        actor="a@h",
        reason="gate passed",
        details={"candidate": {"roc_auc": 0.9}, "checks": [{"passed": True}]},
        run_id="r1",
        at=2.0,
    )
    store.record_model_event("churn", "promote", alias="challenger", version="2", at=3.0)
    store.record_model_event("other", "register", version="1", at=1.5)
    trail = store.model_events("churn")
    assert [(e["action"], e["version"]) for e in trail] == [
        ("register", "1"),
        ("promote", "1"),
        ("promote", "2"),
    ]
    assert trail[1]["details"] == {"candidate": {"roc_auc": 0.9}, "checks": [{"passed": True}]}
    assert trail[1]["reason"] == "gate passed" and trail[1]["run_id"] == "r1"
    assert [e["version"] for e in store.model_events("churn", alias="champion")] == ["1"]
    assert [e["action"] for e in store.model_events("churn", actions=["register"])] == ["register"]
