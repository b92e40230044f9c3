"""Each example pipeline uses transformations that exist, with inputs and configs they accept."""

from __future__ import annotations

import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from tessera.config import load_pipeline_spec, load_project
from tessera.config.spec import load_overlay, stage_params
from tessera.examples import EXAMPLES, scaffold
from tessera.pipeline.registry import Registry, discover


@pytest.fixture
def fresh_transforms_package(monkeypatch: pytest.MonkeyPatch) -> None:
    """Leave ``sys.path`` and the ``transforms`` modules of other tests as they were.

    Discovery puts the project on ``sys.path`` and binds the package name ``transforms`` to the
    project's directory; each test starts without one and restores what was there.
    """
    monkeypatch.setattr(sys, "path", list(sys.path))
    for name in [m for m in sys.modules if m == "transforms" or m.startswith("transforms.")]:
        monkeypatch.delitem(sys.modules, name)


def registry_for(root: Path) -> Registry:
    return discover(root, load_project(root).config.transforms)


@pytest.mark.usefixtures("fresh_transforms_package")
@pytest.mark.parametrize(
    ("example", "env"), [*((name, None) for name in sorted(EXAMPLES)), ("churn", "small")]
)
def test_every_stage_uses_a_known_transformation_correctly(
    example: str, env: str | None, tmp_path: Path
) -> None:
    root = tmp_path / example
    scaffold(root, example)
    project = load_project(root)
    registry = registry_for(root)
    pipeline = load_pipeline_spec(project)
    overlay = load_overlay(project, pipeline, env, [])
    problems = []
    for name, stage in pipeline.stages.items():
        t = registry.get(stage.uses)
        if t is None:
            problems.append(f"{name}: unknown transformation {stage.uses!r}")
            continue
        n_inputs = len(stage.inputs)
        if not t.accepts(n_inputs):
            problems.append(f"{name}: {stage.uses} takes {t.arity()} inputs, not {n_inputs}")
        for ref in stage.inputs.values() if isinstance(stage.inputs, dict) else stage.inputs:
            upstream, _, output = ref.partition(".")
            produced = registry.get(pipeline.stages[upstream].uses)
            if output and produced is not None and output not in produced.outputs:
                problems.append(f"{name}: {upstream} has no output {output!r}")
        params, _, found = stage_params(project, pipeline, overlay, name)
        problems += [p.render() for p in found]
        try:
            t.config_model.model_validate(params)
        except ValueError as exc:
            problems.append(f"{name}: invalid config for {stage.uses}: {exc}")
    assert problems == []


@pytest.mark.usefixtures("fresh_transforms_package")
def test_breast_cancer_needs_no_project_code(tmp_path: Path) -> None:
    scaffold(tmp_path / "bc", "breast_cancer")
    registry = registry_for(tmp_path / "bc")
    assert registry.modules == []


@pytest.mark.usefixtures("fresh_transforms_package")
def test_churn_engagement_score(tmp_path: Path) -> None:
    root = tmp_path / "churn"
    scaffold(root, "churn")
    t = registry_for(root).get("engagement_score")
    assert t is not None
    assert Path(t.origin.rsplit(":", 1)[0]) == root / "transforms" / "churn_features.py"
    params = yaml.safe_load((root / "params/engagement.yaml").read_text())
    cfg = t.config_model.model_validate(params)
    reference = {column: [level] for column, level in params["reference"].items()}
    df = pd.DataFrame(
        {
            "num_logins": [15, 60, None],
            "data_usage_gb": [20.0, 0.0, 20.0],
            "call_minutes": [240.0, 0.0, 240.0],
            "satisfaction_score": [3.5, 1.0, 3.5],
            "support_tickets": [1, 0, 1],
        }
    )
    assert list(df.iloc[0]) == [v[0] for v in reference.values()]
    out = t.call([df], cfg)["out"]
    score = out["engagement_score"]
    weights = params["weights"]
    assert score[0] == pytest.approx(
        round(sum(weights.values()) / sum(abs(w) for w in weights.values()), 4)
    )
    assert score[2] == score[0]  # a missing value counts as its reference level
    assert out.drop(columns="engagement_score").equals(df)
    with pytest.raises(ValueError, match="reference has no level"):
        t.config_model.model_validate({**params, "reference": {"num_logins": 1}})
