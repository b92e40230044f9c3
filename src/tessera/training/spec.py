"""Model specs: ``models/*.yaml`` files saying what to train, validated with located errors.

A spec names the task, the target, the features, the estimator (by import path, with its
parameters), the preprocessing of each column group, the metrics and the search space for tuning.
:func:`load_spec` checks all of it before anything runs: the YAML shape with pydantic (every
mistake with file, line, key, expected and got), then what needs more than the shape — the
estimator class is imported and must be a scikit-learn-compatible estimator of the right kind,
its parameters and search-space names must be ones it accepts, metrics must belong to the task,
a column may be in one preprocessing group only.

Importing this module is cheap; scikit-learn and the estimator's module are imported by
:func:`load_spec` only.
"""

from __future__ import annotations

import importlib
import inspect
import math
import pkgutil
import re
from collections.abc import Iterable
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Discriminator,
    Field,
    StringConstraints,
    Tag,
    ValidationInfo,
    field_validator,
)

from tessera.config.errors import ConfigError, Problem, describe, did_you_mean
from tessera.config.validate import validate_model
from tessera.config.yaml_io import KeyPath, YamlDocument, load_yaml, parse_yaml

Task = Literal["classification", "regression"]

#: The metrics each task offers, with what they compute (see docs/training.md).
METRICS: dict[str, dict[str, str]] = {
    "classification": {
        "accuracy": "share of rows whose predicted class is the true class",
        "balanced_accuracy": "mean recall over the classes present in the true labels",
        "precision": "precision of the positive class (the second of the sorted classes); "
        "macro average over classes for multi-class",
        "recall": "recall of the positive class; macro average for multi-class",
        "f1": "F1 score of the positive class; macro average for multi-class",
        "roc_auc": "area under the ROC curve from predicted probabilities; one-vs-rest "
        "macro average for multi-class",
        "log_loss": "cross-entropy of the predicted probabilities (lower is better)",
    },
    "regression": {
        "rmse": "root mean squared error",
        "mse": "mean squared error",
        "mae": "mean absolute error",
        "r2": "coefficient of determination",
    },
}
#: Metrics that need ``predict_proba``.
PROBABILITY_METRICS = frozenset({"roc_auc", "log_loss"})
#: What ``metrics`` means when a spec leaves it out.
DEFAULT_METRICS: dict[str, list[str]] = {
    "classification": ["accuracy", "f1", "roc_auc"],
    "regression": ["rmse", "mae", "r2"],
}
INSTALL_HINT = "install the training extra: pip install 'tessera[training]'"

GroupName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z][A-Za-z0-9_]*$")]
Scalar = str | bool | int | float | None


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)


class FeatureRules(_Strict):
    """Features chosen by name patterns instead of listed one by one."""

    include: list[str] = Field(
        default_factory=lambda: ["*"],
        min_length=1,
        description="Glob patterns (`*`, `?`, `[abc]`, case-sensitive) of the columns to use; "
        "default: every column. The target is never a feature.",
    )
    exclude: list[str] = Field(
        default_factory=list,
        description="Glob patterns of columns to leave out (ids, timestamps, leaks).",
    )


class EstimatorSpec(_Strict):
    """The estimator: a scikit-learn-compatible class and its parameters."""

    class_path: str = Field(
        alias="class",
        pattern=r"^[A-Za-z_]\w*(\.[A-Za-z_]\w*)+$",
        description="Import path of the class, e.g. `sklearn.ensemble.RandomForestClassifier` "
        "or `lightgbm.LGBMClassifier`.",
    )
    params: dict[str, Any] = Field(
        default_factory=dict,
        description="Keyword arguments of the class. `random_state` defaults to the spec's "
        "`seed` when the class takes one.",
    )


class NumericGroup(_Strict):
    """Numeric columns: imputed, then scaled."""

    type: Literal["numeric"] = Field(description="`numeric`.")
    columns: list[str] | None = Field(
        None,
        min_length=1,
        description="The columns; left out: every numeric feature no other group names.",
    )
    impute: Literal["mean", "median", "constant", "none"] = Field(
        "median", description="How missing values are filled (learnt on the training split)."
    )
    fill_value: float = Field(0.0, description="The value used by `impute: constant`.")
    scale: Literal["standard", "minmax", "none"] = Field(
        "standard",
        description="`standard`: zero mean, unit variance; `minmax`: to [0, 1]; `none`.",
    )


class CategoricalGroup(_Strict):
    """Categorical columns: imputed, then encoded."""

    type: Literal["categorical"] = Field(description="`categorical`.")
    columns: list[str] | None = Field(
        None,
        min_length=1,
        description="The columns; left out: every non-numeric feature no other group names.",
    )
    impute: Literal["most_frequent", "constant"] = Field(
        "most_frequent", description="How missing values are filled (learnt on the training split)."
    )
    fill_value: str = Field("missing", description="The value used by `impute: constant`.")
    encode: Literal["onehot", "ordinal"] = Field(
        "onehot",
        description="`onehot`: one 0/1 column per category (unseen categories: all zeros); "
        "`ordinal`: one integer column (unseen categories: -1).",
    )


def _tag(value: Any) -> Any:
    return value.get("type") if isinstance(value, dict) else getattr(value, "type", None)


Group = Annotated[
    Annotated[NumericGroup, Tag("numeric")] | Annotated[CategoricalGroup, Tag("categorical")],
    Discriminator(
        _tag,
        custom_error_type="invalid_group",
        custom_error_message="a group with `type: numeric` or `type: categorical`",
    ),
]


class IntRange(_Strict):
    """An integer parameter drawn from ``[low, high]``."""

    type: Literal["int"] = Field(description="`int`.")
    low: int = Field(description="Smallest value (inclusive).")
    high: int = Field(description="Largest value (inclusive).")
    step: int | None = Field(None, ge=1, description="Spacing of the values (not with `log`).")
    log: bool = Field(False, description="Draw on a log scale (needs `low` >= 1).")

    @field_validator("high")
    @classmethod
    def _above_low(cls, value: int, info: ValidationInfo) -> int:
        _check_high(value, info)
        return value

    @field_validator("log")
    @classmethod
    def _log_scale(cls, value: bool, info: ValidationInfo) -> bool:
        return _check_log(value, info, minimum=1)


class FloatRange(_Strict):
    """A real parameter drawn from ``[low, high]``."""

    type: Literal["float"] = Field(description="`float`.")
    low: float = Field(description="Smallest value (inclusive).")
    high: float = Field(description="Largest value (inclusive).")
    step: float | None = Field(None, gt=0, description="Spacing of the values (not with `log`).")
    log: bool = Field(False, description="Draw on a log scale (needs `low` > 0).")

    @field_validator("low", "high")
    @classmethod
    def _finite(cls, value: float) -> float:
        if not math.isfinite(value):
            raise ValueError("a finite number")
        return value

    @field_validator("high")
    @classmethod
    def _above_low(cls, value: float, info: ValidationInfo) -> float:
        _check_high(value, info)
        return value

    @field_validator("log")
    @classmethod
    def _log_scale(cls, value: bool, info: ValidationInfo) -> bool:
        return _check_log(value, info, minimum=0)


class CategoricalChoice(_Strict):
    """A parameter chosen among listed values."""

    type: Literal["categorical"] = Field(description="`categorical`.")
    choices: list[Scalar] = Field(
        min_length=1, description="The values (strings, numbers, booleans or null)."
    )

    @field_validator("choices")
    @classmethod
    def _distinct(cls, value: list[Scalar]) -> list[Scalar]:
        seen: list[Any] = []
        for c in value:
            if any(type(c) is type(s) and c == s for s in seen):
                raise ValueError(f"distinct values ({c!r} is listed twice)")
            seen.append(c)
        return value


def _check_high(value: float, info: ValidationInfo) -> None:
    low = info.data.get("low")
    if low is not None and value <= low:
        raise ValueError(f"a value greater than `low` ({low})")


def _check_log(value: bool, info: ValidationInfo, *, minimum: float) -> bool:
    if not value:
        return value
    if info.data.get("step") is not None:
        raise ValueError("false when `step` is set (a log scale has no fixed step)")
    low = info.data.get("low")
    if low is not None and (low < minimum or low <= 0):
        bound = ">= 1" if minimum else "> 0"
        raise ValueError(f"false, as `log: true` needs `low` {bound} (`low` is {low})")
    return value


SearchParam = Annotated[
    Annotated[IntRange, Tag("int")]
    | Annotated[FloatRange, Tag("float")]
    | Annotated[CategoricalChoice, Tag("categorical")],
    Discriminator(
        _tag,
        custom_error_type="invalid_search_param",
        custom_error_message="a range `{type: int|float, low, high}` or "
        "`{type: categorical, choices: [...]}`",
    ),
]


class ModelSpec(_Strict):
    """A model spec (``models/NAME.yaml``)."""

    task: Task = Field(description="`classification` or `regression`.")
    target: str = Field(min_length=1, description="The column to predict.")
    features: list[str] | FeatureRules = Field(
        default_factory=FeatureRules,
        description="The input columns: a list of names, or `{include: [...], exclude: [...]}` "
        "glob patterns. Default: every column but the target.",
    )
    estimator: EstimatorSpec = Field(description="The estimator class and its parameters.")
    preprocessing: dict[GroupName, Group] = Field(
        default_factory=dict,
        description="Column groups by name, each `type: numeric` or `type: categorical`; fit "
        "on the training split only, saved inside the model. Features in no group are passed "
        "to the estimator unchanged.",
    )
    metrics: list[str] | None = Field(
        None,
        min_length=1,
        description="Metrics reported by `evaluate` (names per task, see docs/training.md). "
        "Default: accuracy, f1, roc_auc (classification); rmse, mae, r2 (regression).",
    )
    seed: int = Field(
        0, ge=0, description="Seed for the estimator (`random_state`) and for tuning."
    )
    search_space: dict[str, SearchParam] = Field(
        default_factory=dict,
        description="Estimator parameters to tune: `{type: int|float, low, high, step, log}` or "
        "`{type: categorical, choices: [...]}`.",
    )

    @property
    def metric_names(self) -> list[str]:
        """The metrics to report: the spec's, or the task's defaults."""
        return list(self.metrics) if self.metrics else list(DEFAULT_METRICS[self.task])


def load_spec(path: Path | str, display: str | None = None) -> ModelSpec:
    """Read and check a model spec.

    Args:
        path: the YAML file.
        display: its name in messages (default: ``path``), relative to the project root.

    Raises:
        ConfigError: every problem found, each with file, line and key.
    """
    doc = load_yaml(Path(path), display or str(path))
    return spec_from_document(doc)


def parse_spec(text: str, display: str = "<string>") -> ModelSpec:
    """Validate a spec given as YAML text (see :func:`load_spec`)."""
    return spec_from_document(parse_yaml(text, display))


def spec_from_document(doc: YamlDocument) -> ModelSpec:
    """Validate a parsed spec (see :func:`load_spec`)."""

    def locate(keypath: KeyPath) -> tuple[str | None, int | None]:
        return doc.path, doc.line_of(keypath)

    spec, problems = validate_model(ModelSpec, doc.data, locate=locate)
    if spec is None:
        raise ConfigError(problems)
    problems = _Checker(doc, spec).run()
    if problems:
        raise ConfigError(problems)
    return spec


class _Checker:
    """What the pydantic model cannot check on its own."""

    def __init__(self, doc: YamlDocument, spec: ModelSpec) -> None:
        self.doc, self.spec = doc, spec
        self.problems: list[Problem] = []

    def add(self, keypath: KeyPath, message: str, **extra: str | None) -> None:
        key = ".".join(str(k) for k in keypath) or None
        self.problems.append(
            Problem(message, self.doc.path, self.doc.line_of(keypath), key=key, **extra)
        )

    def run(self) -> list[Problem]:
        self.metrics()
        self.columns()
        self.estimator()
        return self.problems

    def metrics(self) -> None:
        task = self.spec.task
        known = METRICS[task]
        for i, name in enumerate(self.spec.metrics or []):
            if name in known:
                continue
            other = next((t for t, names in METRICS.items() if name in names), None)
            message = (
                f"metric '{name}' is for {other}, not {task}"
                if other
                else f"unknown metric for a {task} model"
            )
            self.add(
                ("metrics", i),
                message,
                expected="one of " + ", ".join(known),
                got=repr(name),
                hint=did_you_mean(name, known),
            )

    def columns(self) -> None:
        spec = self.spec
        explicit = spec.features if isinstance(spec.features, list) else None
        if explicit is not None:
            for i, col in enumerate(explicit):
                if col == spec.target:
                    self.add(("features", i), "the target cannot be a feature", got=repr(col))
                elif col in explicit[:i]:
                    self.add(("features", i), "feature listed twice", got=repr(col))
        owner: dict[str, str] = {}
        auto: dict[str, str] = {}
        for name, group in spec.preprocessing.items():
            if "__" in name or name == "remainder":
                self.add(
                    ("preprocessing", name),
                    "invalid group name",
                    expected="a name without '__' other than 'remainder'",
                    got=repr(name),
                )
            if group.columns is None:
                if group.type in auto:
                    self.add(
                        ("preprocessing", name),
                        f"two {group.type} groups without `columns` "
                        f"('{auto[group.type]}' and '{name}')",
                        hint="list the columns of one of them",
                    )
                auto[group.type] = name
                continue
            for i, col in enumerate(group.columns):
                where = ("preprocessing", name, "columns", i)
                if col == spec.target:
                    self.add(where, "the target cannot be preprocessed as a feature")
                elif col in owner:
                    self.add(where, f"column '{col}' is already in group '{owner[col]}'")
                elif explicit is not None and col not in explicit:
                    self.add(
                        where,
                        f"column '{col}' is not a feature",
                        hint=did_you_mean(col, explicit) or "add it to `features`",
                    )
                owner.setdefault(col, name)

    def estimator(self) -> None:
        est = self.spec.estimator
        cls = self.import_class(est.class_path)
        if cls is None:
            return
        where = ("estimator", "class")
        if not all(callable(getattr(cls, m, None)) for m in ("fit", "predict", "get_params")):
            self.add(
                where,
                "not a scikit-learn-compatible estimator",
                expected="a class with fit, predict and get_params",
                got=est.class_path,
            )
            return
        for name, hint in unknown_params(cls, self.spec.search_space):
            self.add(("search_space", name), f"unknown parameter of {cls.__name__}", hint=hint)
        unknown = unknown_params(cls, est.params)
        for name, hint in unknown:
            self.add(
                ("estimator", "params", name), f"unknown parameter of {cls.__name__}", hint=hint
            )
        bad = {name for name, _ in unknown}
        try:
            instance = cls(**{k: v for k, v in est.params.items() if k not in bad})
        except Exception as exc:
            self.add(
                ("estimator", "params"),
                f"{cls.__name__} rejects these parameters: {type(exc).__name__}: {exc}",
            )
            return
        if not bad:
            self.param_values(instance, cls)
        if not self.kind(instance):
            return
        if self.spec.task == "classification":
            for i, name in enumerate(self.spec.metric_names):
                if name in PROBABILITY_METRICS and not hasattr(instance, "predict_proba"):
                    self.add(
                        ("metrics", i) if self.spec.metrics else ("estimator", "class"),
                        (
                            f"metric '{name}' needs"
                            if self.spec.metrics
                            else f"the default metrics include '{name}', which needs"
                        )
                        + f" predicted probabilities, and {cls.__name__} "
                        "(with these parameters) has no predict_proba",
                        hint="list `metrics` without it, or use a probabilistic estimator",
                    )

    def param_values(self, instance: Any, cls: type) -> None:
        """scikit-learn estimators check their parameters' values at ``fit``: check them now."""
        check = getattr(instance, "_validate_params", None)
        if not callable(check) or not isinstance(
            getattr(cls, "_parameter_constraints", None), dict
        ):
            return
        try:
            check()
        except Exception as exc:
            message = str(exc)
            m = re.match(
                r"The '(\w+)' parameter of \w+ must be (.*)\. Got (.*) instead\.$", message
            )
            if m and m.group(1) in self.spec.estimator.params:
                self.add(
                    ("estimator", "params", m.group(1)),
                    "invalid value",
                    expected=m.group(2),
                    got=m.group(3),
                )
            else:
                self.add(("estimator", "params"), f"invalid parameters: {message}")

    def kind(self, instance: Any) -> bool:
        """Whether the estimator suits the task (a problem is added when not)."""
        try:
            from sklearn.base import is_classifier, is_regressor
        except ModuleNotFoundError:
            self.add(("estimator", "class"), "scikit-learn is not installed", hint=INSTALL_HINT)
            return False
        task = self.spec.task
        ok = is_classifier(instance) if task == "classification" else is_regressor(instance)
        if not ok:
            wanted = "classifier" if task == "classification" else "regressor"
            path = self.spec.estimator.class_path
            swap = {"Regressor": "Classifier", "Classifier": "Regressor"}
            hint = next(
                (
                    f"did you mean '{path[: -len(a)] + b}'?"
                    for a, b in swap.items()
                    if path.endswith(a)
                ),
                None,
            )
            self.add(
                ("estimator", "class"),
                f"not a {wanted}, as task '{task}' needs",
                got=path,
                hint=hint,
            )
        return ok

    def import_class(self, path: str) -> type | None:
        where = ("estimator", "class")
        module_name, _, class_name = path.rpartition(".")
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            missing = exc.name or module_name
            if module_name == missing or module_name.startswith(missing + "."):
                self.add(
                    where,
                    f"cannot import module '{missing}'",
                    got=path,
                    hint=_module_hint(missing)
                    or (INSTALL_HINT if missing.split(".")[0] in ("sklearn", "lightgbm") else None),
                )
            else:
                self.add(where, f"cannot import module '{module_name}': {exc}", got=path)
            return None
        except Exception as exc:
            self.add(where, f"cannot import module '{module_name}': {exc}", got=path)
            return None
        cls = getattr(module, class_name, None)
        if cls is None:
            names = [n for n in dir(module) if not n.startswith("_")]
            self.add(
                where,
                f"module '{module_name}' has no class '{class_name}'",
                got=path,
                hint=did_you_mean(class_name, names),
            )
            return None
        if not isinstance(cls, type):
            self.add(where, "not a class", expected="an estimator class", got=describe(cls))
            return None
        return cls


def _module_hint(missing: str) -> str | None:
    """ "did you mean 'sklearn.ensemble'?" for a misspelt submodule of an importable package."""
    parent = missing.rpartition(".")[0]
    if not parent:
        return None
    try:
        package = importlib.import_module(parent)
    except Exception:
        return None
    names = [m.name for m in pkgutil.iter_modules(getattr(package, "__path__", []))]
    return did_you_mean(missing, [f"{parent}.{n}" for n in names if not n.startswith("_")])


def accepted_params(cls: type) -> set[str] | None:
    """The keyword arguments ``cls`` takes; None when it takes any (``**kwargs``)."""
    try:
        params = inspect.signature(cls).parameters.values()
    except (TypeError, ValueError):
        return None
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
        return None
    return {p.name for p in params}


def unknown_params(cls: type, names: Iterable[str]) -> list[tuple[str, str | None]]:
    """``(name, did-you-mean hint)`` for each name ``cls`` does not take."""
    accepted = accepted_params(cls)
    if accepted is None:
        return []
    return [(n, did_you_mean(n, accepted)) for n in names if n not in accepted]


def estimator_class(path: str) -> type:
    """Import the estimator class named by ``path`` (already checked by :func:`load_spec`)."""
    module_name, _, class_name = path.rpartition(".")
    cls = getattr(importlib.import_module(module_name), class_name)
    if not isinstance(cls, type):  # pragma: no cover - load_spec refuses it
        raise TypeError(f"{path} is not a class")
    return cls


def estimator_params(spec: ModelSpec, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The estimator's keyword arguments: the spec's, the overrides, and the seed.

    ``random_state`` is set to the spec's ``seed`` when the class takes it and neither the spec
    nor the overrides set it, so the same spec trains the same model.
    """
    params = {**spec.estimator.params, **(overrides or {})}
    cls = estimator_class(spec.estimator.class_path)
    if "random_state" not in params and "random_state" in inspect.signature(cls).parameters:
        params["random_state"] = spec.seed
    return dict(sorted(params.items()))
