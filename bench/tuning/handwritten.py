"""The usual hand-written Optuna + MLflow tuning loop, in one script: the baseline of
``bench/tuning/run.py``.

TPE (seeded), every trial a nested MLflow run with its parameters and cross-validated ROC AUC,
the best parameters refit on the whole table and logged with ``mlflow.sklearn.log_model`` (with
pinned requirements, as Tessera logs them; ``--infer-requirements`` for MLflow's default). Optuna
and MLflow keep their state in SQLite files in a fresh temporary directory, as a new Tessera
project does. The model is the same scikit-learn pipeline a Tessera spec with a numeric
preprocessing group builds (median imputation, then the estimator), scored on the
same stratified folds.

Run with the project's interpreter (it has MLflow, Optuna and scikit-learn)::

    .venv/bin/python bench/tuning/handwritten.py --data bench/work/tuning/table.csv --trials 40

It prints one JSON line: the best value and parameters and the time spent in each part.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path
from typing import Any

STARTED = time.perf_counter()

import mlflow  # noqa: E402  (the imports are part of what is timed)
import mlflow.sklearn  # noqa: E402
import optuna  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.compose import ColumnTransformer  # noqa: E402
from sklearn.ensemble import RandomForestClassifier  # noqa: E402
from sklearn.impute import SimpleImputer  # noqa: E402
from sklearn.model_selection import StratifiedKFold, cross_val_score  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402

IMPORTED = time.perf_counter()


def make_model(features: list[str], params: dict[str, Any], seed: int) -> Pipeline:
    numeric = Pipeline([("impute", SimpleImputer(strategy="median"))])
    preprocess = ColumnTransformer(
        [("num", numeric, features)], remainder="passthrough", verbose_feature_names_out=False
    )
    model = RandomForestClassifier(n_estimators=15, random_state=seed, **params)
    return Pipeline([("preprocess", preprocess), ("model", model)])


def requirements() -> list[str]:
    """Pinned from the installed versions, as Tessera does (no inference subprocess)."""
    from importlib.metadata import version

    return [f"{d}=={version(d)}" for d in ("mlflow", "scikit-learn", "skops", "numpy", "pandas")]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", required=True, help="CSV with feature columns and `target`")
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--cv", type=int, default=3)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--infer-requirements",
        action="store_true",
        help="let log_model infer pip requirements (MLflow's default: a subprocess that imports "
        "the model) instead of pinning the installed versions",
    )
    args = parser.parse_args()

    table = pd.read_csv(args.data)
    X, y = table.drop(columns="target"), table["target"].to_numpy()
    features = list(X.columns)
    folds = StratifiedKFold(args.cv, shuffle=True, random_state=args.seed)
    with tempfile.TemporaryDirectory(prefix="bench-handwritten-") as tmp:
        mlflow.set_tracking_uri(f"sqlite:///{Path(tmp) / 'mlflow.db'}")
        mlflow.set_experiment("bench")
        study = optuna.create_study(
            study_name="bench",
            storage=f"sqlite:///{Path(tmp) / 'optuna.db'}",
            direction="maximize",
            sampler=optuna.samplers.TPESampler(seed=args.seed),
        )
        ready = time.perf_counter()
        with mlflow.start_run(run_name="tune"):

            def objective(trial: optuna.Trial) -> float:
                params = {
                    "max_depth": trial.suggest_int("max_depth", 2, 12),
                    "min_samples_leaf": trial.suggest_int("min_samples_leaf", 1, 20),
                }
                with mlflow.start_run(run_name=f"trial {trial.number}", nested=True):
                    scores = cross_val_score(
                        make_model(features, params, args.seed), X, y, cv=folds, scoring="roc_auc"
                    )
                    mlflow.log_params(params)
                    mlflow.log_metric("cv_roc_auc", float(scores.mean()))
                return float(scores.mean())

            study.optimize(objective, n_trials=args.trials)
            tuned = time.perf_counter()
            best = make_model(features, study.best_params, args.seed).fit(X, y)
            mlflow.log_params({f"best_{k}": v for k, v in study.best_params.items()})
            mlflow.log_metric("best_cv_roc_auc", study.best_value)
            # MLflow 3 saves scikit-learn models with skops and wants the types it must trust.
            trusted = ["numpy.dtype", "sklearn.tree._tree.Tree"]
            pinned = None if args.infer_requirements else requirements()
            mlflow.sklearn.log_model(
                best, name="model", skops_trusted_types=trusted, pip_requirements=pinned
            )
        done = time.perf_counter()
    print(
        json.dumps(
            {
                "best_value": study.best_value,
                "best_params": study.best_params,
                "trials": len(study.trials),
                "imports_s": IMPORTED - STARTED,
                "setup_s": ready - IMPORTED,
                "trials_s": tuned - ready,
                "refit_and_log_s": done - tuned,
            }
        )
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
