"""The ``register`` transformation: a trained model into the registry, through a quality gate.

Registered through the ``tessera.transformations`` entry point; importing it stays cheap.
"""

from __future__ import annotations

import json
import re
import time
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from tessera.pipeline.errors import StageReportError
from tessera.pipeline.registry import transformation
from tessera.registry.gate import GateConfig, evaluate_gate
from tessera.training.stages import Bootstrap, check_metric_names

if TYPE_CHECKING:
    import pandas as pd

    from tessera.pipeline.context import StageContext
    from tessera.registry.models import ModelRegistry, VersionInfo

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,254}$")


class Register(BaseModel):
    """Config of ``register``."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(description="The registered model's name (letters, digits, `_.-`).")
    description: str | None = Field(None, description="Description of the new version.")
    tags: dict[str, str] = Field(
        default_factory=dict, description="More tags on the version (lineage tags are added)."
    )
    gate: GateConfig = Field(
        default_factory=GateConfig,
        description="Quality gate for promotion: absolute thresholds and a margin over the "
        "current champion on the same test rows.",
    )
    promote: bool = Field(
        True,
        description="Move `champion` to the new version when it passes the gate. A version "
        "that is not promoted becomes `challenger`.",
    )
    fail_on_gate: bool = Field(
        True, description="Fail the stage (exit code 1) when the gate fails."
    )
    bootstrap: Bootstrap = Field(
        default_factory=Bootstrap, description="Confidence intervals of the reported metrics."
    )
    intended_use: str | None = Field(None, description="For the model card.")
    limitations: list[str] | None = Field(
        None, description="For the model card (default: derived from the data and metrics)."
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("a model name of letters, digits, '_', '.' and '-'")
        return value

    @field_validator("gate")
    @classmethod
    def _gate_metrics(cls, value: GateConfig) -> GateConfig:
        from tessera.training.evaluation import higher_is_better

        check_metric_names(value.metrics())
        for name in value.min:
            if not higher_is_better(name):
                raise ValueError(f"'{name}' is a loss (lower is better): put it under `max`")
        for name in value.max:
            if higher_is_better(name):
                raise ValueError(f"'{name}' is a score (higher is better): put it under `min`")
        return value


@transformation(
    name="register",
    libraries=("scikit-learn", "lightgbm", "skops", "mlflow"),
)
def register_model(model: pd.DataFrame, test: pd.DataFrame, cfg: Register) -> pd.DataFrame:
    """Register a trained model in the MLflow Model Registry and promote it if it passes a gate.

    The model (the output of `train` or `tune`) is registered once per version: running again
    finds the existing registry version. The version carries the pipeline run, the data versions,
    the code hash, the commit and the sha256 of its files, and gets a model card (Markdown and
    HTML) as artifacts of its MLflow run. The gate scores the candidate on `test` and, when a
    champion exists, scores the champion on the same rows: a candidate that passes becomes
    `champion` (with `promote: true`), otherwise `challenger`. Each decision is recorded in the
    audit trail (`tessera models show NAME`) with the numbers behind it.

    Example:
        ```yaml
        registered:
          uses: register
          inputs: [model, split.test]
          with:
            name: churn
            gate: {min: {roc_auc: 0.7}, compare: roc_auc, margin: 0.0}
        ```

    Args:
        model: the output of a `train` or `tune` stage.
        test: held-out rows with the model's features and target.
        cfg: the name, the gate, what to promote.

    Returns:
        One row: `name`, `version`, `aliases`, `gate_passed`, `promoted`, `champion_before`,
        `model_version`, `run_id` and `metrics` (JSON).

    Raises:
        StageReportError: the gate failed (with `fail_on_gate`); the report lists every check.
    """
    import pandas as pd

    from tessera.pipeline.context import current

    context = current()
    if context is None:
        raise ValueError("register runs inside a pipeline run (`tessera run`)")
    registry = _registry(context)
    return pd.DataFrame([_register(registry, context, model, test, cfg)])


def _registry(context: StageContext) -> ModelRegistry:
    from tessera.data.metadata import MetadataStore
    from tessera.registry.models import ModelRegistry
    from tessera.tracking import Tracker

    return ModelRegistry(
        Tracker.for_project(context.project), MetadataStore(context.project.metadata_url)
    )


def _register(
    registry: ModelRegistry,
    context: StageContext,
    model: pd.DataFrame,
    test: pd.DataFrame,
    cfg: Register,
) -> dict[str, Any]:
    from tessera.registry.models import CHALLENGER, CHAMPION, actor
    from tessera.tracking import lineage_tags
    from tessera.tracking.client import TAG_KIND, TAG_MODEL_VERSION
    from tessera.training import evaluation, metrics, modelio, spec

    refs = list(context.inputs)
    model_version = context.inputs[refs[0]]
    info = modelio.model_info(model)
    pipeline = modelio.load_model(model)
    compare = cfg.gate.compare or info.metrics[0]
    names = list(dict.fromkeys([*info.metrics, *cfg.gate.metrics(), compare]))

    for name in names:
        if name not in spec.METRICS[info.task]:
            raise ValueError(
                f"the gate's metric '{name}' does not apply to a {info.task} model (its "
                f"metrics: {', '.join(spec.METRICS[info.task])}); nothing was registered"
            )

    def scores_of(fitted: Any, features: list[str]) -> list[metrics.Score]:
        pred = evaluation.predictions(
            fitted, info.task, test, features, info.target, names, estimator=info.estimator
        )
        return metrics.score(
            pred,
            names,
            samples=cfg.bootstrap.samples,
            confidence=cfg.bootstrap.confidence,
            seed=cfg.bootstrap.seed,
        )

    candidate = scores_of(pipeline, info.features)
    values = {s.metric: s.value for s in candidate}

    tracker = registry.tracker
    run_id = tracker.find_run(TAG_MODEL_VERSION, model_version)
    model_uri = tracker.model_uri(run_id) if run_id else None
    if run_id is None or model_uri is None:  # trained elsewhere (pulled from a remote)
        tags = {**lineage_tags(context), TAG_KIND: "register", TAG_MODEL_VERSION: model_version}
        with tracker.run(context.stage, tags) as run_id:
            data = modelio.dumps(pipeline)
            from tessera.training.track import requirements

            model_uri = tracker.log_model(
                run_id,
                pipeline,
                test[info.features].head(5),
                trusted_types=modelio.trusted_types_of(data),
                requirements=requirements(info.estimator),
            )
    tags = {
        **{k: v for k, v in lineage_tags(context).items() if not k.startswith("mlflow.")},
        "tessera.task": info.task,
        "tessera.target": info.target,
        "tessera.classes": json.dumps(info.classes, default=str),
        **cfg.tags,
    }
    version, created = registry.register(
        cfg.name,
        run_id=run_id,
        model_uri=model_uri,
        model_version=model_version,
        tags=tags,
        description=cfg.description,
        pipeline_run=context.run_id,
    )
    print(
        f"{'registered' if created else 'already registered:'} {cfg.name} version "
        f"{version.version} (MLflow run {run_id})"
    )

    champion = registry.alias(cfg.name, CHAMPION)
    champion_values = None
    if champion is not None and champion != version.version:
        _, champion_pipeline = registry.load(f"{cfg.name}/{champion}")
        needs = [str(c) for c in getattr(champion_pipeline, "feature_names_in_", info.features)]
        missing = [c for c in needs if c not in test.columns]
        if missing:
            raise ValueError(
                f"the champion ({cfg.name} version {champion}) cannot be scored on the test "
                f"table: it lacks the champion's feature column(s) {', '.join(missing)}"
            )
        champion_values = {s.metric: s.value for s in scores_of(champion_pipeline, needs)}
    result = evaluate_gate(
        cfg.gate, values, champion_values, compare=compare, champion_version=champion
    )
    details = {
        "candidate": values,
        "champion": champion_values,
        "gate": result.to_dict(),
        "test_rows": len(test),
        "test_version": context.inputs[refs[1]],
    }
    print(result.summary())
    _write_card(registry, version, info, candidate, result.to_dict(), context, cfg, len(test))

    promoted = False
    if champion == version.version:
        pass  # already the champion: nothing to decide
    elif result.passed and cfg.promote:
        registry.promote(
            cfg.name,
            version.version,
            alias=CHAMPION,
            reason=f"{result.summary()} (pipeline run {context.run_id})",
            details=details,
            pipeline_run=context.run_id,
        )
        promoted = True
        print(f"promoted {cfg.name} version {version.version} to @{CHAMPION}")
    elif registry.alias(cfg.name, CHALLENGER) != version.version:
        registry.promote(
            cfg.name,
            version.version,
            alias=CHALLENGER,
            reason=result.summary() if not result.passed else "registered; not promoted",
            details=details,
            pipeline_run=context.run_id,
        )
    if not result.passed:
        registry.records.record_model_event(
            cfg.name,
            "gate",
            version=version.version,
            actor=actor(),
            reason=result.summary(),
            details=details,
            run_id=context.run_id,
        )
        if cfg.fail_on_gate:
            import pandas as pd

            raise StageReportError(
                f"{cfg.name} version {version.version}: {result.summary()}",
                pd.DataFrame([vars(c) for c in result.checks]),
            )
    return {
        "name": cfg.name,
        "version": version.version,
        "aliases": json.dumps(registry.get(f"{cfg.name}/{version.version}").aliases),
        "gate_passed": result.passed,
        "promoted": promoted,
        "champion_before": champion,
        "model_version": model_version,
        "run_id": run_id,
        "metrics": json.dumps(values, sort_keys=True),
    }


def _write_card(
    registry: ModelRegistry,
    version: VersionInfo,
    info: Any,
    scores: list[Any],
    gate: dict[str, Any],
    context: StageContext,
    cfg: Register,
    test_rows: int,
) -> None:
    """The model card of a version, as Markdown and HTML artifacts of its MLflow run."""
    import tempfile
    from pathlib import Path

    from tessera.training import report

    refs = list(context.inputs)
    card = {
        "name": version.name,
        "version": version.version,
        "description": cfg.description,
        "task": info.task,
        "target": info.target,
        "estimator": info.estimator,
        "params": info.params,
        "features": info.features,
        "classes": info.classes,
        "metrics": [
            {
                "metric": s.metric,
                "value": s.value,
                "ci_low": s.ci_low,
                "ci_high": s.ci_high,
                "split": "test",
                "rows": test_rows,
            }
            for s in scores
        ],
        "data": [
            {"role": "model", "stage": refs[0], "version": context.inputs[refs[0]], "rows": 1},
            {
                "role": "test",
                "stage": refs[1],
                "version": context.inputs[refs[1]],
                "rows": test_rows,
            },
            {"role": "train", "stage": "", "version": "", "rows": info.train_rows},
        ],
        "lineage": {
            "pipeline_run": context.run_id,
            "git_commit": context.git_commit,
            "code_hash": context.code_hash,
            "mlflow_run_id": version.run_id,
        },
        "gate": {
            "passed": gate["passed"],
            "checks": [
                {
                    "check": f"{c['check']} {c['metric']}",
                    "value": c["value"],
                    "threshold": c["threshold"],
                    "passed": c["passed"],
                }
                for c in gate["checks"]
            ],
        },
        "intended_use": cfg.intended_use,
        "limitations": cfg.limitations,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "sha256": version.tags.get("tessera.sha256"),
    }
    markdown, html = report.model_card(card)
    with tempfile.TemporaryDirectory(prefix="tessera-card-") as tmp:
        base = Path(tmp) / f"{version.name}-v{version.version}"
        base.with_suffix(".md").write_text(markdown, encoding="utf-8")
        base.with_suffix(".html").write_text(html, encoding="utf-8")
        if version.run_id:
            registry.tracker.log_artifacts(version.run_id, Path(tmp), "model_card")
