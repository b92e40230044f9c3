"""Hold-out predictions and cross-validation of a pipeline."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from sklearn.base import clone
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedKFold

from tessera.training import build, evaluation

from support import Project, statuses


def test_cross_validation_matches_scikit_learn_folds(spec_of, cancer: pd.DataFrame) -> None:
    spec = spec_of(
        """
        task: classification
        target: target
        estimator: {class: sklearn.linear_model.LogisticRegression, params: {max_iter: 500}}
        preprocessing: {all: {type: numeric, scale: standard}}
        metrics: [roc_auc, accuracy]
        seed: 3
        """
    )
    fitted = build.fit(spec, cancer)
    seen: list[tuple[int, float]] = []
    scores = evaluation.cross_validate(
        fitted.pipeline,
        "classification",
        cancer,
        fitted.features,
        "target",
        ["roc_auc", "accuracy"],
        folds=4,
        seed=3,
        on_fold=lambda i, mean: seen.append((i, mean)),
    )
    X, y = cancer[fitted.features], cancer["target"].to_numpy()
    expected = []
    for train, test in StratifiedKFold(4, shuffle=True, random_state=3).split(X, y):
        model = clone(fitted.pipeline).fit(X.iloc[train], y[train])
        expected.append(roc_auc_score(y[test], model.predict_proba(X.iloc[test])[:, 1]))
    assert scores["roc_auc"] == pytest.approx(expected, abs=1e-12)
    assert [i for i, _ in seen] == [0, 1, 2, 3]
    assert seen[-1][1] == pytest.approx(np.mean(expected))
    (auc, _) = evaluation.fold_summary(scores)
    assert auc.value == pytest.approx(np.mean(expected))
    assert auc.ci_low < auc.value < auc.ci_high


def test_cross_validation_needs_enough_rows_per_class(spec_of, cancer: pd.DataFrame) -> None:
    spec = spec_of(
        """
        task: classification
        target: target
        estimator: {class: sklearn.tree.DecisionTreeClassifier}
        """
    )
    tiny = pd.concat([cancer[cancer.target == 0].head(2), cancer[cancer.target == 1].head(30)])
    fitted = build.fit(spec, tiny)
    with pytest.raises(ValueError, match="needs at least 5 rows of every class"):
        evaluation.cross_validate(
            fitted.pipeline, "classification", tiny, fitted.features, "target", ["f1"], folds=5
        )


def test_evaluate_can_cross_validate(ml_project: Project, tessera) -> None:
    ml_project.write(
        "pipeline.yaml",
        ml_project.read("pipeline.yaml")
        + "  cv_scores: {uses: evaluate, inputs: [model, split.train], "
        "with: {cv: 3, metrics: [roc_auc, accuracy], track: false}}\n",
    )
    result = tessera("run", "--json", cwd=ml_project.root)
    assert result.code == 0, result.err
    assert statuses(result)["cv_scores"] == "done"
    from tessera.data.store import ArtifactStore

    out = next(s for s in result.json()["stages"] if s["stage"] == "cv_scores")["outputs"]["out"]
    table = ArtifactStore(ml_project.root / ".tessera" / "cache").get_table(out).to_pandas()
    assert table["metric"].tolist() == ["roc_auc", "accuracy"]
    assert (table["split"] == "cv").all()
    assert ((table["ci_low"] < table["value"]) & (table["value"] < table["ci_high"])).all()
    assert table.set_index("metric")["value"]["roc_auc"] > 0.9
