"""Evaluation artifacts match scikit-learn; importances are named; the model card is escaped."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from sklearn import datasets
from sklearn import metrics as skm
from sklearn.compose import ColumnTransformer
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import train_test_split
from sklearn.neighbors import KNeighborsClassifier
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler

from tessera.training.report import (
    CURVE_POINTS,
    evaluation_artifacts,
    feature_importances,
    model_card,
)

PNG = b"\x89PNG\r\n\x1a\n"


def fitted(frame: pd.DataFrame, y, estimator, *, categorical: tuple[str, ...] = ()):
    """A Tessera-like pipeline fitted on 70% of the rows, with the held-out 30%."""
    numeric = [c for c in frame.columns if c not in categorical]
    transformers = [("numbers", StandardScaler(), numeric)]
    if categorical:
        transformers.append(("categories", OneHotEncoder(), list(categorical)))
    preprocess = ColumnTransformer(transformers, verbose_feature_names_out=False)
    pipe = Pipeline([("preprocess", preprocess), ("model", estimator)])
    x_train, x_test, y_train, y_test = train_test_split(frame, y, test_size=0.3, random_state=0)
    pipe.fit(x_train, y_train)
    return SimpleNamespace(pipe=pipe, x=x_test, y=np.asarray(y_test), features=list(frame.columns))


@pytest.fixture(scope="module")
def cancer():
    data = datasets.load_breast_cancer(as_frame=True)
    labels = np.array(["malignant", "benign"])[data.target.to_numpy()]  # string labels
    return fitted(data.data, labels, LogisticRegression(max_iter=500))


@pytest.fixture(scope="module")
def iris():
    data = datasets.load_iris(as_frame=True)
    return fitted(data.data, data.target.to_numpy(), LogisticRegression(max_iter=500))


def is_png(path: Path) -> bool:
    return path.read_bytes()[:8] == PNG


def read(path: Path):
    return json.loads(path.read_text())


def test_binary_classification(cancer, tmp_path: Path) -> None:
    classes = list(cancer.pipe.classes_)
    assert classes == ["benign", "malignant"]
    pred, proba = cancer.pipe.predict(cancer.x), cancer.pipe.predict_proba(cancer.x)
    importances = feature_importances(cancer.pipe, cancer.features)
    files = evaluation_artifacts(
        "classification", cancer.y, pred, proba, classes, importances, tmp_path
    )
    names = [f.name for f in files]
    assert names == [
        "confusion_matrix.png",
        "confusion_matrix.json",
        "roc_curve.png",
        "roc_curve.json",
        "pr_curve.png",
        "pr_curve.json",
        "feature_importance.png",
        "feature_importance.csv",
    ]
    assert all(f.parent == tmp_path and f.exists() for f in files)
    for png in (f for f in files if f.suffix == ".png"):
        assert is_png(png) and png.stat().st_size < 200_000

    cm = read(tmp_path / "confusion_matrix.json")
    assert cm["labels"] == classes
    assert cm["matrix"] == skm.confusion_matrix(cancer.y, pred, labels=classes).tolist()
    assert np.sum(cm["matrix"]) == cm["n"] == len(cancer.y) and cm["uncounted"] == 0

    positive = cancer.y == "malignant"
    roc = read(tmp_path / "roc_curve.json")
    assert roc["kind"] == "binary" and roc["positive_class"] == "malignant"
    [curve] = roc["curves"]
    assert curve["class"] == "malignant"
    assert abs(curve["auc"] - skm.roc_auc_score(positive, proba[:, 1])) < 1e-9
    assert len(curve["fpr"]) == len(curve["tpr"]) == len(curve["thresholds"]) <= CURVE_POINTS
    assert (curve["fpr"][0], curve["tpr"][0]) == (0, 0)
    assert (curve["fpr"][-1], curve["tpr"][-1]) == (1, 1)
    assert curve["thresholds"][0] is None  # sklearn's +inf, as JSON null
    pr = read(tmp_path / "pr_curve.json")
    [curve] = pr["curves"]
    assert (
        abs(curve["average_precision"] - skm.average_precision_score(positive, proba[:, 1])) < 1e-9
    )
    assert (curve["recall"][-1], curve["precision"][-1]) == (0, 1)


def test_curves_are_thinned_to_their_limit(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 5000)
    p1 = np.clip(0.3 * y + rng.uniform(0, 0.7, y.size), 0, 1)
    proba = np.column_stack([1 - p1, p1])
    evaluation_artifacts("classification", y, (p1 > 0.5).astype(int), proba, [0, 1], None, tmp_path)
    assert len(skm.roc_curve(y, p1)[0]) > CURVE_POINTS  # there was something to thin
    [roc] = read(tmp_path / "roc_curve.json")["curves"]
    assert 0.9 * CURVE_POINTS <= len(roc["fpr"]) <= CURVE_POINTS
    assert roc["fpr"] == sorted(roc["fpr"]) and roc["tpr"] == sorted(roc["tpr"])
    assert (roc["fpr"][0], roc["tpr"][-1]) == (0, 1)
    assert abs(roc["auc"] - skm.roc_auc_score(y, p1)) < 1e-9  # on all points, not the kept ones
    [pr] = read(tmp_path / "pr_curve.json")["curves"]
    assert len(pr["recall"]) <= CURVE_POINTS


def test_multiclass_classification(iris, tmp_path: Path) -> None:
    classes = list(iris.pipe.classes_)
    pred, proba = iris.pipe.predict(iris.x), iris.pipe.predict_proba(iris.x)
    files = evaluation_artifacts("classification", iris.y, pred, proba, classes, None, tmp_path)
    assert {f.name for f in files} == {
        "confusion_matrix.png",
        "confusion_matrix.json",
        "roc_curve.png",
        "roc_curve.json",
        "pr_curve.png",
        "pr_curve.json",
    }
    assert all(is_png(f) for f in files if f.suffix == ".png")
    cm = read(tmp_path / "confusion_matrix.json")
    assert cm["labels"] == [0, 1, 2]
    assert cm["matrix"] == skm.confusion_matrix(iris.y, pred).tolist()
    assert np.sum(cm["matrix"]) == len(iris.y)

    roc = read(tmp_path / "roc_curve.json")
    assert roc["kind"] == "one-vs-rest" and roc["skipped"] == []
    assert [c["class"] for c in roc["curves"]] == classes
    for k, curve in enumerate(roc["curves"]):
        assert abs(curve["auc"] - skm.roc_auc_score(iris.y == k, proba[:, k])) < 1e-9
    ovr = skm.roc_auc_score(iris.y, proba, multi_class="ovr", labels=classes)
    assert abs(roc["macro_auc"] - ovr) < 1e-9
    pr = read(tmp_path / "pr_curve.json")
    for k, curve in enumerate(pr["curves"]):
        expected = skm.average_precision_score(iris.y == k, proba[:, k])
        assert abs(curve["average_precision"] - expected) < 1e-9


def test_a_class_missing_from_the_rows_has_no_curve(iris, tmp_path: Path) -> None:
    keep = iris.y != 2
    y, x = iris.y[keep], iris.x[keep]
    pred, proba = iris.pipe.predict(x), iris.pipe.predict_proba(x)
    evaluation_artifacts("classification", y, pred, proba, [0, 1, 2], None, tmp_path)
    roc = read(tmp_path / "roc_curve.json")
    assert roc["skipped"] == [2] and [c["class"] for c in roc["curves"]] == [0, 1]
    assert roc["macro_auc"] is None
    assert np.sum(read(tmp_path / "confusion_matrix.json")["matrix"]) == keep.sum()


def test_classification_without_probabilities(tmp_path: Path) -> None:
    y = np.array(["a", "b", "c", "a", "z"])  # "z": a label the model never saw
    pred = np.array(["a", "b", "b", "a", "a"])
    files = evaluation_artifacts("classification", y, pred, None, ["a", "b", "c"], {}, tmp_path)
    assert [f.name for f in files] == ["confusion_matrix.png", "confusion_matrix.json"]
    cm = read(files[1])
    assert cm["matrix"] == [[2, 0, 0], [0, 1, 0], [0, 1, 0]]
    assert cm["n"] == 4 and cm["uncounted"] == 1


def test_invalid_arguments(tmp_path: Path) -> None:
    y = np.array([0, 1, 1])
    with pytest.raises(ValueError, match="unknown task"):
        evaluation_artifacts("ranking", y, y, None, [0, 1], None, tmp_path)
    with pytest.raises(ValueError, match="y_pred has 2"):
        evaluation_artifacts("classification", y, y[:2], None, [0, 1], None, tmp_path)
    with pytest.raises(ValueError, match="proba has shape"):
        evaluation_artifacts("classification", y, y, np.ones((3, 3)), [0, 1], None, tmp_path)


def test_regression(tmp_path: Path) -> None:
    data = datasets.load_diabetes(as_frame=True)
    model = fitted(
        data.data, data.target.to_numpy(), RandomForestRegressor(n_estimators=20, random_state=0)
    )
    importances = feature_importances(model.pipe, model.features)
    assert importances is not None and list(importances) == model.features
    files = evaluation_artifacts(
        "regression",
        model.y,
        model.pipe.predict(model.x),
        None,
        [],
        importances,
        tmp_path / "new" / "dir",
    )
    assert [f.name for f in files] == [
        "residuals.png",
        "predicted_vs_actual.png",
        "feature_importance.png",
        "feature_importance.csv",
    ]
    assert all(is_png(f) for f in files if f.suffix == ".png")
    with files[-1].open(newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["feature"] for r in rows] == sorted(importances, key=lambda n: -importances[n])
    assert {r["feature"]: float(r["importance"]) for r in rows} == importances


def test_feature_importance_shows_the_top_features_by_absolute_value(tmp_path: Path) -> None:
    importances = {f"f{i}": (-1) ** i * float(i) for i in range(30)}
    files = evaluation_artifacts(
        "regression", np.arange(5.0), np.arange(5.0), None, [], importances, tmp_path
    )
    assert is_png(files[2])
    with files[3].open(newline="") as f:
        ranked = [r["feature"] for r in csv.DictReader(f)]
    assert ranked == [f"f{i}" for i in range(29, -1, -1)]


def test_importances_of_linear_models(cancer, iris) -> None:
    binary = feature_importances(cancer.pipe, cancer.features)
    assert binary is not None and list(binary) == cancer.features
    assert np.allclose(list(binary.values()), np.abs(cancer.pipe[-1].coef_).ravel())
    multi = feature_importances(iris.pipe, iris.features)
    assert multi is not None and list(multi) == iris.features
    assert np.allclose(list(multi.values()), np.abs(iris.pipe[-1].coef_).mean(axis=0))


def test_importances_are_named_after_the_transformed_columns() -> None:
    frame = pd.DataFrame(
        {
            "x": np.arange(60.0),
            "color": ["red", "green", "blue"] * 20,
        }
    )
    y = (frame.x % 2).astype(int).to_numpy()
    model = fitted(
        frame, y, RandomForestClassifier(n_estimators=5, random_state=0), categorical=("color",)
    )
    importances = feature_importances(model.pipe, ["x", "color"])
    assert importances is not None
    assert list(importances) == ["x", "color_blue", "color_green", "color_red"]
    assert np.allclose(list(importances.values()), model.pipe[-1].feature_importances_)


def test_importances_of_lightgbm(iris) -> None:
    lightgbm = pytest.importorskip("lightgbm")
    model = lightgbm.LGBMClassifier(n_estimators=5, min_child_samples=5, verbose=-1)
    pipe = Pipeline([("prep", iris.pipe[0]), ("lgbm", model)]).fit(iris.x, iris.y)
    importances = feature_importances(pipe, iris.features)
    assert importances is not None and list(importances) == iris.features
    assert list(importances.values()) == [float(v) for v in model.feature_importances_]


def test_importances_fall_back_or_give_none(iris) -> None:
    x, y = iris.x.to_numpy(), iris.y
    # A first step that cannot name its outputs: the given names are used.
    unnamed = Pipeline([("f", FunctionTransformer()), ("m", LogisticRegression(max_iter=500))])
    unnamed.fit(x, y)
    names = ["a", "b", "c", "d"]
    assert list(feature_importances(unnamed, names) or {}) == names
    # A bare estimator.
    bare = LogisticRegression(max_iter=500).fit(x, y)
    assert list(feature_importances(bare, names) or {}) == names
    # Names that do not match the estimator's columns.
    assert feature_importances(unnamed, ["a", "b"]) is None
    # No importances, or not fitted.
    knn = Pipeline([("f", FunctionTransformer()), ("m", KNeighborsClassifier())]).fit(x, y)
    assert feature_importances(knn, names) is None
    unfitted = Pipeline([("f", FunctionTransformer()), ("m", RandomForestClassifier())])
    assert feature_importances(unfitted, names) is None
    assert feature_importances(object(), names) is None


def card_info(**changes):
    info = {
        "name": "cancer",
        "version": "3",
        "description": "Flags malignant tumours.",
        "task": "classification",
        "target": "target",
        "estimator": "sklearn.linear_model.LogisticRegression",
        "params": {"C": 0.5, "max_iter": 500, "class_weight": None},
        "features": ["mean radius", "mean texture"],
        "classes": ["benign", "malignant"],
        "metrics": [
            {
                "metric": "roc_auc",
                "value": 0.98765,
                "ci_low": 0.97,
                "ci_high": 0.995,
                "split": "test",
                "rows": 171,
            },
            {
                "metric": "accuracy",
                "value": 0.95,
                "ci_low": float("nan"),
                "ci_high": None,
                "split": "test",
                "rows": 171,
            },
        ],
        "data": [
            {"role": "train", "stage": "split.train", "version": "a1b2c3d4", "rows": 398},
            {"role": "test", "stage": "split.test", "version": "e5f6a7b8", "rows": 171},
        ],
        "lineage": {
            "pipeline_run": "run-42",
            "git_commit": "0123abcd",
            "code_hash": "feedbeef",
            "mlflow_run_id": "mlf-7",
        },
        "gate": {
            "passed": False,
            "checks": [
                {"check": "roc_auc >= 0.99", "value": 0.98765, "threshold": 0.99, "passed": False}
            ],
        },
        "created": "2025-01-02T03:04:05+00:00",
        "sha256": "9f" * 32,
    }
    info.update(changes)
    return info


def section(markdown: str, heading: str) -> str:
    return markdown.split(f"## {heading}\n", 1)[1].split("\n## ", 1)[0]


def test_model_card_markdown() -> None:
    md, _ = model_card(card_info())
    assert md.startswith("# Model card: cancer version 3\n")
    headings = [line[3:] for line in md.splitlines() if line.startswith("## ")]
    assert headings == [
        "Overview",
        "Intended use",
        "Training data",
        "Evaluation",
        "Quality gate",
        "Lineage",
        "Limitations",
        "Parameters",
    ]
    assert "Flags malignant tumours." in section(md, "Overview")
    assert "| train | split.train | a1b2c3d4 | 398 |" in md
    assert "| test | split.test | e5f6a7b8 | 171 |" in md
    assert "| roc_auc | 0.9877 [0.9700, 0.9950] | test | 171 |" in md
    assert "| accuracy | 0.9500 | test | 171 |" in md  # no interval
    assert "**Failed.**" in section(md, "Quality gate")
    assert "| roc_auc >= 0.99 | 0.9877 | 0.9900 | fail |" in md
    for value in ("run-42", "0123abcd", "feedbeef", "mlf-7", "9f" * 32):
        assert value in md
    assert "| C | 0.5 |" in md and "| class_weight | None |" in md
    limits = section(md, "Limitations")
    assert "398 rows" in limits and "mean radius, mean texture" in limits
    assert "benign, malignant" in limits and "held-out test split" in limits
    assert "fairness" in limits and "quality gate" in limits


def test_model_card_uses_given_text_and_skips_a_missing_gate() -> None:
    md, page = model_card(
        card_info(gate=None, intended_use="Triage only.", limitations=["Adults only."])
    )
    assert "## Quality gate" not in md and "Quality gate" not in page
    assert section(md, "Intended use").strip() == "Triage only."
    assert section(md, "Limitations").strip() == "- Adults only."


def test_model_card_of_almost_nothing() -> None:
    md, page = model_card({})
    assert md.startswith("# Model card: model\n")
    assert "No metrics were recorded." in md and "No data versions were recorded." in md
    assert "fairness" in md and page.startswith("<!DOCTYPE html>")


def test_model_card_html_is_standalone_and_escaped() -> None:
    evil = "<script>alert('x')</script>"
    info = card_info(description=evil, name="m<b>", features=["a&b", "<i>"])
    info["lineage"]["git_commit"] = '"><img src=x onerror=alert(1)>'
    md, page = model_card(info)
    assert evil in md  # Markdown keeps the text as given
    assert "<script" not in page and "<img" not in page and "<b>" not in page
    assert html_escaped(evil) in page and "a&amp;b" in page
    assert "<title>Model card: m&lt;b&gt; version 3</title>" in page
    assert "http" not in page.replace("http-equiv", "")  # no external resources
    assert "<style>" in page and page.rstrip().endswith("</html>")
    for text in ("0.9877 [0.9700, 0.9950]", "a1b2c3d4", "e5f6a7b8", "mlf-7"):
        assert text in page


def html_escaped(text: str) -> str:
    import html

    return html.escape(text)


def test_importing_the_module_is_light() -> None:
    code = (
        "import sys, tessera.training.report;"
        "heavy = {'matplotlib', 'numpy', 'sklearn'} & {m.split('.')[0] for m in sys.modules};"
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
