"""Model specs: defaults, and every mistake reported with file, line, key and a hint."""

from __future__ import annotations

import pytest

from tessera.config.errors import ConfigError
from tessera.training.spec import (
    CategoricalChoice,
    CategoricalGroup,
    FeatureRules,
    FloatRange,
    IntRange,
    NumericGroup,
    estimator_params,
    load_spec,
)

RF = """
task: classification
target: churned
estimator:
  class: sklearn.ensemble.RandomForestClassifier
"""


def test_a_minimal_spec_gets_defaults(spec_of) -> None:
    spec = spec_of(RF)
    assert spec.task == "classification" and spec.target == "churned"
    assert spec.features == FeatureRules(include=["*"], exclude=[])
    assert spec.metric_names == ["accuracy", "f1", "roc_auc"]
    assert spec.preprocessing == {} and spec.search_space == {} and spec.seed == 0
    # The seed becomes random_state when the estimator takes one.
    assert estimator_params(spec) == {"random_state": 0}


def test_a_full_spec(spec_of) -> None:
    spec = spec_of(
        """
        task: classification
        target: churned
        features: [age, plan, spend]
        estimator:
          class: lightgbm.LGBMClassifier
          params: {n_estimators: 50, learning_rate: 0.1, random_state: 3}
        preprocessing:
          amounts: {type: numeric, columns: [age, spend], impute: mean, scale: minmax}
          plans: {type: categorical, columns: [plan], impute: constant, encode: ordinal}
        metrics: [accuracy, log_loss]
        seed: 11
        search_space:
          num_leaves: {type: int, low: 8, high: 64, log: true}
          learning_rate: {type: float, low: 0.01, high: 0.3, log: true}
          subsample: {type: float, low: 0.5, high: 1.0, step: 0.1}
          boosting_type: {type: categorical, choices: [gbdt, dart]}
        """
    )
    assert spec.features == ["age", "plan", "spend"]
    assert spec.preprocessing == {
        "amounts": NumericGroup(
            type="numeric", columns=["age", "spend"], impute="mean", scale="minmax"
        ),
        "plans": CategoricalGroup(
            type="categorical", columns=["plan"], impute="constant", encode="ordinal"
        ),
    }
    assert spec.search_space["num_leaves"] == IntRange(type="int", low=8, high=64, log=True)
    assert isinstance(spec.search_space["subsample"], FloatRange)
    assert spec.search_space["boosting_type"] == CategoricalChoice(
        type="categorical", choices=["gbdt", "dart"]
    )
    # Params that the spec sets win over the seed.
    assert estimator_params(spec)["random_state"] == 3
    assert estimator_params(spec, {"n_estimators": 5})["n_estimators"] == 5


def test_load_spec_reads_a_file(tmp_path) -> None:
    path = tmp_path / "m.yaml"
    path.write_text(RF)
    assert load_spec(path, "models/m.yaml").target == "churned"
    with pytest.raises(ConfigError, match=r"models/nope\.yaml: file not found"):
        load_spec(tmp_path / "nope.yaml", "models/nope.yaml")


def test_unknown_keys_get_a_suggestion(spec_errors) -> None:
    assert spec_errors(
        """
        task: classification
        target: churned
        estimater: {class: sklearn.linear_model.LogisticRegression}
        features: {include: ['*'], exlude: [id]}
        """
    ) == [
        "models/m.yaml:1 key 'estimator': missing required key; expected EstimatorSpec",
        "models/m.yaml:4 key 'estimater': unknown key (did you mean 'estimator'?)",
        "models/m.yaml:5 key 'features.exlude': unknown key (did you mean 'exclude'?)",
    ]


def test_unknown_estimator_module_and_class(spec_errors) -> None:
    assert spec_errors(RF.replace("sklearn.ensemble.", "sklearn.ensembl.")) == [
        "models/m.yaml:5 key 'estimator.class': cannot import module 'sklearn.ensembl', got "
        "sklearn.ensembl.RandomForestClassifier (did you mean 'sklearn.ensemble'?)"
    ]
    assert spec_errors(RF.replace("RandomForestClassifier", "RandomForestClasifier")) == [
        "models/m.yaml:5 key 'estimator.class': module 'sklearn.ensemble' has no class "
        "'RandomForestClasifier', got sklearn.ensemble.RandomForestClasifier "
        "(did you mean 'RandomForestClassifier'?)"
    ]
    [problem] = spec_errors(RF.replace("sklearn.ensemble", "nosuchpackage"))
    assert "cannot import module 'nosuchpackage'" in problem
    [problem] = spec_errors(RF.replace("sklearn.ensemble.RandomForestClassifier", "RandomForest"))
    assert "key 'estimator.class': invalid value; expected string should match pattern" in problem


def test_the_estimator_must_be_an_estimator_of_the_right_kind(spec_errors) -> None:
    assert spec_errors(
        RF.replace("sklearn.ensemble.RandomForestClassifier", "json.JSONDecoder")
    ) == [
        "models/m.yaml:5 key 'estimator.class': not a scikit-learn-compatible estimator; "
        "expected a class with fit, predict and get_params, got json.JSONDecoder"
    ]
    [problem] = spec_errors(RF.replace("sklearn.ensemble.RandomForestClassifier", "json.dumps"))
    assert problem.startswith(
        "models/m.yaml:5 key 'estimator.class': not a class; expected an estimator class, got "
        "<function dumps"
    )
    assert spec_errors(RF.replace("task: classification", "task: regression")) == [
        "models/m.yaml:5 key 'estimator.class': not a regressor, as task 'regression' needs, got "
        "sklearn.ensemble.RandomForestClassifier "
        "(did you mean 'sklearn.ensemble.RandomForestRegressor'?)"
    ]
    assert spec_errors(
        """
        task: classification
        target: y
        estimator: {class: lightgbm.LGBMRegressor}
        """
    ) == [
        "models/m.yaml:4 key 'estimator.class': not a classifier, as task 'classification' "
        "needs, got lightgbm.LGBMRegressor (did you mean 'lightgbm.LGBMClassifier'?)"
    ]


def test_estimator_params_are_checked(spec_errors) -> None:
    assert spec_errors(RF + "  params: {n_estimator: 10, criterion: ginni}\n") == [
        "models/m.yaml:6 key 'estimator.params.n_estimator': unknown parameter of "
        "RandomForestClassifier (did you mean 'n_estimators'?)"
    ]
    [problem] = spec_errors(RF + "  params: {criterion: ginni}\n")
    assert problem.startswith(
        "models/m.yaml:6 key 'estimator.params.criterion': invalid value; expected a str among {"
    )
    assert problem.endswith("}, got 'ginni'") and "'log_loss'" in problem
    # LightGBM takes **kwargs (aliases): names are not checked, values at training time.
    assert spec_errors(
        """
        task: classification
        target: y
        estimator: {class: lightgbm.LGBMClassifier, params: {bagging_fraction: 0.8}}
        metrics: [rmse]
        """
    ) == [
        "models/m.yaml:5 key 'metrics.0': metric 'rmse' is for regression, not classification; "
        "expected one of accuracy, balanced_accuracy, precision, recall, f1, roc_auc, log_loss, "
        "got 'rmse'"
    ]


def test_metrics_must_belong_to_the_task(spec_errors) -> None:
    assert spec_errors(
        """
        task: regression
        target: y
        estimator: {class: sklearn.linear_model.Ridge}
        metrics: [rmse, acuracy, r2, accuracy]
        """
    ) == [
        "models/m.yaml:5 key 'metrics.1': unknown metric for a regression model; expected one "
        "of rmse, mse, mae, r2, got 'acuracy'",
        "models/m.yaml:5 key 'metrics.3': metric 'accuracy' is for classification, not "
        "regression; expected one of rmse, mse, mae, r2, got 'accuracy'",
    ]


def test_probability_metrics_need_predict_proba(spec_errors) -> None:
    assert spec_errors(
        """
        task: classification
        target: y
        estimator: {class: sklearn.svm.SVC}
        """
    ) == [
        "models/m.yaml:4 key 'estimator.class': the default metrics include 'roc_auc', which "
        "needs predicted probabilities, and SVC (with these parameters) has no predict_proba "
        "(list `metrics` without it, or use a probabilistic estimator)"
    ]
    assert spec_errors(
        """
        task: classification
        target: y
        estimator: {class: sklearn.svm.SVC}
        metrics: [accuracy, roc_auc]
        """
    ) == [
        "models/m.yaml:5 key 'metrics.1': metric 'roc_auc' needs predicted probabilities, and "
        "SVC (with these parameters) has no predict_proba (list `metrics` without it, or use a "
        "probabilistic estimator)"
    ]


def test_bad_preprocessing(spec_errors) -> None:
    assert spec_errors(
        RF
        + """
preprocessing:
  nums: {type: numeric, columns: [age, spend], impute: mode}
  cats: {type: categorical, columns: [plan], encode: hash}
  more: {type: numeric, columns: [spend, churned]}
  text: {type: words}
  bad-name: {type: numeric}
  c2: {type: categorical}
  c3: {type: categorical}
"""
    ) == [
        "models/m.yaml:8 key 'preprocessing.nums.impute': invalid value; expected 'mean', "
        "'median', 'constant' or 'none', got 'mode' (str)",
        "models/m.yaml:9 key 'preprocessing.cats.encode': invalid value; expected 'onehot' or "
        "'ordinal', got 'hash' (str)",
        "models/m.yaml:11 key 'preprocessing.text': invalid value; expected a group with "
        "`type: numeric` or `type: categorical`, got {'type': 'words'} (dict)",
        "models/m.yaml:12 key 'preprocessing.bad-name': invalid key; expected string should "
        "match pattern '^[A-Za-z][A-Za-z0-9_]*$', got 'bad-name' (str)",
    ]
    assert spec_errors(
        """
        task: classification
        target: churned
        features: [age, spend, plan]
        estimator: {class: sklearn.linear_model.LogisticRegression}
        preprocessing:
          nums: {type: numeric, columns: [age, spend]}
          more: {type: numeric, columns: [spend, churned, region]}
          c2: {type: categorical}
          c3: {type: categorical}
        """
    ) == [
        "models/m.yaml:8 key 'preprocessing.more.columns.0': column 'spend' is already in group "
        "'nums'",
        "models/m.yaml:8 key 'preprocessing.more.columns.1': the target cannot be preprocessed "
        "as a feature",
        "models/m.yaml:8 key 'preprocessing.more.columns.2': column 'region' is not a feature "
        "(add it to `features`)",
        "models/m.yaml:10 key 'preprocessing.c3': two categorical groups without `columns` "
        "('c2' and 'c3') (list the columns of one of them)",
    ]


def test_features(spec_errors) -> None:
    assert spec_errors(RF + "features: [age, churned, age]\n") == [
        "models/m.yaml:6 key 'features.1': the target cannot be a feature, got 'churned'",
        "models/m.yaml:6 key 'features.2': feature listed twice, got 'age'",
    ]
    [problem] = spec_errors(RF + "features: age\n")
    assert problem.startswith("models/m.yaml:6 key 'features': invalid value; expected")


def test_search_space_errors(spec_errors) -> None:
    assert spec_errors(
        RF
        + """
search_space:
  n_estimators: {type: int, low: 100, high: 10}
  max_depth: {type: int, low: 0, high: 8, log: true}
  max_samples: {type: float, low: 0.1, high: 1.0, step: 0.1, log: true}
  min_samples_leaf: {type: range, low: 1, high: 5}
  criterion: {type: categorical, choices: []}
  max_features: {type: categorical, choices: [sqrt, sqrt]}
  max_dept: {type: int, low: 1, high: 4}
"""
    ) == [
        "models/m.yaml:8 key 'search_space.n_estimators.high': invalid value; expected a value "
        "greater than `low` (100), got 10 (int)",
        "models/m.yaml:9 key 'search_space.max_depth.log': invalid value; expected false, as "
        "`log: true` needs `low` >= 1 (`low` is 0), got True (bool)",
        "models/m.yaml:10 key 'search_space.max_samples.log': invalid value; expected false "
        "when `step` is set (a log scale has no fixed step), got True (bool)",
        "models/m.yaml:11 key 'search_space.min_samples_leaf': invalid value; expected a range "
        "`{type: int|float, low, high}` or `{type: categorical, choices: [...]}`, got "
        "{'type': 'range', 'low': 1, 'high': 5} (dict)",
        "models/m.yaml:12 key 'search_space.criterion.choices': invalid value; expected list "
        "should have at least 1 item after validation, not 0, got [] (list)",
        "models/m.yaml:13 key 'search_space.max_features.choices': invalid value; expected "
        "distinct values ('sqrt' is listed twice), got ['sqrt', 'sqrt'] (list)",
    ]
    # Names are checked once the shapes are right.
    assert spec_errors(RF + "search_space:\n  max_dept: {type: int, low: 1, high: 4}\n") == [
        "models/m.yaml:7 key 'search_space.max_dept': unknown parameter of "
        "RandomForestClassifier (did you mean 'max_depth'?)"
    ]


def test_yaml_errors_are_located(spec_errors) -> None:
    [problem] = spec_errors("task: [classification\n")
    assert problem.startswith("models/m.yaml:2: invalid YAML")
    [problem] = spec_errors("- a list\n")
    assert problem == (
        "models/m.yaml:1: invalid value; expected a valid dictionary or instance of ModelSpec, "
        "got ['a list'] (list)"
    )
