"""The compiled scoring path gives scikit-learn's answers bit for bit, or is not used."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest

from tessera.serving.compiled import NotCompiled, compile_pipeline
from tessera.serving.inputs import InputSchema, native_frame
from tessera.training.build import build_pipeline
from tessera.training.spec import parse_spec

PLANS = ["GOLD", "basic", "pro"]
REGIONS = ["north", "south", "east", "west"]


def _table(n: int, seed: int, *, unseen: bool = False) -> pd.DataFrame:
    """Numbers with gaps, an integer column, two categorical columns with gaps (and, for
    scoring, categories never seen in training), a boolean left to the remainder."""
    rng = np.random.default_rng(seed)
    income = rng.normal(50_000, 15_000, n)
    income[rng.random(n) < 0.15] = np.nan
    plans = rng.choice(PLANS + (["platinum"] if unseen else []), n).astype(object)
    plans[rng.random(n) < 0.1] = np.nan
    regions = rng.choice(REGIONS, n).astype(object)
    if unseen:
        regions[rng.random(n) < 0.1] = None
    return pd.DataFrame(
        {
            "income": income,
            "age": rng.integers(18, 90, n),
            "ratio": rng.random(n) * 3 - 1,
            "plan": pd.Series(plans, dtype=object),
            "region": pd.Series(regions, dtype=object),
            "active": rng.random(n) < 0.5,
        }
    )


LOGISTIC = "{class: sklearn.linear_model.LogisticRegression, params: {max_iter: 1000}}"


def _fit(
    preprocessing: str,
    estimator: str = LOGISTIC,
    features: list[str] | None = None,
    task: str = "classification",
) -> Any:
    spec = parse_spec(
        f"""
task: {task}
target: churn
estimator: {estimator}
preprocessing:
{preprocessing}
"""
    )
    train = _table(400, 1)
    target = (train["ratio"] + (train["plan"] == "pro") > 0.5).astype(int)
    features = features or list(train.columns)
    pipeline, _ = build_pipeline(spec, features, train)
    return pipeline.fit(train[features], target)


GROUPS = {
    "median, standard, one-hot": """
  numbers: {type: numeric, impute: median, scale: standard}
  labels: {type: categorical, impute: most_frequent, encode: onehot}""",
    "mean, minmax, ordinal": """
  numbers: {type: numeric, impute: mean, scale: minmax}
  labels: {type: categorical, impute: constant, fill_value: unknown, encode: ordinal}""",
    "constant, unscaled, split groups": """
  money: {type: numeric, columns: [income], impute: constant, fill_value: -1, scale: none}
  rest: {type: numeric, impute: median, scale: standard}
  plan: {type: categorical, columns: [plan], encode: onehot}
  region: {type: categorical, columns: [region], encode: ordinal}""",
}


@pytest.mark.parametrize("groups", list(GROUPS))
def test_the_compiled_form_answers_as_scikit_learn(groups: str) -> None:
    pipeline = _fit(GROUPS[groups])
    scoring = _table(300, 2, unseen=True)[list(pipeline.feature_names_in_)]
    compiled = compile_pipeline(pipeline, scoring.head(3))
    assert np.array_equal(compiled.predict_proba(scoring), pipeline.predict_proba(scoring))
    assert np.array_equal(compiled.predict(scoring), pipeline.predict(scoring))
    for i in range(5):  # one row at a time, as most requests come
        row = scoring.iloc[[i]].reset_index(drop=True)
        assert np.array_equal(compiled.predict_proba(row), pipeline.predict_proba(row))


def test_a_table_from_a_request_scores_the_same() -> None:
    """All-float tables take a shortcut (one array); the answers do not change."""
    columns = ["income", "age", "ratio", "active"]
    pipeline = _fit("  numbers: {type: numeric, impute: median, scale: standard}", features=columns)
    schema = InputSchema.from_signature(
        '[{"name": "income", "type": "double"}, {"name": "age", "type": "double"},'
        ' {"name": "ratio", "type": "double"}, {"name": "active", "type": "double"}]'
    )
    rows = [[52000.5, 33.0, 0.25, 1.0], [None, 61.0, -0.5, 0.0]]
    frame = native_frame({"columns": columns, "data": rows}, schema, 100)
    reference = pd.DataFrame(
        {"income": [52000.5, np.nan], "age": [33, 61], "ratio": [0.25, -0.5], "active": [1, 0]}
    )
    compiled = compile_pipeline(pipeline, frame)
    assert np.array_equal(compiled.predict_proba(frame), pipeline.predict_proba(reference))


def test_inputs_scikit_learn_rejects_are_rejected() -> None:
    pipeline = _fit(GROUPS["median, standard, one-hot"])
    frame = _table(3, 3)[list(pipeline.feature_names_in_)]
    compiled = compile_pipeline(pipeline, frame)
    frame.loc[1, "ratio"] = np.inf
    with pytest.raises(ValueError, match="infinity"):
        pipeline.predict(frame)
    with pytest.raises(ValueError, match="infinity"):
        compiled.predict(frame)


def test_a_tree_ensemble_and_a_regressor_compile() -> None:
    pipeline = _fit(
        GROUPS["mean, minmax, ordinal"], "{class: sklearn.ensemble.RandomForestClassifier}"
    )
    frame = _table(50, 4, unseen=True)[list(pipeline.feature_names_in_)]
    compiled = compile_pipeline(pipeline, frame.head(2))
    assert np.array_equal(compiled.predict_proba(frame), pipeline.predict_proba(frame))
    pipeline = _fit(
        GROUPS["median, standard, one-hot"],
        "{class: sklearn.linear_model.Ridge}",
        task="regression",
    )
    compiled = compile_pipeline(pipeline, frame.head(2))
    assert np.array_equal(compiled.predict(frame), pipeline.predict(frame))


def test_what_it_does_not_understand_keeps_scikit_learn() -> None:
    from sklearn.compose import ColumnTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import FunctionTransformer

    train = _table(100, 5)[["income", "ratio"]].fillna(0.0)
    target = (train["ratio"] > 0).astype(int)
    custom = Pipeline(
        [
            ("preprocess", ColumnTransformer([("logs", FunctionTransformer(np.log1p), ["ratio"])])),
            ("model", LogisticRegression()),
        ]
    ).fit(train, target)
    with pytest.raises(NotCompiled, match="FunctionTransformer is not one this module compiles"):
        compile_pipeline(custom, train.head(2))
    with pytest.raises(NotCompiled, match="two-step pipeline"):
        compile_pipeline(LogisticRegression().fit(train, target), train.head(2))


@pytest.mark.filterwarnings("ignore:Skipping features without any observed values")
def test_a_column_empty_in_training_keeps_scikit_learn() -> None:
    """scikit-learn drops a column it could not impute; the compiled form does not try."""
    pipeline = _fit(GROUPS["median, standard, one-hot"])
    train = _table(50, 6)
    train["income"] = np.nan
    pipeline.fit(train[list(pipeline.feature_names_in_)], (train["ratio"] > 0).astype(int))
    with pytest.raises(NotCompiled, match="no value when fitted"):
        compile_pipeline(pipeline, train.head(2))


def test_a_difference_on_a_probe_keeps_scikit_learn(monkeypatch: pytest.MonkeyPatch) -> None:
    """The check is what guards the answers: a kernel that is wrong for missing values only
    (the input example has none) is caught by the missing-values probe."""
    from tessera.serving import compiled as module

    def careless(step: Any, where: str, numeric: bool) -> Any:
        return lambda block: np.nan_to_num(block, nan=0.0)

    monkeypatch.setattr(module, "_imputer", careless)
    columns = ["income", "age", "ratio"]
    pipeline = _fit("  numbers: {type: numeric, impute: median, scale: none}", features=columns)
    frame = _table(5, 7)[list(pipeline.feature_names_in_)]
    example = frame.dropna().head(2)
    with pytest.raises(NotCompiled, match="on missing numbers, the transformed values differ"):
        compile_pipeline(pipeline, example)
