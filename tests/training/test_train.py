"""Fitting: preprocessing learnt from the training rows only, estimators, determinism."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from tessera.training import load_model, model_info
from tessera.training.build import fit, resolve_features
from tessera.training.stages import Train, train_model

BASE = """
target: {target}
task: {task}
features: {{exclude: [id]}}
estimator:
  class: {cls}
  params: {params}
preprocessing:
  numbers: {{type: numeric, impute: median, scale: standard}}
  colors: {{type: categorical, impute: constant, encode: onehot}}
seed: 3
"""

ESTIMATORS = [
    ("classification", "label", "sklearn.ensemble.RandomForestClassifier", "{n_estimators: 10}"),
    ("classification", "label", "sklearn.linear_model.LogisticRegression", "{max_iter: 500}"),
    ("classification", "label", "lightgbm.LGBMClassifier", "{n_estimators: 20, verbose: -1}"),
    ("classification", "kind", "lightgbm.LGBMClassifier", "{n_estimators: 20, verbose: -1}"),
    ("classification", "kind", "sklearn.ensemble.HistGradientBoostingClassifier", "{}"),
    ("regression", "amount", "sklearn.ensemble.RandomForestRegressor", "{n_estimators: 10}"),
    ("regression", "amount", "lightgbm.LGBMRegressor", "{n_estimators: 20, verbose: -1}"),
    ("regression", "amount", "sklearn.linear_model.Ridge", "{alpha: 0.5}"),
]


def spec_text(task: str, target: str, cls: str, params: str, **extra: str) -> str:
    text = BASE.format(task=task, target=target, cls=cls, params=params)
    exclude = ["id", "label", "kind", "amount"]
    exclude.remove(target)
    return text.replace("exclude: [id]", f"exclude: [{', '.join(exclude)}]")


@pytest.mark.parametrize(("task", "target", "cls", "params"), ESTIMATORS)
def test_estimators_train_save_and_load(
    task: str, target: str, cls: str, params: str, spec_of, mixed: pd.DataFrame
) -> None:
    spec = spec_of(spec_text(task, target, cls, params))
    train, test = mixed.iloc[:200], mixed.iloc[200:]
    fitted = fit(spec, train)
    assert fitted.features == ["x", "size", "color"]
    from tessera.training.modelio import model_table

    table = model_table(
        fitted.pipeline,
        task=task,
        target=target,
        estimator=cls,
        features=fitted.features,
        classes=fitted.classes,
        params=fitted.params,
        metrics=spec.metric_names,
        seed=spec.seed,
        train_rows=len(train),
    )
    loaded = load_model(table)
    expected = fitted.pipeline.predict(test[fitted.features])
    np.testing.assert_array_equal(loaded.predict(test[fitted.features]), expected)
    info = model_info(table)
    assert info.task == task and info.target == target and info.estimator == cls
    assert info.features == ["x", "size", "color"] and info.train_rows == 200
    assert info.params["random_state"] == 3  # the spec's seed
    if task == "classification":
        assert info.classes == sorted(mixed[target].unique().tolist())
        proba = loaded.predict_proba(test[fitted.features])
        assert proba.shape == (100, len(info.classes))
    else:
        assert info.classes == []


def test_preprocessing_is_learnt_from_the_training_rows_only(spec_of, mixed) -> None:
    spec = spec_of(
        spec_text("classification", "label", "sklearn.linear_model.LogisticRegression", "{}")
    )
    train = mixed.iloc[:150]
    fitted = fit(spec, train)
    numbers = fitted.pipeline.named_steps["preprocess"].named_transformers_["numbers"]
    imputer, scaler = numbers.named_steps["impute"], numbers.named_steps["scale"]
    assert imputer.statistics_.tolist() == [train["x"].median(), train["size"].median()]
    assert imputer.statistics_[0] != mixed["x"].median()
    filled = train["x"].fillna(train["x"].median())
    np.testing.assert_allclose(scaler.mean_, [filled.mean(), train["size"].mean()])
    assert not np.isclose(scaler.mean_[1], mixed["size"].mean())
    encoder = fitted.pipeline.named_steps["preprocess"].named_transformers_["colors"]
    assert encoder.named_steps["encode"].categories_[0].tolist() == [
        "blue",
        "green",
        "missing",
        "red",
    ]


def test_unseen_categories_and_missing_values_at_prediction(spec_of, mixed) -> None:
    spec = spec_of(
        spec_text("classification", "label", "sklearn.linear_model.LogisticRegression", "{}")
    )
    fitted = fit(spec, mixed)
    odd = pd.DataFrame({"x": [np.nan, 1.0], "size": [10.0, np.nan], "color": ["purple", None]})
    assert set(fitted.pipeline.predict(odd)) <= {"no", "yes"}
    # An unseen colour is all zeros in the one-hot columns; a missing one is "missing".
    encoded = fitted.pipeline.named_steps["preprocess"].transform(odd)
    assert encoded[0, 2:].tolist() == [0.0, 0.0, 0.0, 0.0]
    assert encoded[1, 2:].tolist() == [0.0, 0.0, 1.0, 0.0]


def test_ordinal_encoding_and_passthrough(spec_of, mixed) -> None:
    spec = spec_of(
        """
        task: regression
        target: amount
        features: [x, size, color]
        estimator: {class: lightgbm.LGBMRegressor, params: {n_estimators: 5, verbose: -1}}
        preprocessing:
          colors: {type: categorical, columns: [color], encode: ordinal}
        """
    )
    fitted = fit(spec, mixed)
    pre = fitted.pipeline.named_steps["preprocess"]
    out = pre.transform(mixed[["x", "size", "color"]])
    assert out.shape == (300, 3)  # x and size passed through unchanged, NaN included
    assert np.isnan(out[:, 1]).sum() == mixed["x"].isna().sum()


def test_feature_rules(spec_of, mixed) -> None:
    spec = spec_of(
        """
        task: regression
        target: amount
        features: {include: ['*'], exclude: [id, label, kind, 's*']}
        estimator: {class: sklearn.linear_model.Ridge}
        preprocessing:
          rest: {type: numeric}
          cats: {type: categorical}
        """
    )
    assert resolve_features(spec, list(mixed.columns)) == ["x", "color"]
    with pytest.raises(ValueError, match="target column 'amount' is not in the table"):
        resolve_features(spec, ["x"])


def test_training_errors(spec_of, mixed) -> None:
    no_groups = spec_of(
        """
        task: classification
        target: label
        features: [x, color]
        estimator: {class: sklearn.linear_model.LogisticRegression}
        """
    )
    with pytest.raises(ValueError, match=r"feature column\(s\) color are not numeric and in no"):
        fit(no_groups, mixed)
    with pytest.raises(
        ValueError, match=r"feature column 'color' is not in the table \(did you mean 'colour'"
    ):
        fit(no_groups, mixed.rename(columns={"color": "colour"}))
    with pytest.raises(ValueError, match="target column 'label' has 1 missing value"):
        fit(no_groups, mixed.assign(label=[None, *mixed["label"][1:]]))
    with pytest.raises(ValueError, match="fewer than two classes"):
        fit(no_groups, mixed.assign(label="yes"))


def test_the_same_spec_and_data_give_the_same_bytes(tmp_path, monkeypatch, mixed) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "m.yaml").write_text(
        spec_text(
            "classification", "kind", "lightgbm.LGBMClassifier", "{n_estimators: 10, verbose: -1}"
        )
    )
    first = train_model(mixed, Train(spec="m.yaml"))
    second = train_model(mixed, Train(spec="m.yaml"))
    assert isinstance(first, pa.Table) and first.num_rows == 1
    assert first.equals(second)
    other = train_model(mixed, Train(spec="m.yaml", params={"n_estimators": 11}))
    assert other["sha256"] != first["sha256"]
    assert model_info(other).params["n_estimators"] == 11
