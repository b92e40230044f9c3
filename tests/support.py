"""Test support: the standard test project and helpers (fixtures are in conftest.py)."""

from __future__ import annotations

import json
import textwrap
from dataclasses import dataclass
from pathlib import Path
from typing import Any

OPS = '''
import pandas as pd
from pydantic import BaseModel, ConfigDict

from tessera import InputPath, transformation
from transforms._helpers import scale


class Load(BaseModel):
    model_config = ConfigDict(extra="forbid")
    path: InputPath


@transformation
def load(cfg: Load) -> pd.DataFrame:
    """Read a CSV file."""
    return pd.read_csv(cfg.path)


class Affine(BaseModel):
    model_config = ConfigDict(extra="forbid")
    column: str
    factor: float = 2.0
    shift: float = 0.0


@transformation
def affine(df: pd.DataFrame, cfg: Affine) -> pd.DataFrame:
    """Scale and shift one column."""
    out = df.copy()
    out[cfg.column] = scale(out[cfg.column], cfg.factor) + cfg.shift
    return out


@transformation
def untouched(df: pd.DataFrame) -> pd.DataFrame:
    """Return the input unchanged."""
    return df


@transformation(outputs=("left", "right"))
def halves(df: pd.DataFrame) -> dict:
    """Split rows into two halves."""
    n = len(df) // 2
    return {"left": df.iloc[:n], "right": df.iloc[n:]}


@transformation
def stack(*frames: pd.DataFrame) -> pd.DataFrame:
    """Concatenate tables."""
    return pd.concat(frames, ignore_index=True)


@transformation
def explode(df: pd.DataFrame) -> pd.DataFrame:
    """Always fails."""
    raise RuntimeError("boom: the data is wrong")
'''

HELPERS = """
def scale(series, factor):
    return series * factor


def unrelated():
    return 1
"""

PIPELINE = """
stages:
  raw:     {uses: load, with: {path: data/raw.csv}}
  a:       {uses: affine, inputs: [raw], with: {column: x}}
  b:       {uses: affine, inputs: [a], with: {column: y, factor: 3}}
  split:   {uses: halves, inputs: [b]}
  left:    {uses: affine, inputs: [split.left], with: {column: x, shift: 1}}
  right:   {uses: untouched, inputs: [split.right]}
  joined:  {uses: stack, inputs: [left, right]}
"""


@dataclass
class Project:
    """A project on disk, with helpers to edit it."""

    root: Path

    def write(self, rel: str, text: str) -> Path:
        path = self.root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text).lstrip("\n"))
        return path

    def read(self, rel: str) -> str:
        return (self.root / rel).read_text()

    def edit(self, rel: str, old: str, new: str) -> None:
        text = self.read(rel)
        assert old in text, f"{old!r} not in {rel}"
        (self.root / rel).write_text(text.replace(old, new))


def write_raw(root: Path, rows: int = 200) -> None:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(0)
    (root / "data").mkdir(exist_ok=True)
    pd.DataFrame({"x": rng.normal(size=rows), "y": rng.integers(0, 9, rows)}).to_csv(
        root / "data" / "raw.csv", index=False
    )


@dataclass
class Result:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        return json.loads(self.out)


def statuses(result: Result) -> dict[str, str]:
    """Stage -> status from ``tessera run --json`` output."""
    return {s["stage"]: s["status"] for s in result.json()["stages"]}


#: A small model spec of the breast-cancer table, for tests that need a registered model.
CANCER_SPEC = """
task: classification
target: target
features: {exclude: [worst_*]}
estimator:
  class: sklearn.ensemble.RandomForestClassifier
  params: {n_estimators: 20, max_depth: 4}
preprocessing:
  numbers: {type: numeric, impute: median, scale: none}
metrics: [roc_auc, accuracy]
seed: 7
"""
