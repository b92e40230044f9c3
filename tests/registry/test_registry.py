"""The model registry: registration, quality gates, promotion, rollback, audit, lineage, hashes."""

from __future__ import annotations

from pathlib import Path

import pytest

from tessera.errors import UsageError
from tessera.registry.gate import GateConfig, evaluate_gate
from tessera.registry.models import Ref, files_sha256, parse_ref

from support import Project, statuses


def test_gate_thresholds_and_champion_margin() -> None:
    gate = GateConfig(min={"roc_auc": 0.8}, max={"log_loss": 0.5}, margin=0.01)
    passed = evaluate_gate(
        gate, {"roc_auc": 0.9, "log_loss": 0.3}, {"roc_auc": 0.88}, compare="roc_auc"
    )
    assert passed.passed and [c.check for c in passed.checks] == ["min", "max", "beat_champion"]
    short = evaluate_gate(
        gate, {"roc_auc": 0.885, "log_loss": 0.3}, {"roc_auc": 0.88}, compare="roc_auc"
    )
    assert not short.passed and short.failures()[0].check == "beat_champion"
    assert "does not beat the champion's 0.8800" in short.summary()
    low = evaluate_gate(gate, {"roc_auc": 0.7, "log_loss": 0.6}, None, compare="roc_auc")
    assert [c.check for c in low.failures()] == ["min", "max"]
    assert "roc_auc 0.7000 < min 0.8000" in low.summary()
    # A loss must be lower than the champion's by the margin.
    loss = GateConfig(compare="rmse", margin=0.5)
    assert evaluate_gate(loss, {"rmse": 9.0}, {"rmse": 10.0}, compare="rmse").passed
    assert not evaluate_gate(loss, {"rmse": 9.8}, {"rmse": 10.0}, compare="rmse").passed
    assert evaluate_gate(GateConfig(), {"rmse": 1.0}, None, compare="rmse").passed


def test_model_references() -> None:
    assert parse_ref("churn") == Ref("churn")
    assert parse_ref("churn@champion") == Ref("churn", alias="champion")
    assert parse_ref("churn/3") == Ref("churn", version="3")
    assert str(parse_ref("churn")) == "churn@champion"
    for bad in ("churn@", "churn/x", "@champion", "a/b/c", ""):
        with pytest.raises(UsageError, match="is not a model reference"):
            parse_ref(bad)


def test_files_hash_covers_names_and_bytes(tmp_path: Path) -> None:
    (tmp_path / "a").write_bytes(b"1")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b").write_bytes(b"2")
    first = files_sha256(tmp_path)
    (tmp_path / "sub" / "b").write_bytes(b"3")
    assert files_sha256(tmp_path) != first
    (tmp_path / "sub" / "b").write_bytes(b"2")
    assert files_sha256(tmp_path) == first
    (tmp_path / "a").rename(tmp_path / "c")
    assert files_sha256(tmp_path) != first


def test_register_gate_promote_rollback_and_audit(reg_project: Project, tessera) -> None:
    root = reg_project.root
    first = tessera("run", "--json", cwd=root)
    assert first.code == 0, first.err
    models = tessera("models", "list", "--json", cwd=root).json()["models"]
    assert models == [
        {
            "name": "cancer",
            "versions": 1,
            "latest": "1",
            "champion": "1",
            "challenger": None,
            "updated": models[0]["updated"],
        }
    ]
    v1 = tessera("models", "show", "cancer@champion", "--json", cwd=root).json()
    model_v1 = next(s for s in first.json()["stages"] if s["stage"] == "model")["outputs"]["out"]
    assert v1["model_version"] == model_v1 and len(v1["sha256"]) == 64
    assert v1["description"] == "breast cancer screening model"
    assert v1["tags"]["tessera.pipeline_run"] == first.json()["run_id"]
    assert [e["action"] for e in v1["events"]] == ["register", "promote"]
    promote = v1["events"][1]
    assert promote["alias"] == "champion" and promote["previous"] is None
    assert promote["details"]["candidate"]["roc_auc"] > 0.9
    assert "quality gate passed: roc_auc" in promote["reason"]

    # Running the stage again finds the version instead of registering a duplicate.
    again = tessera("run", "--force", "registered", cwd=root)
    assert again.code == 0, again.err
    assert tessera("models", "list", "--json", cwd=root).json()["models"][0]["versions"] == 1

    # A worse model fails the gate against the champion on the same rows: it is registered,
    # becomes the challenger, the stage fails (exit 1) and the champion stays.
    worse = tessera(
        "run", "-o", "model.params.n_estimators=1", "-o", "model.params.max_depth=1", cwd=root
    )
    assert worse.code == 1
    assert "quality gate failed: roc_auc" in worse.out + worse.err
    assert "does not beat the champion's" in worse.out + worse.err
    shown = tessera("models", "show", "cancer", "--json", cwd=root).json()
    aliases = {v["version"]: v["aliases"] for v in shown["versions"]}
    assert aliases == {"2": ["challenger"], "1": ["champion"]}
    gate_event = next(e for e in shown["events"] if e["action"] == "gate")
    assert gate_event["version"] == "2" and gate_event["details"]["champion"]["roc_auc"] > 0.9
    assert gate_event["details"]["gate"]["champion"] == "1"

    # A person can override: promote with a reason; rollback goes back.
    promoted = tessera(
        "models", "promote", "cancer/2", "-m", "manual override for a test", cwd=root
    )
    assert promoted.code == 0, promoted.err
    assert "cancer@champion -> version 2 (was version 1)" in promoted.out
    assert tessera("models", "show", "cancer/2", "--json", cwd=root).json()["aliases"] == [
        "champion"
    ]
    back = tessera("models", "rollback", "cancer", "-m", "worse in production", "--json", cwd=root)
    assert back.code == 0, back.err
    assert back.json() == {"name": "cancer", "alias": "champion", "from": "2", "to": "1"}
    none_left = tessera("models", "rollback", "cancer", "-m", "again", cwd=root)
    assert none_left.code == 2 and "no earlier version to roll back to" in none_left.err
    trail = tessera("models", "show", "cancer", "--json", cwd=root).json()["events"]
    manual = [
        e for e in trail if e["reason"] in {"manual override for a test", "worse in production"}
    ]
    assert [(e["action"], e["version"], e["previous"]) for e in manual] == [
        ("promote", "2", "1"),
        ("rollback", "1", "2"),
    ]
    assert all("@" in e["actor"] and e["at"] > 0 for e in manual)
    assert manual[0]["details"]["candidate"] is not None

    # Lineage from the champion back to the raw data.
    tree = tessera("lineage", "cancer@champion", "--json", cwd=root).json()
    assert tree["model"]["version"] == "1"
    assert tree["lineage"]["version"] == model_v1 and tree["lineage"]["stage"] == "model"
    split = tree["lineage"]["inputs"][0]
    assert split["stage"] == "split" and split["inputs"][0]["stage"] == "raw"
    text = tessera("lineage", "cancer/1", cwd=root)
    assert "model cancer version 1 @champion" in text.out and "data/cancer.csv" in text.out


def test_a_tampered_model_is_refused(reg_project: Project, tessera) -> None:
    root = reg_project.root
    assert tessera("run", cwd=root).code == 0
    from tessera.cli.model_cmds import open_registry
    from tessera.registry.models import ModelHashError

    registry = open_registry()
    info, pipeline = registry.load("cancer@champion")
    assert info.version == "1" and hasattr(pipeline, "predict_proba")
    (skops_file,) = (root / ".tessera" / "mlartifacts").rglob("model.skops")
    data = bytearray(skops_file.read_bytes())
    data[-30] ^= 0xFF
    skops_file.write_bytes(bytes(data))
    with pytest.raises(ModelHashError, match="do not match the hash recorded at registration"):
        registry.load("cancer@champion")
    refused = tessera("models", "package", "cancer@champion", "--out", "bundle", cwd=root)
    assert refused.code == 1 and "refusing to load it" in refused.err
    assert not (root / "bundle").exists()


def test_errors_name_the_model_or_field(reg_project: Project, tessera) -> None:
    root = reg_project.root
    missing = tessera("models", "show", "cancer", cwd=root)
    assert missing.code == 2 and "no registered model 'cancer'" in missing.err
    bad_ref = tessera("models", "show", "cancer@", cwd=root)
    assert bad_ref.code == 2 and "is not a model reference" in bad_ref.err
    reg_project.write(
        "pipeline.yaml",
        reg_project.read("pipeline.yaml")
        .replace("name: cancer", "name: 'bad name'")
        .replace("min: {roc_auc: 0.8}", "min: {roc_aux: 0.8}"),
    )
    bad = tessera("run", cwd=root)
    assert bad.code == 2
    assert "registered" in bad.err and "name" in bad.err and "roc_aux" in bad.err
    assert "did you mean 'roc_auc'" in bad.err


def test_no_registration_without_a_passing_stage(reg_project: Project, tessera) -> None:
    reg_project.write(
        "pipeline.yaml",
        reg_project.read("pipeline.yaml").replace("min: {roc_auc: 0.8}", "min: {roc_auc: 0.999}"),
    )
    result = tessera("run", "--json", cwd=reg_project.root)
    assert result.code == 1 and statuses(result)["registered"] == "failed"
    shown = tessera("models", "show", "cancer", "--json", cwd=reg_project.root).json()
    assert [v["aliases"] for v in shown["versions"]] == [["challenger"]]


def test_package_the_champion_and_predict_from_the_bundle(reg_project: Project, tessera) -> None:
    """The CLI's bundle predicts what the registered model predicts (the bundle's own tests
    install it into a fresh virtual environment: tests/registry/test_package.py)."""
    import json
    import subprocess
    import sys

    import pandas as pd

    root = reg_project.root
    assert tessera("run", cwd=root).code == 0
    made = tessera("models", "package", "cancer@champion", "--out", "bundle", "--json", cwd=root)
    assert made.code == 0, made.err
    bundle = root / "bundle"
    manifest = json.loads((bundle / "manifest.json").read_text())
    assert manifest["name"] == "cancer" and manifest["version"] == "1"
    assert (manifest["task"], manifest["target"], manifest["classes"]) == (
        "classification",
        "target",
        [0, 1],
    )
    # The image runs as a non-root user: everything must be readable by others.
    for path in [bundle / "model", *(bundle / "model").rglob("*")]:
        assert path.stat().st_mode & 0o777 == (0o755 if path.is_dir() else 0o644), path
    assert manifest["alias"] == "champion" and "model.skops" in manifest["files"]
    from tessera.cli.model_cmds import open_registry
    from tessera.registry.package import check_dockerfile

    assert check_dockerfile(bundle / "Dockerfile") == []
    rows = pd.read_csv(root / "data" / "cancer.csv").head(20)
    rows.to_csv(root / "rows.csv", index=False)
    done = subprocess.run(
        [sys.executable, "serve.py", "predict", str(root / "rows.csv"), "--out", "p.csv"],
        cwd=bundle,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    served = pd.read_csv(bundle / "p.csv")
    _, pipeline = open_registry().load("cancer@champion")
    features = list(pipeline.feature_names_in_)
    assert served["prediction"].tolist() == pipeline.predict(rows[features]).tolist()
    assert served["probability"].to_numpy() == pytest.approx(
        pipeline.predict_proba(rows[features])[:, 1], abs=1e-12
    )
    again = tessera("models", "package", "cancer@champion", "--out", "bundle", cwd=root)
    assert again.code == 2 and "bundle" in again.err


def test_the_gate_scores_each_model_on_its_own_features(reg_project: Project, tessera) -> None:
    root = reg_project.root
    assert tessera("run", cwd=root).code == 0
    reg_project.write(
        "models/cancer.yaml",
        reg_project.read("models/cancer.yaml").replace(
            "features: {exclude: [worst_*]}", "features: [mean_radius, mean_texture]"
        ),
    )
    result = tessera("run", cwd=root)
    assert "columns are missing" not in result.out + result.err
    assert result.code == 1 and "does not beat the champion's" in result.out + result.err
    shown = tessera("models", "show", "cancer", "--json", cwd=root).json()
    gate = next(e for e in shown["events"] if e["action"] == "gate")["details"]
    assert gate["champion"]["roc_auc"] > gate["candidate"]["roc_auc"] > 0.8


def test_gate_metrics_must_fit_the_task_and_their_direction(reg_project: Project, tessera) -> None:
    root = reg_project.root
    pipeline = reg_project.read("pipeline.yaml")
    reg_project.write(
        "pipeline.yaml", pipeline.replace("min: {roc_auc: 0.8}", "min: {log_loss: 0.9}")
    )
    loss = tessera("run", cwd=root)
    assert (
        loss.code == 2 and "'log_loss' is a loss (lower is better): put it under `max`" in loss.err
    )
    reg_project.write("pipeline.yaml", pipeline.replace("compare: roc_auc", "compare: rmse"))
    wrong = tessera("run", cwd=root)
    assert wrong.code == 1
    assert "the gate's metric 'rmse' does not apply to a classification model" in wrong.err
    assert tessera("models", "list", "--json", cwd=root).json()["models"] == []
