"""``tessera.examples.scaffold``: the empty project and the examples, as files and as config."""

from __future__ import annotations

import re
from pathlib import Path

import pandas as pd
import pytest
import yaml

import tessera.examples.churn_data
from tessera.config import load_pipeline_spec, load_project
from tessera.config.spec import load_overlay, stage_params
from tessera.errors import UsageError
from tessera.examples import EXAMPLES, describe, scaffold, summary

CHURN_FILES = {
    ".gitignore",
    "README.md",
    "tessera.yaml",
    "pipeline.yaml",
    "serving.yaml",
    "envs/small.yaml",
    "envs/challenger.yaml",
    "models/churn.yaml",
    "models/churn_challenger.yaml",
    "params/engagement.yaml",
    "params/history.yaml",
    "params/lags.yaml",
    "params/outliers.yaml",
    "params/rolling.yaml",
    "transforms/_helpers.py",
    "transforms/churn_features.py",
    "data/raw/events.csv",
}
BREAST_CANCER_FILES = {
    ".gitignore",
    "README.md",
    "tessera.yaml",
    "pipeline.yaml",
    "params/log_features.yaml",
    "data/raw/breast_cancer.csv",
}


def files_under(root: Path) -> set[str]:
    return {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}


def load_yaml_file(path: Path) -> dict:
    data = yaml.safe_load(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


@pytest.fixture(scope="module")
def churn(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("projects") / "churn-demo"
    scaffold(root, "churn")
    return root


@pytest.fixture(scope="module")
def breast_cancer(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("projects") / "bc"
    scaffold(root, "breast_cancer")
    return root


def test_catalog() -> None:
    assert set(EXAMPLES) == {"churn", "breast_cancer"}
    assert all(text and "\n" not in text for text in EXAMPLES.values())
    assert describe("churn").data == ("data/raw/events.csv",)
    assert describe(None).name == "empty"


def test_churn_files(churn: Path) -> None:
    assert files_under(churn) == CHURN_FILES
    assert ".tessera/" in (churn / ".gitignore").read_text().splitlines()
    assert (churn / "params").is_dir()
    assert not list(churn.rglob("__pycache__"))


def test_returns_what_it_created(tmp_path: Path) -> None:
    root = tmp_path / "new"
    created = scaffold(root, "breast_cancer")
    assert created == sorted(created)
    assert all(p.exists() for p in created)
    assert {p.relative_to(root).as_posix() for p in created if p.is_file()} == BREAST_CANCER_FILES


def test_project_name_is_the_directory_name(churn: Path, tmp_path: Path) -> None:
    assert load_yaml_file(churn / "tessera.yaml")["name"] == "churn-demo"
    odd = tmp_path / "true"
    scaffold(odd)
    assert load_yaml_file(odd / "tessera.yaml")["name"] == "true"


@pytest.mark.parametrize("example", ["churn", "breast_cancer"])
def test_example_config_loads(example: str, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(example)
    raw = load_yaml_file(root / "pipeline.yaml")
    assert set(raw) <= {"stages", "description"}
    project = load_project(root)
    pipeline = load_pipeline_spec(project)
    stages = pipeline.stages
    assert len(stages) >= 10
    for name, stage in stages.items():
        assert stage.description, f"stage {name} has no description"
        inputs = stage.inputs.values() if isinstance(stage.inputs, dict) else stage.inputs
        for ref in inputs:
            assert ref.split(".")[0] in stages, f"stage {name}: unknown input {ref}"
        for rel in (stage.with_, stage.params):
            if isinstance(rel, str):
                assert (root / rel).is_file(), f"stage {name}: no params file {rel}"
    overlay = load_overlay(project, pipeline, None, [])
    for name in stages:
        _, _, problems = stage_params(project, pipeline, overlay, name)
        assert problems == []


def test_churn_uses_params_defaults_and_env(churn: Path) -> None:
    project = load_project(churn)
    pipeline = load_pipeline_spec(project)
    uses = {stage.uses for stage in pipeline.stages.values()}
    assert {
        "read_table",
        "drop_duplicates",
        "clean_strings",
        "clip_values",
        "fill_missing",
        "cast_columns",
        "date_parts",
        "lag_columns",
        "rolling_aggregate",
        "group_aggregate",
        "ratio_columns",
        "one_row_per",
        "train_test_split",
        "write_table",
        "engagement_score",
    } <= uses
    base = load_overlay(project, pipeline, None, [])
    split, _, _ = stage_params(project, pipeline, base, "split")
    assert split["seed"] == 42  # from `defaults:` in tessera.yaml
    assert split["strategy"] == "stratified" and split["target"] == "churned"
    lags, _, _ = stage_params(project, pipeline, base, "lags")
    assert lags["order_by"] == "event_time"  # from params/lags.yaml
    small = load_overlay(project, pipeline, "small", [])
    scope, _, _ = stage_params(project, pipeline, small, "scope")
    default_scope, _, _ = stage_params(project, pipeline, base, "scope")
    assert scope["expr"] != default_scope["expr"]
    writes = [
        params["path"]
        for name, stage in pipeline.stages.items()
        if stage.uses == "write_table"
        for params in [stage_params(project, pipeline, base, name)[0]]
    ]
    assert sorted(writes) == ["data/features/test.parquet", "data/features/train.parquet"]


def test_breast_cancer_data_and_no_code(breast_cancer: Path) -> None:
    assert not (breast_cancer / "transforms").exists()
    df = pd.read_csv(breast_cancer / "data/raw/breast_cancer.csv")
    assert df.shape == (569, 31)
    assert df.columns[-1] == "target"
    assert all(re.fullmatch(r"[a-z][a-z0-9_]*", c) for c in df.columns)
    assert set(df["target"]) == {0, 1}


def test_empty_project(tmp_path: Path) -> None:
    root = tmp_path / "blank"
    created = scaffold(root)
    assert files_under(root) == {
        ".gitignore",
        "tessera.yaml",
        "pipeline.yaml",
        "transforms/example.py",
    }
    assert (root / "params").is_dir() and (root / "data").is_dir()
    assert root / "params" in created
    assert load_yaml_file(root / "tessera.yaml") == {"name": "blank"}
    assert load_yaml_file(root / "pipeline.yaml") == {"stages": {}}
    assert "# stages:" in (root / "pipeline.yaml").read_text()
    assert ".tessera/" in (root / ".gitignore").read_text()
    project = load_project(root)
    assert project.config.name == "blank"
    assert load_pipeline_spec(project).stages == {}


def test_empty_project_example_transformation_works(tmp_path: Path) -> None:
    """The commented example in transforms/example.py works once uncommented."""
    scaffold(tmp_path / "p")
    text = (tmp_path / "p/transforms/example.py").read_text()
    code = "\n".join(
        line[2:] if line.startswith("# ") else line[1:] if line == "#" else line
        for line in text.splitlines()
    )
    namespace: dict = {}
    exec(compile(code, "example.py", "exec"), namespace)
    cfg = namespace["AddConstant"](column="amount", value=1.5)
    out = namespace["add_constant"](pd.DataFrame({"amount": [1.0, 2.0]}), cfg)
    assert out["amount"].tolist() == [2.5, 3.5]
    assert hasattr(namespace["add_constant"], "__tessera_transformation__")


def test_existing_empty_directory_is_fine(tmp_path: Path) -> None:
    scaffold(tmp_path)
    assert (tmp_path / "tessera.yaml").is_file()


def test_non_empty_directory_is_refused(tmp_path: Path) -> None:
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="not empty"):
        scaffold(tmp_path, "churn")
    assert files_under(tmp_path) == {"notes.txt"}


def test_file_target_is_refused(tmp_path: Path) -> None:
    target = tmp_path / "file"
    target.write_text("x")
    with pytest.raises(UsageError, match="is a file"):
        scaffold(target)


def test_unknown_example(tmp_path: Path) -> None:
    with pytest.raises(UsageError, match="did you mean 'churn'") as info:
        scaffold(tmp_path / "p", "chrun")
    assert "breast_cancer" in str(info.value)
    assert info.value.exit_code == 2
    assert not (tmp_path / "p").exists()


def test_failed_scaffold_leaves_nothing_behind(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(path: Path) -> Path:
        raise OSError("disk full")

    monkeypatch.setattr(tessera.examples.churn_data, "write_events", broken)
    with pytest.raises(UsageError, match=r"cannot create a project in .*: disk full"):
        scaffold(tmp_path / "new", "churn")
    assert not (tmp_path / "new").exists()
    (tmp_path / "empty").mkdir()
    with pytest.raises(UsageError):
        scaffold(tmp_path / "empty", "churn")
    assert list((tmp_path / "empty").iterdir()) == []


def test_uncreatable_target_is_a_usage_error(tmp_path: Path) -> None:
    (tmp_path / "f").write_text("a file")
    with pytest.raises(UsageError, match="cannot create a project in"):
        scaffold(tmp_path / "f" / "proj")


def test_summary(tmp_path: Path) -> None:
    info = summary(tmp_path / "demo", "churn")
    assert info["example"] == "churn"
    assert info["name"] == "demo"
    assert "data/raw/events.csv" in info["data"]
    assert info["next_steps"][0] == f"cd {tmp_path / 'demo'}"
    assert "tessera run" in info["next_steps"]
    assert summary(tmp_path / "e")["example"] is None
