"""Fixtures of the registry tests: a project that trains, evaluates and registers a model."""

from __future__ import annotations

import pytest

from support import CANCER_SPEC as SPEC
from support import Project

PIPELINE = """
stages:
  raw:    {uses: read_table, with: {path: data/cancer.csv}}
  split:  {uses: train_test_split, inputs: [raw], with: {strategy: stratified, target: target}}
  model:  {uses: train, inputs: [split.train], with: {spec: models/cancer.yaml}}
  registered:
    uses: register
    inputs: [model, split.test]
    with:
      name: cancer
      description: breast cancer screening model
      gate: {min: {roc_auc: 0.8}, compare: roc_auc, margin: 0.0}
      bootstrap: {samples: 0}
"""


@pytest.fixture
def reg_project(project: Project) -> Project:
    """A project whose pipeline ends in a `register` stage for the model `cancer`."""
    from tessera.examples.breast_cancer_data import load_table

    (project.root / "data").mkdir(exist_ok=True)
    load_table().to_csv(project.root / "data" / "cancer.csv", index=False)
    project.write("models/cancer.yaml", SPEC)
    project.write("pipeline.yaml", PIPELINE)
    return project
