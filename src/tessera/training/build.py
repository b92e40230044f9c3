"""From a spec and a training table to a fitted scikit-learn ``Pipeline``.

The pipeline is ``[("preprocess", ColumnTransformer), ("model", estimator)]``: imputers, scalers
and encoders are fitted by ``Pipeline.fit`` on the training rows only, and travel inside the
saved model, so evaluation and serving apply exactly what was learnt from the training split.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import TYPE_CHECKING, Any

from tessera.config.errors import did_you_mean
from tessera.training.spec import (
    CategoricalGroup,
    ModelSpec,
    NumericGroup,
    estimator_class,
    estimator_params,
)

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Fitted:
    """A fitted pipeline and what it was fitted with."""

    pipeline: Any
    features: list[str]
    classes: list[Any]
    params: dict[str, Any]


def resolve_features(spec: ModelSpec, columns: list[str]) -> list[str]:
    """The feature columns of a table with ``columns``, in the spec's (or the table's) order.

    Raises:
        ValueError: a listed feature or the target is missing, or the rules match nothing.
    """
    if spec.target not in columns:
        raise ValueError(_missing("target column", spec.target, columns))
    if isinstance(spec.features, list):
        for col in spec.features:
            if col not in columns:
                raise ValueError(_missing("feature column", col, columns))
        return list(spec.features)
    rules = spec.features
    chosen = [
        c
        for c in columns
        if c != spec.target
        and any(fnmatchcase(c, p) for p in rules.include)
        and not any(fnmatchcase(c, p) for p in rules.exclude)
    ]
    if not chosen:
        raise ValueError(
            f"the feature rules (include {rules.include}, exclude {rules.exclude}) match no "
            f"column of the table (columns: {', '.join(columns)})"
        )
    return chosen


def _missing(what: str, name: str, columns: list[str]) -> str:
    hint = did_you_mean(name, columns)
    return f"{what} '{name}' is not in the table" + (f" ({hint})" if hint else "")


def assign_columns(
    spec: ModelSpec, features: list[str], frame: pd.DataFrame
) -> list[tuple[str, NumericGroup | CategoricalGroup, list[str]]]:
    """Each preprocessing group with its columns; groups without ``columns`` take the numeric
    (or non-numeric) features no other group names.

    Raises:
        ValueError: a group names a column that is not a feature, or a non-numeric feature is in
            no categorical group (the estimator could not use it).
    """
    from pandas.api.types import is_bool_dtype, is_numeric_dtype

    def numeric(col: str) -> bool:
        dtype = frame[col].dtype
        return bool(is_numeric_dtype(dtype) or is_bool_dtype(dtype))

    claimed: set[str] = set()
    for name, group in spec.preprocessing.items():
        for col in group.columns or []:
            if col not in features:
                raise ValueError(
                    f"preprocessing group '{name}': column '{col}' is not a feature"
                    + (f" ({h})" if (h := did_you_mean(col, features)) else "")
                )
            claimed.add(col)
    out = []
    for name, group in spec.preprocessing.items():
        if group.columns is not None:
            cols = list(group.columns)
        else:
            want_numeric = isinstance(group, NumericGroup)
            cols = [c for c in features if c not in claimed and numeric(c) == want_numeric]
            claimed.update(cols)
        if cols:
            out.append((name, group, cols))
    leftover = [c for c in features if c not in claimed and not numeric(c)]
    if leftover:
        raise ValueError(
            f"feature column(s) {', '.join(leftover)} are not numeric and in no categorical "
            "preprocessing group; add a group `{type: categorical}` to the spec's `preprocessing`"
        )
    return out


def _group_steps(group: NumericGroup | CategoricalGroup) -> Any:
    from sklearn.impute import SimpleImputer
    from sklearn.pipeline import Pipeline
    from sklearn.preprocessing import MinMaxScaler, OneHotEncoder, OrdinalEncoder, StandardScaler

    steps: list[tuple[str, Any]] = []
    extra: dict[str, Any]
    if isinstance(group, NumericGroup):
        if group.impute != "none":
            extra = {"fill_value": group.fill_value} if group.impute == "constant" else {}
            steps.append(("impute", SimpleImputer(strategy=group.impute, **extra)))
        if group.scale == "standard":
            steps.append(("scale", StandardScaler()))
        elif group.scale == "minmax":
            steps.append(("scale", MinMaxScaler()))
    else:
        extra = {"fill_value": group.fill_value} if group.impute == "constant" else {}
        steps.append(("impute", SimpleImputer(strategy=group.impute, **extra)))
        if group.encode == "onehot":
            steps.append(("encode", OneHotEncoder(handle_unknown="ignore", sparse_output=False)))
        else:
            steps.append(
                (
                    "encode",
                    OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=-1),
                )
            )
    return Pipeline(steps) if steps else "passthrough"


def build_pipeline(
    spec: ModelSpec,
    features: list[str],
    frame: pd.DataFrame,
    overrides: dict[str, Any] | None = None,
) -> tuple[Any, dict[str, Any]]:
    """The unfitted pipeline, and the estimator parameters it uses."""
    from sklearn.compose import ColumnTransformer
    from sklearn.pipeline import Pipeline

    transformers = [
        (name, _group_steps(group), cols)
        for name, group, cols in assign_columns(spec, features, frame)
    ]
    preprocess = ColumnTransformer(
        transformers, remainder="passthrough", verbose_feature_names_out=False
    )
    params = estimator_params(spec, overrides)
    estimator = estimator_class(spec.estimator.class_path)(**params)
    return Pipeline([("preprocess", preprocess), ("model", estimator)]), params


def check_target(spec: ModelSpec, frame: pd.DataFrame) -> pd.Series:
    """The target column, checked: no missing values, numeric for regression, two classes or
    more for classification.

    Raises:
        ValueError: naming the column and what is wrong.
    """
    import pandas as pd

    y = frame[spec.target]
    if y.isna().any():
        raise ValueError(
            f"target column '{spec.target}' has {int(y.isna().sum())} missing value(s); drop "
            "those rows before training"
        )
    if spec.task == "regression" and not pd.api.types.is_numeric_dtype(y.dtype):
        raise ValueError(f"target column '{spec.target}' must be numeric for regression")
    if spec.task == "classification" and y.nunique() < 2:
        raise ValueError(f"target column '{spec.target}' has fewer than two classes")
    return y


def fit(spec: ModelSpec, frame: pd.DataFrame, overrides: dict[str, Any] | None = None) -> Fitted:
    """Fit the spec's pipeline on ``frame`` (the training split).

    Raises:
        ValueError: columns missing, a target with missing values, a non-numeric regression
            target, a classification target with fewer than two classes.
    """
    features = resolve_features(spec, [str(c) for c in frame.columns])
    y = check_target(spec, frame)
    X = frame[features]
    pipeline, params = build_pipeline(spec, features, X, overrides)
    pipeline.fit(X, y.to_numpy())
    classes = list(getattr(pipeline, "classes_", [])) if spec.task == "classification" else []
    return Fitted(pipeline, features, classes, params)
