"""``serving.yaml``: what ``tessera serve`` serves, how a new version rolls out, and its limits.

Every section has defaults, so ``models: [{name: churn}]`` is a complete file. Mistakes are
reported with file, line and key (exit code 2), like every other config file.
"""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from tessera.config.validate import load_model_file

SERVING_FILE = "serving.yaml"
STRATEGIES = ("ab", "canary", "shadow")


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ServedModel(_Section):
    """A registered model to serve, by name and alias."""

    name: str = Field(description="The registered model's name (as in `tessera models list`).")
    alias: str = Field("champion", description="The alias whose version is served.")


class CanaryStep(_Section):
    """One traffic step of a canary rollout."""

    traffic: float = Field(
        gt=0, le=100, description="Percent of requests the candidate answers in this step."
    )
    min_requests: int = Field(
        100, ge=1, description="Requests the candidate must answer before the step is judged."
    )
    dwell_seconds: float = Field(
        60.0, ge=0, description="Least time spent in the step before it is judged."
    )


class CanaryConfig(_Section):
    """Canary: traffic steps, each judged by gates; all passed promotes, one failed rolls back."""

    steps: list[CanaryStep] = Field(
        default_factory=lambda: [
            CanaryStep(traffic=5),
            CanaryStep(traffic=25),
            CanaryStep(traffic=50),
            CanaryStep(traffic=100),
        ],
        min_length=1,
        description="Traffic steps in increasing order; passing the last promotes the candidate "
        "(default: 5, 25, 50 and 100 percent, each with 100 requests and 60 seconds).",
    )
    max_error_rate: float = Field(
        0.01, ge=0, le=1, description="Highest share of the candidate's requests that may fail."
    )
    max_p99_ms: float = Field(
        100.0, gt=0, description="Highest 99th percentile latency of the candidate, in ms."
    )
    metric: str | None = Field(
        None,
        description="Quality metric compared with the champion once feedback arrives "
        "(default: accuracy for classifiers, rmse for regressors).",
    )
    max_metric_drop: float = Field(
        0.02, ge=0, description="How much worse than the champion's the metric may be."
    )
    min_feedback: int = Field(
        50, ge=1, description="Labelled candidate predictions needed before quality is gated."
    )

    @field_validator("steps")
    @classmethod
    def _increasing(cls, steps: list[CanaryStep]) -> list[CanaryStep]:
        traffic = [s.traffic for s in steps]
        if traffic != sorted(set(traffic)):
            raise ValueError(f"step traffic must increase, got {traffic}")
        return steps


class ABConfig(_Section):
    """A/B test: a fixed weighted split, compared with a significance test."""

    weight: float = Field(
        50.0, gt=0, lt=100, description="Percent of requests (or keys) the candidate answers."
    )
    metric: str | None = Field(
        None, description="Metric compared (default: accuracy or rmse, as for canary)."
    )
    min_samples: int = Field(
        200, ge=1, description="Labelled predictions per variant before the result is reported."
    )
    alpha: float = Field(0.05, gt=0, lt=1, description="Significance level of the test.")


class ShadowConfig(_Section):
    """Shadow: the candidate scores mirrored requests; clients only see the champion."""

    share: float = Field(
        100.0, gt=0, le=100, description="Percent of requests mirrored to the candidate."
    )
    metric: str | None = Field(
        None, description="Metric of each variant once feedback arrives (default as for canary)."
    )


class RolloutConfig(_Section):
    """How a candidate version reaches traffic (started with `tessera rollout start`)."""

    strategy: Literal["ab", "canary", "shadow"] = Field(
        "canary", description="`ab`, `canary` or `shadow`."
    )
    candidate: str = Field(
        "challenger", description="Alias (or version number) of the candidate model version."
    )
    tick_seconds: float = Field(
        1.0, gt=0, description="How often statistics are shared and gates are judged."
    )
    canary: CanaryConfig = Field(default_factory=CanaryConfig)
    ab: ABConfig = Field(default_factory=ABConfig)
    shadow: ShadowConfig = Field(default_factory=ShadowConfig)


class PredictionLogConfig(_Section):
    """The prediction log: date-partitioned Parquet, written in batches off the request path."""

    enabled: bool = Field(True, description="Log every prediction.")
    dir: str = Field(
        ".tessera/predictions",
        description="Directory of the log (relative to the project root).",
    )
    flush_rows: int = Field(5_000, ge=1, description="Rows that trigger a write.")
    flush_seconds: float = Field(5.0, gt=0, description="Longest time a row waits to be written.")
    max_pending_rows: int = Field(
        200_000,
        ge=1,
        description="Rows held in memory at most; beyond it new records are dropped and counted.",
    )
    compact: bool = Field(
        True,
        description="Merge the files of each finished day (an hour after midnight UTC) into "
        "one file per schema, hourly; the small files are deleted 10 minutes after the merge.",
    )


class AdminConfig(_Section):
    """The admin API (`/admin/*`): off unless a bearer token is configured."""

    token_env: str = Field(
        "TESSERA_ADMIN_TOKEN", description="Environment variable holding the bearer token."
    )
    token_file: str | None = Field(
        None, description="File holding the bearer token (used when the variable is unset)."
    )
    allow_localhost: bool = Field(
        False,
        description="Without a token, allow admin requests from loopback addresses only.",
    )


class ServingConfig(_Section):
    """The contents of ``serving.yaml``."""

    models: list[ServedModel] = Field(
        min_length=1,
        description="The models to serve; the first answers `/predict` and `/invocations`, "
        "each at `/models/NAME/predict` and `/models/NAME/invocations`.",
    )
    rollout: RolloutConfig = Field(default_factory=RolloutConfig)
    prediction_log: PredictionLogConfig = Field(default_factory=PredictionLogConfig)
    admin: AdminConfig = Field(default_factory=AdminConfig)
    reload_seconds: float = Field(
        5.0, gt=0, description="How often registry aliases are checked for a new version."
    )
    max_batch_rows: int = Field(
        10_000, gt=0, description="Most rows one request may hold (more: 413)."
    )
    max_body_bytes: int = Field(
        10_000_000, gt=0, description="Largest request body in bytes (more: 413)."
    )
    host: str = Field("127.0.0.1", description="Address to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="Port to listen on.")

    @model_validator(mode="after")
    def _unique_models(self) -> ServingConfig:
        names = [m.name for m in self.models]
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"models are listed more than once: {', '.join(duplicates)}")
        return self


def load_serving_config(project_root: Path) -> ServingConfig | None:
    """The project's ``serving.yaml``, or None when there is none.

    Raises:
        ConfigError: the file is not valid YAML or does not fit :class:`ServingConfig`; every
            problem is named with file and line.
    """
    path = project_root / SERVING_FILE
    if not path.is_file():
        return None
    return load_model_file(path, SERVING_FILE, ServingConfig)[0]
