"""Fixtures of the training tests: specs from text, small tables, a project that trains."""

from __future__ import annotations

import textwrap
from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from tessera.config.errors import ConfigError
from tessera.training.spec import ModelSpec, parse_spec

from support import Project

SPEC = """
task: classification
target: target
features: {exclude: [worst_*]}
estimator:
  class: sklearn.ensemble.RandomForestClassifier
  params: {n_estimators: 15, max_depth: 4}
preprocessing:
  numbers: {type: numeric, impute: median, scale: standard}
metrics: [accuracy, f1, roc_auc, log_loss]
seed: 7
"""

PIPELINE = """
stages:
  raw:    {uses: read_table, with: {path: data/cancer.csv}}
  split:  {uses: train_test_split, inputs: [raw], with: {strategy: stratified, target: target}}
  model:  {uses: train, inputs: [split.train], with: {spec: models/cancer.yaml}}
  scores: {uses: evaluate, inputs: [model, split.test], with: {bootstrap: {samples: 100}}}
"""


@pytest.fixture
def spec_of() -> Callable[[str], ModelSpec]:
    """``spec_of(yaml_text)``: a spec parsed from (dedented) text, named ``models/m.yaml``."""

    def parse(text: str) -> ModelSpec:
        return parse_spec(textwrap.dedent(text), "models/m.yaml")

    return parse


@pytest.fixture
def spec_errors() -> Callable[[str], list[str]]:
    """``spec_errors(yaml_text)``: every problem of an invalid spec, rendered."""

    def errors(text: str) -> list[str]:
        with pytest.raises(ConfigError) as info:
            parse_spec(textwrap.dedent(text), "models/m.yaml")
        return [p.render() for p in info.value.sorted_problems()]

    return errors


@pytest.fixture(scope="session")
def cancer() -> pd.DataFrame:
    from tessera.examples.breast_cancer_data import load_table

    return load_table()


def mixed_table(rows: int = 300, seed: int = 0) -> pd.DataFrame:
    """Numeric and categorical features with missing values; binary, 3-class and real targets."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=rows)
    size = rng.normal(10, 3, size=rows)
    color = rng.choice(["red", "green", "blue"], size=rows).astype(object)
    score = x + (color == "red") * 1.5 + rng.normal(scale=0.5, size=rows)
    x[rng.random(rows) < 0.1] = np.nan
    color[rng.random(rows) < 0.1] = None
    return pd.DataFrame(
        {
            "id": np.arange(rows),
            "x": x,
            "size": size,
            "color": color,
            "label": np.where(score > 0.5, "yes", "no"),
            "kind": np.digitize(score, [0.0, 1.0]),
            "amount": 3 * score + 0.1 * size,
        }
    )


@pytest.fixture
def mixed() -> pd.DataFrame:
    return mixed_table()


@pytest.fixture
def ml_project(project: Project, cancer: pd.DataFrame) -> Project:
    """A project that reads the breast-cancer table, splits it, trains and evaluates."""
    (project.root / "data").mkdir(exist_ok=True)
    cancer.to_csv(project.root / "data" / "cancer.csv", index=False)
    project.write("models/cancer.yaml", SPEC)
    project.write("pipeline.yaml", PIPELINE)
    return project
