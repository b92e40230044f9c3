"""``train``, ``evaluate`` and ``predict`` as pipeline stages, run by ``tessera run``."""

from __future__ import annotations

import subprocess
import sys

import pandas as pd
import pytest

from tessera.pipeline.registry import discover
from tessera.training import load_model, model_info
from tessera.training.stages import Evaluate, Predict, Train, evaluate_model, predict, train_model

from support import Project, statuses


def test_the_stages_are_registered() -> None:
    found = discover(None).transformations
    assert found["train"].inputs == ("train",) and found["train"].config_model is Train
    assert found["evaluate"].inputs == ("model", "test")
    assert found["evaluate"].config_model is Evaluate
    assert found["predict"].inputs == ("model", "data") and found["predict"].config_model is Predict
    for name in ("train", "evaluate", "predict"):
        assert {"scikit-learn", "lightgbm", "skops"} <= set(found[name].libraries)


def test_importing_the_stages_is_light() -> None:
    code = (
        "import sys, tessera.training.stages, tessera.training;"
        "heavy = {'sklearn', 'lightgbm', 'skops', 'pandas', 'numpy', 'scipy'};"
        "print(sorted(heavy & {m.split('.')[0] for m in sys.modules}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_train_evaluate_predict_in_a_pipeline(ml_project: Project, tessera) -> None:
    ml_project.write(
        "pipeline.yaml",
        ml_project.read("pipeline.yaml")
        + "  scored: {uses: predict, inputs: [model, split.test]}\n",
    )
    first = tessera("run", "--json", cwd=ml_project.root)
    assert first.code == 0, first.err
    assert set(statuses(first).values()) == {"done"}
    second = tessera("run", "--json", cwd=ml_project.root)
    assert set(statuses(second).values()) == {"cached"}

    from tessera.data.store import ArtifactStore

    outputs = {
        s["stage"]: s["outputs"]["out"] for s in first.json()["stages"] if "out" in s["outputs"]
    }
    store = ArtifactStore(ml_project.root / ".tessera" / "cache")
    model = store.get_table(outputs["model"])
    info = model_info(model)
    assert info.target == "target" and info.classes == [0, 1]
    assert not any(f.startswith("worst_") for f in info.features) and len(info.features) == 20
    scores = store.get_table(outputs["scores"]).to_pandas()
    assert scores["metric"].tolist() == ["accuracy", "f1", "roc_auc", "log_loss"]
    assert (scores["split"] == "test").all() and (scores["rows"] == 114).all()
    assert (scores["ci_low"] <= scores["value"]).all() and (
        scores["value"] <= scores["ci_high"]
    ).all()
    assert scores.set_index("metric")["accuracy":"roc_auc"]["value"].min() > 0.85
    scored = store.get_table(outputs["scored"]).to_pandas()
    assert {"prediction", "probability"} <= set(scored.columns) and len(scored) == 114
    pipeline = load_model(model)
    assert (pipeline.predict(scored[info.features]) == scored["prediction"]).all()


def test_the_model_is_reproducible_and_a_spec_edit_reruns_train_and_evaluate_only(
    ml_project: Project, tessera
) -> None:
    first = tessera("run", "--json", cwd=ml_project.root).json()
    forced = tessera("run", "model", "--force", "--json", cwd=ml_project.root)
    assert statuses(forced)["model"] == "done"

    def fingerprint(result: dict, stage: str) -> str:
        return next(s for s in result["stages"] if s["stage"] == stage)["outputs"]["out"]

    assert fingerprint(forced.json(), "model") == fingerprint(first, "model")
    ml_project.edit("models/cancer.yaml", "max_depth: 4", "max_depth: 3")
    edited = statuses(tessera("run", "--json", cwd=ml_project.root))
    assert edited == {"raw": "cached", "split": "cached", "model": "done", "scores": "done"}
    ml_project.edit("models/cancer.yaml", "max_depth: 3", "max_depth: 4")
    back = statuses(tessera("run", "--json", cwd=ml_project.root))
    assert set(back.values()) == {"cached"}


def test_overrides_from_the_command_line(ml_project: Project, tessera) -> None:
    ml_project.edit(
        "pipeline.yaml", "{spec: models/cancer.yaml}", "{spec: models/cancer.yaml, params: {}}"
    )
    result = tessera("run", "-o", "model.params.n_estimators=5", "--json", cwd=ml_project.root)
    assert result.code == 0, result.err
    bad = tessera("run", "-o", "model.params.n_estimator=5", cwd=ml_project.root)
    assert bad.code == 2
    assert "unknown: 'n_estimator' (did you mean 'n_estimators'?)" in bad.err


def test_a_bad_spec_is_reported_before_anything_runs(ml_project: Project, tessera) -> None:
    ml_project.edit("models/cancer.yaml", "metrics: [accuracy, f1,", "metrics: [accuracy, rmse,")
    result = tessera("run", "--json", cwd=ml_project.root)
    assert result.code == 2
    data = result.json()
    assert data["status"] == "error"
    assert (
        "models/cancer.yaml:9 key 'metrics.1': metric 'rmse' is for regression, not "
        "classification" in data["error"]
    )
    assert not (ml_project.root / ".tessera" / "cache" / "objects").exists()


def test_a_missing_spec_and_bad_evaluate_config(ml_project: Project, tessera) -> None:
    ml_project.edit("pipeline.yaml", "models/cancer.yaml", "models/nope.yaml")
    result = tessera("run", cwd=ml_project.root)
    assert result.code == 2 and "models/nope.yaml" in result.err
    ml_project.edit("pipeline.yaml", "models/nope.yaml", "models/cancer.yaml")
    ml_project.edit("pipeline.yaml", "{bootstrap: {samples: 100}}", "{metrics: [acuracy]}")
    result = tessera("run", cwd=ml_project.root)
    assert result.code == 2
    assert "unknown: 'acuracy' (did you mean 'accuracy'?)" in result.err


def test_evaluate_refuses_metrics_of_another_task(ml_project: Project, tessera) -> None:
    ml_project.edit("pipeline.yaml", "{bootstrap: {samples: 100}}", "{metrics: [rmse]}")
    result = tessera("run", "--json", cwd=ml_project.root)
    assert result.code == 1
    assert statuses(result)["scores"] == "failed"
    assert (
        "metric 'rmse' does not apply to a classification model"
        in result.json()["failures"][0]["error"]
    )


def test_calling_the_functions_directly(tmp_path, monkeypatch, cancer: pd.DataFrame) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text(
        "task: regression\ntarget: mean_area\nfeatures: {include: ['mean_*']}\n"
        "estimator: {class: sklearn.linear_model.Ridge}\n"
        "preprocessing: {all: {type: numeric}}\nmetrics: [rmse, r2]\n"
    )
    model = train_model(cancer.iloc[:400], Train(spec="m.yaml"))
    scores = evaluate_model(model.to_pandas(), cancer.iloc[400:], Evaluate(split="holdout"))
    assert scores["metric"].tolist() == ["rmse", "r2"] and (scores["split"] == "holdout").all()
    assert scores.loc[1, "value"] > 0.9
    out = predict(model.to_pandas(), cancer.iloc[400:], Predict(column="area_hat"))
    assert "area_hat" in out.columns and "probability" not in out.columns
    with pytest.raises(ValueError, match="lacks the model's feature column"):
        predict(model.to_pandas(), cancer[["mean_radius"]], Predict())


@pytest.mark.slow
def test_the_model_bytes_are_the_same_in_another_process(ml_project: Project) -> None:
    """skops names objects after id() values; Tessera renumbers them, so bytes do not vary."""
    import json
    import os
    from pathlib import Path

    tessera_bin = Path(sys.executable).parent / "tessera"
    env = {**os.environ, "PYTHONHASHSEED": "random"}
    prints = []
    for _ in range(2):
        proc = subprocess.run(
            [str(tessera_bin), "run", "model", "--force", "--json"],
            cwd=ml_project.root,
            capture_output=True,
            text=True,
            env=env,
            check=True,
        )
        stages = json.loads(proc.stdout)["stages"]
        prints.append(next(s for s in stages if s["stage"] == "model")["outputs"]["out"])
    assert prints[0] == prints[1]
