"""Judging a rollout: the canary gates (pure functions of the merged statistics, the online
quality and the time) and the A/B comparison with its significance test."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from tessera.serving.rollout.state import CANDIDATE, CHAMPION, Rollout
from tessera.serving.rollout.stats import VariantStats

Action = Literal["wait", "advance", "promote", "rollback"]
#: A canary fails early, before its step's ``min_requests``, once the candidate answered this
#: many requests (or ``min_requests``, when smaller) with too many errors.
EARLY_REQUESTS = 20


class Quality(Protocol):
    """Online quality of one variant (``tessera.serving.predlog.QualityStats``).

    ``loss_mean`` and ``loss_var`` are the mean and the sample variance of the per-row loss
    (lower is better): the 0/1 error of a classifier, the squared error of a regressor.
    """

    @property
    def n(self) -> int: ...
    @property
    def metric(self) -> str: ...
    @property
    def value(self) -> float: ...
    @property
    def loss_mean(self) -> float: ...
    @property
    def loss_var(self) -> float: ...


@dataclass(frozen=True)
class Decision:
    """What a canary does now, why, and the numbers behind it (recorded with the decision)."""

    action: Action
    reason: str
    details: dict[str, Any] = field(default_factory=dict)


def default_metric(task: str | None) -> str:
    """The metric compared when the configuration names none: accuracy or rmse."""
    return "rmse" if task == "regression" else "accuracy"


def higher_is_better(metric: str) -> bool:
    from tessera.training.evaluation import higher_is_better as better

    return better(metric)


def pct(rate: float) -> str:
    return f"{rate * 100:.1f}%"


def ms(value: float | None) -> str:
    if value is None:
        return "- ms"
    return f"{value:.0f} ms" if value >= 10 else f"{value:.1f} ms"


def quality_dict(q: Quality | None) -> dict[str, Any] | None:
    if q is None:
        return None
    return {"n": q.n, "metric": q.metric, "value": q.value, "loss_mean": q.loss_mean}


def judge_canary(
    rollout: Rollout,
    stats: Mapping[str, VariantStats],
    quality: Mapping[str, Quality] | None,
    now: float,
) -> Decision:
    """The decision on a canary's current step.

    Gates, on the candidate's statistics of this step summed over every worker:

    - error rate above ``max_error_rate``: rollback, as soon as the candidate answered
      ``min(min_requests, 20)`` requests;
    - p99 latency above ``max_p99_ms``: rollback, once it answered ``min_requests``;
    - once it answered ``min_requests`` and ``dwell_seconds`` passed: quality, when both variants
      have ``min_feedback`` labelled predictions in this rollout, the candidate's metric may be
      at most ``max_metric_drop`` worse than the champion's (else rollback); all passed: the next
      step, or promotion after the last one.

    Args:
        rollout: a running canary.
        stats: variant -> counters of the current step, summed over workers.
        quality: variant -> online quality over the whole rollout, or None without a
            prediction log (or when it was not read).
        now: the time (seconds since the epoch).
    """
    canary = rollout.settings.canary
    step = canary.steps[rollout.step - 1]
    cand = stats.get(CANDIDATE, VariantStats())
    champ = stats.get(CHAMPION, VariantStats())
    elapsed = max(0.0, now - rollout.step_started)
    where = f"step {rollout.step}/{rollout.steps} ({step.traffic:g}%)"
    p99 = cand.quantile_ms(0.99)
    details: dict[str, Any] = {
        "step": rollout.step,
        "steps": rollout.steps,
        "traffic": step.traffic,
        "elapsed_seconds": round(elapsed, 3),
        "candidate": cand.summary(),
        "champion": champ.summary(),
        "thresholds": {
            "min_requests": step.min_requests,
            "dwell_seconds": step.dwell_seconds,
            "max_error_rate": canary.max_error_rate,
            "max_p99_ms": canary.max_p99_ms,
            "max_metric_drop": canary.max_metric_drop,
            "min_feedback": canary.min_feedback,
        },
    }
    errors = f"{cand.errors}/{cand.requests} = {pct(cand.error_rate)}"
    if (
        cand.requests >= min(step.min_requests, EARLY_REQUESTS)
        and cand.error_rate > canary.max_error_rate
    ):
        return Decision(
            "rollback",
            f"error rate gate failed at {where}: {errors} of the candidate's requests failed "
            f"(max {canary.max_error_rate * 100:g}%; champion {pct(champ.error_rate)})",
            details,
        )
    enough = cand.requests >= step.min_requests
    if enough and p99 is not None and p99 > canary.max_p99_ms:
        return Decision(
            "rollback",
            f"p99 latency gate failed at {where}: candidate p99 {ms(p99)} over "
            f"{cand.requests} requests (max {canary.max_p99_ms:g} ms; champion "
            f"{ms(champ.quantile_ms(0.99))})",
            details,
        )
    if not enough or elapsed < step.dwell_seconds:
        return Decision(
            "wait",
            f"{where}: candidate {cand.requests}/{step.min_requests} requests, dwell "
            f"{elapsed:.0f}/{step.dwell_seconds:g} s",
            details,
        )
    passed, quality_text, details["quality"] = quality_gate(
        quality, canary.max_metric_drop, canary.min_feedback
    )
    if passed is False:
        return Decision("rollback", f"quality gate failed at {where}: {quality_text}", details)
    summary = (
        f"{cand.requests} candidate requests, errors {pct(cand.error_rate)} "
        f"(max {canary.max_error_rate * 100:g}%), p99 {ms(p99)} (max {canary.max_p99_ms:g} ms), "
        f"{quality_text}"
    )
    if rollout.step >= rollout.steps:
        return Decision("promote", f"all {rollout.steps} steps passed; {where}: {summary}", details)
    following = canary.steps[rollout.step].traffic
    return Decision("advance", f"{where} passed: {summary}; next {following:g}%", details)


def quality_gate(
    quality: Mapping[str, Quality] | None, max_drop: float, min_feedback: int
) -> tuple[bool | None, str, dict[str, Any]]:
    """(passed, or None when not judged; a sentence; the numbers) of the quality gate."""
    cand = (quality or {}).get(CANDIDATE)
    champ = (quality or {}).get(CHAMPION)
    numbers: dict[str, Any] = {
        "candidate": quality_dict(cand),
        "champion": quality_dict(champ),
        "max_metric_drop": max_drop,
        "min_feedback": min_feedback,
    }
    if quality is None:
        return None, "quality not gated (no prediction log)", numbers
    have_cand, have_champ = (cand.n if cand else 0), (champ.n if champ else 0)
    if cand is None or champ is None or have_cand < min_feedback or have_champ < min_feedback:
        short = []
        if have_cand < min_feedback:
            short.append(f"{have_cand}/{min_feedback} labelled candidate predictions")
        if have_champ < min_feedback:
            short.append(f"{have_champ}/{min_feedback} labelled champion predictions")
        return None, f"quality not gated ({', '.join(short)})", numbers
    metric = cand.metric
    if math.isnan(cand.value) or math.isnan(champ.value):
        return None, f"quality not gated ({metric} is undefined on the labelled rows)", numbers
    drop = champ.value - cand.value if higher_is_better(metric) else cand.value - champ.value
    numbers.update(metric=metric, drop=drop)
    text = (
        f"{metric} {cand.value:.4g} vs champion {champ.value:.4g} (drop {drop:.4g}, max "
        f"{max_drop:g}; {cand.n}/{champ.n} labelled predictions)"
    )
    return drop <= max_drop, text, numbers


def compare_ab(
    champion: Quality | None,
    candidate: Quality | None,
    *,
    metric: str,
    binary_loss: bool,
    min_samples: int,
    alpha: float,
) -> dict[str, Any]:
    """The A/B comparison of two variants' online quality.

    The test compares the mean per-row loss: a two-proportion z-test on the error rates when
    the loss is 0/1 (``binary_loss``: classifiers), else Welch's t-test (regressors' squared
    errors); two-sided. A variant is called better only when the test is significant at
    ``alpha`` and both have ``min_samples`` labelled predictions; the better one has the lower
    loss.

    Returns:
        ``metric``, ``champion``/``candidate`` (n, value, loss_mean), ``test``, ``statistic``,
        ``p_value``, ``alpha``, ``significant``, ``min_samples``, ``enough``, ``better``
        (``champion``, ``candidate`` or None) and ``summary``, a sentence.
    """
    n_champ = champion.n if champion is not None else 0
    n_cand = candidate.n if candidate is not None else 0
    out: dict[str, Any] = {
        "metric": metric,
        "champion": quality_dict(champion),
        "candidate": quality_dict(candidate),
        "test": None,
        "statistic": None,
        "p_value": None,
        "alpha": alpha,
        "significant": None,
        "min_samples": min_samples,
        "enough": n_champ >= min_samples and n_cand >= min_samples,
        "better": None,
    }
    if champion is not None and candidate is not None and n_champ >= 2 and n_cand >= 2:
        test, statistic, p_value = significance(champion, candidate, binary_loss=binary_loss)
        out.update(test=test, statistic=statistic, p_value=p_value, significant=p_value < alpha)
    if not out["enough"]:
        short = [
            f"{n}/{min_samples} labelled {variant} predictions"
            for variant, n in ((CANDIDATE, n_cand), (CHAMPION, n_champ))
            if n < min_samples
        ]
        out["summary"] = f"not enough samples yet: {', '.join(short)}"
        return out
    assert champion is not None and candidate is not None  # enough samples of both
    values = (
        f"{metric} {candidate.value:.4g} (candidate) vs {champion.value:.4g} (champion), "
        f"{out['test']} p = {out['p_value']:.3g}"
    )
    if out["significant"]:
        better = CANDIDATE if candidate.loss_mean < champion.loss_mean else CHAMPION
        out["better"] = better
        out["summary"] = f"the {better} is better: {values} < {alpha:g}"
    else:
        out["summary"] = f"no significant difference: {values} >= {alpha:g}"
    return out


def significance(
    champion: Quality, candidate: Quality, *, binary_loss: bool
) -> tuple[str, float, float]:
    """(test name, statistic, two-sided p-value) of the difference in mean per-row loss,
    candidate minus champion."""
    from scipy import stats

    if binary_loss:
        n1, n2 = candidate.n, champion.n
        p1, p2 = candidate.loss_mean, champion.loss_mean
        pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
        se = math.sqrt(pooled * (1 - pooled) * (1 / n1 + 1 / n2))
        if se == 0:  # both all right (or all wrong): no difference to see
            return "two-proportion z-test", 0.0, 1.0
        z = (p1 - p2) / se
        return "two-proportion z-test", z, float(2 * stats.norm.sf(abs(z)))
    result = stats.ttest_ind_from_stats(
        candidate.loss_mean,
        math.sqrt(max(candidate.loss_var, 0.0)),
        candidate.n,
        champion.loss_mean,
        math.sqrt(max(champion.loss_var, 0.0)),
        champion.n,
        equal_var=False,
    )
    t, p = float(result.statistic), float(result.pvalue)
    if math.isnan(p):  # no variance in either: equal means, or a difference without doubt
        same = candidate.loss_mean == champion.loss_mean
        return "Welch's t-test", 0.0, 1.0 if same else 0.0
    return "Welch's t-test", t, p
