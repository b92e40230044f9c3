"""Rollouts: router, statistics, canary gates, A/B significance, the shared state in the metadata
store (SQLite and PostgreSQL), workers driving a canary against a really registered model, and
`tessera rollout`."""

from __future__ import annotations

import math
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from tessera.data.metadata import MetadataStore, default_url
from tessera.serving.config import CanaryConfig, CanaryStep, RolloutConfig
from tessera.serving.rollout import (
    LATENCY_BUCKETS_MS,
    Rollout,
    RolloutError,
    RolloutRuntime,
    StatsRecorder,
    VariantStats,
    abort_rollout,
    bucket,
    compare_ab,
    judge_canary,
    promote_rollout,
    rollout_status,
    start_rollout,
)
from tessera.serving.rollout.state import (
    acquire_lease,
    insert_rollout,
    read_stats,
    running_rollout,
    update_running,
    write_stats,
)

from support import Result, cancer_project


@dataclass(frozen=True)
class Q:
    """Online quality of a variant, as tessera.serving.predlog.QualityStats gives it."""

    n: int
    metric: str
    value: float
    loss_mean: float
    loss_var: float


def _canary(*steps: tuple[float, int, float], **gates: Any) -> RolloutConfig:
    return RolloutConfig(
        strategy="canary",
        canary=CanaryConfig(
            steps=[CanaryStep(traffic=t, min_requests=m, dwell_seconds=d) for t, m, d in steps],
            **gates,
        ),
    )


def _rollout(
    config: RolloutConfig | None = None,
    *,
    strategy: str = "canary",
    step: int = 1,
    traffic: float | None = None,
    step_started: float = 1000.0,
    model: str = "churn",
) -> Rollout:
    config = config or _canary((10, 100, 60), (50, 100, 60), (100, 100, 60))
    if traffic is None:
        traffic = config.canary.steps[step - 1].traffic if strategy == "canary" else 50.0
    return Rollout(
        id=uuid.uuid4().hex,
        model=model,
        strategy=strategy,
        state="running",
        champion_version="1",
        candidate_version="2",
        candidate_alias="challenger",
        step=step,
        traffic=traffic,
        step_started=step_started,
        started=step_started,
        ended=None,
        config=config.model_dump(mode="json"),
    )


def _stats(requests: int, errors: int = 0, latency_ms: float = 2.0) -> VariantStats:
    recorder = StatsRecorder("r", 1)
    for i in range(requests):
        recorder.record("v", latency_ms / 1000, i < errors)
    return recorder.snapshot()[1].get("v", VariantStats())


# -- statistics ---------------------------------------------------------------------------------
def test_latency_quantiles_interpolate_inside_buckets_and_merge_across_workers() -> None:
    a, b = StatsRecorder("r", 1), StatsRecorder("r", 1)
    for i in range(1, 1001):  # 1..1000 ms, half in each worker
        (a if i % 2 else b).record("candidate", i / 1000, error=i % 100 == 0)
    merged = a.snapshot()[1]["candidate"] + b.snapshot()[1]["candidate"]
    assert merged.requests == 1000 and merged.errors == 10 and merged.error_rate == 0.01
    assert sum(merged.latency_counts) == 1000 and len(merged.latency_counts) == 24
    assert merged.mean_ms == pytest.approx(500.5)
    # Exact quantiles are 500 and 990 ms; the buckets around them are 300-500 and 750-1000.
    assert 300 <= merged.quantile_ms(0.5) <= 500
    assert merged.quantile_ms(0.5) == pytest.approx(500.0)  # rank 500 ends the 300-500 bucket
    assert 750 < merged.quantile_ms(0.99) <= 1000
    assert merged.quantile_ms(0.99) == pytest.approx(750 + 250 * (990 - 750) / 250)
    assert VariantStats().quantile_ms(0.99) is None and VariantStats().error_rate == 0.0
    slow = StatsRecorder("r", 1)
    slow.record("x", 60.0, False)  # beyond the last finite bound: reported as that bound
    assert slow.snapshot()[1]["x"].quantile_ms(0.99) == LATENCY_BUCKETS_MS[-2]


def test_recording_is_cheap_and_counts_agreement() -> None:
    recorder = StatsRecorder("r", 1)
    n = 100_000
    started = time.perf_counter()
    for _ in range(n):
        recorder.record("candidate", 0.0015, False)
    per_call = (time.perf_counter() - started) / n
    assert per_call < 10e-6, f"{per_call * 1e6:.2f} µs per record"  # ~0.5 µs here
    recorder.record_agreement(True)
    recorder.record_agreement(False)
    changes, snap = recorder.snapshot()
    assert changes == n + 2 and snap["candidate"].requests == n
    assert snap["shadow"].compared == 2 and snap["shadow"].agreed == 1


# -- canary gates -------------------------------------------------------------------------------
GATES = {"max_error_rate": 0.02, "max_p99_ms": 50.0, "max_metric_drop": 0.02, "min_feedback": 30}
CONFIG = _canary((10, 100, 60), (50, 100, 60), (100, 100, 60), **GATES)
NOW = 1000.0 + 61  # dwell passed


@pytest.mark.parametrize(
    ("step", "candidate", "now", "quality", "action", "words"),
    [
        (1, _stats(99), NOW, None, "wait", "99/100 requests, dwell 61/60 s"),
        (1, _stats(150), 1000.0 + 30, None, "wait", "150/100 requests, dwell 30/60 s"),
        (1, _stats(19, errors=19), 1000.0, None, "wait", "19/100 requests"),
        (1, _stats(20, errors=1), 1000.0, None, "rollback", "error rate gate failed"),
        (2, _stats(300, errors=7), NOW, None, "rollback", "7/300 = 2.3%"),
        (1, _stats(99, latency_ms=80), NOW, None, "wait", "99/100"),
        (1, _stats(100, latency_ms=80), 1000.0, None, "rollback", "p99 latency gate failed"),
        (1, _stats(100, errors=2), NOW, None, "advance", "next 50%"),
        (2, _stats(100), NOW, None, "advance", "quality not gated (no prediction log)"),
        (2, _stats(100), NOW, {}, "advance", "quality not gated (0/30 labelled candidate"),
        (3, _stats(100), NOW, None, "promote", "all 3 steps passed"),
        (
            2,
            _stats(100),
            NOW,
            {
                "candidate": Q(40, "accuracy", 0.85, 0.15, 0.1),
                "champion": Q(90, "accuracy", 0.9, 0.1, 0.1),
            },
            "rollback",
            "quality gate failed at step 2/3 (50%): accuracy 0.85 vs champion 0.9 (drop 0.05",
        ),
        (
            3,
            _stats(100),
            NOW,
            {
                "candidate": Q(40, "accuracy", 0.89, 0.11, 0.1),
                "champion": Q(90, "accuracy", 0.9, 0.1, 0.1),
            },
            "promote",
            "accuracy 0.89 vs champion 0.9 (drop 0.01",
        ),
        (
            3,
            _stats(100),
            NOW,
            {
                "candidate": Q(29, "accuracy", 0.5, 0.5, 0.2),
                "champion": Q(90, "accuracy", 0.9, 0.1, 0.1),
            },
            "promote",
            "quality not gated (29/30 labelled candidate predictions)",
        ),
        (
            1,
            _stats(100),
            NOW,
            {"candidate": Q(40, "rmse", 1.5, 2.25, 1.0), "champion": Q(40, "rmse", 1.0, 1.0, 1.0)},
            "rollback",
            "rmse 1.5 vs champion 1 (drop 0.5",  # rmse: lower is better
        ),
        (
            1,
            _stats(100),
            NOW,
            {"candidate": Q(40, "rmse", 0.9, 0.81, 1.0), "champion": Q(40, "rmse", 1.0, 1.0, 1.0)},
            "advance",
            "drop -0.1",
        ),
        (
            1,
            _stats(100),
            NOW,
            {
                "candidate": Q(40, "roc_auc", math.nan, 0.1, 0.1),
                "champion": Q(40, "roc_auc", 0.9, 0.1, 0.1),
            },
            "advance",
            "roc_auc is undefined",
        ),
    ],
)
def test_judge_canary(
    step: int,
    candidate: VariantStats,
    now: float,
    quality: dict[str, Q] | None,
    action: str,
    words: str,
) -> None:
    rollout = _rollout(CONFIG, step=step)
    decision = judge_canary(
        rollout, {"candidate": candidate, "champion": _stats(900)}, quality, now
    )
    assert decision.action == action, decision.reason
    assert words in decision.reason
    details = decision.details
    assert details["candidate"]["requests"] == candidate.requests
    assert details["champion"]["requests"] == 900
    assert details["thresholds"]["max_error_rate"] == 0.02 and details["step"] == step
    if action in ("advance", "promote") or "quality" in words:
        assert details["quality"]["min_feedback"] == 30


def test_early_error_rollback_needs_fewer_requests_when_min_requests_is_small() -> None:
    rollout = _rollout(_canary((10, 5, 60), (100, 5, 60)))
    decision = judge_canary(rollout, {"candidate": _stats(5, errors=1)}, None, 1000.0)
    assert decision.action == "rollback" and "1/5 = 20.0%" in decision.reason


# -- A/B significance ---------------------------------------------------------------------------
def test_ab_two_proportion_z_test_matches_scipy() -> None:
    from scipy import stats

    wrong_cand, n_cand, wrong_champ, n_champ = 30, 400, 58, 420
    cand = Q(n_cand, "accuracy", 1 - wrong_cand / n_cand, wrong_cand / n_cand, 0.0)
    champ = Q(n_champ, "accuracy", 1 - wrong_champ / n_champ, wrong_champ / n_champ, 0.0)
    result = compare_ab(
        champ, cand, metric="accuracy", binary_loss=True, min_samples=200, alpha=0.05
    )
    table = [[wrong_cand, n_cand - wrong_cand], [wrong_champ, n_champ - wrong_champ]]
    chi2, p, _, _ = stats.chi2_contingency(table, correction=False)  # == two-sided z-test
    assert result["p_value"] == pytest.approx(p, rel=1e-9)
    assert result["statistic"] ** 2 == pytest.approx(chi2) and result["statistic"] < 0
    assert result["test"] == "two-proportion z-test" and result["significant"] is True
    assert result["enough"] is True and result["better"] == "candidate"
    assert result["summary"].startswith("the candidate is better: accuracy 0.925 (candidate)")


def test_ab_welch_t_test_matches_scipy() -> None:
    from scipy import stats

    rng = np.random.default_rng(3)
    cand_loss, champ_loss = rng.gamma(2.0, 1.0, 250), rng.gamma(2.0, 1.1, 300)

    def quality(loss: np.ndarray) -> Q:
        return Q(len(loss), "rmse", math.sqrt(loss.mean()), loss.mean(), loss.var(ddof=1))

    result = compare_ab(
        quality(champ_loss),
        quality(cand_loss),
        metric="rmse",
        binary_loss=False,
        min_samples=200,
        alpha=0.05,
    )
    expected = stats.ttest_ind(cand_loss, champ_loss, equal_var=False)
    assert result["test"] == "Welch's t-test"
    assert result["statistic"] == pytest.approx(expected.statistic)
    assert result["p_value"] == pytest.approx(expected.pvalue)
    assert result["significant"] == (expected.pvalue < 0.05)


def test_ab_says_when_the_minimum_sample_is_not_reached() -> None:
    cand, champ = Q(37, "accuracy", 0.9, 0.1, 0.09), Q(250, "accuracy", 0.8, 0.2, 0.16)
    result = compare_ab(
        champ, cand, metric="accuracy", binary_loss=True, min_samples=200, alpha=0.05
    )
    assert result["enough"] is False and result["better"] is None
    assert result["summary"] == ("not enough samples yet: 37/200 labelled candidate predictions")
    assert result["p_value"] is not None  # computed, but not called
    none = compare_ab(None, None, metric="accuracy", binary_loss=True, min_samples=5, alpha=0.05)
    assert none["summary"] == (
        "not enough samples yet: 0/5 labelled candidate predictions, "
        "0/5 labelled champion predictions"
    )
    same = Q(300, "accuracy", 1.0, 0.0, 0.0)
    equal = compare_ab(same, same, metric="accuracy", binary_loss=True, min_samples=5, alpha=0.05)
    assert equal["p_value"] == 1.0 and equal["summary"].startswith("no significant difference")


# -- the shared state, on SQLite and PostgreSQL ---------------------------------------------------
@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[MetadataStore]:
    if request.param == "sqlite":
        url = default_url(tmp_path / ".tessera")
    else:
        url = request.getfixturevalue("postgres_url")
    s = MetadataStore(url)
    yield s
    s.close()


def test_a_store_of_the_previous_revision_is_upgraded(store: MetadataStore) -> None:
    import sqlalchemy as sa
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext

    from tessera.data.metadata.schema import metadata

    if store.sqlite_path is not None:
        store.sqlite_path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(store.url)
    config = Config()
    config.set_main_option(
        "script_location",
        str(
            Path(__import__("tessera.data.metadata", fromlist=["x"]).__file__).parent / "migrations"
        ),
    )
    with engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0002")
    engine.dispose()
    store.record_model_event("churn", "register", version="1", at=1.0)  # opens: upgrades
    assert insert_rollout(store, _rollout())
    with store.engine.connect() as conn:
        assert conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar() == "0003"
        assert compare_metadata(MigrationContext.configure(conn), metadata) == []
    assert [e["action"] for e in store.model_events("churn")] == ["register"]


def test_one_running_rollout_per_model_and_conditional_updates(store: MetadataStore) -> None:
    first = _rollout()
    assert insert_rollout(store, first)
    assert not insert_rollout(store, _rollout())  # the unique index refuses a second
    assert insert_rollout(store, _rollout(model="other"))
    assert running_rollout(store, "churn") == first
    assert update_running(store, first, step=2, traffic=50.0, step_started=2000.0)
    assert not update_running(store, first, step=2)  # read at step 1: someone acted first
    moved = running_rollout(store, "churn")
    assert moved is not None and (moved.step, moved.traffic) == (2, 50.0)
    assert update_running(store, moved, state="aborted", ended=2001.0, traffic=0.0)
    assert running_rollout(store, "churn") is None
    assert insert_rollout(store, _rollout())  # the model may have a new one now


def test_the_judging_lease_goes_to_exactly_one_worker(store: MetadataStore) -> None:
    rollout = _rollout()
    insert_rollout(store, rollout)
    assert acquire_lease(store, rollout, "a:1", 100.0, 5.0)
    assert not acquire_lease(store, rollout, "b:2", 101.0, 5.0)
    assert acquire_lease(store, rollout, "a:1", 104.0, 5.0)  # renewed until 109
    assert not acquire_lease(store, rollout, "b:2", 108.0, 5.0)
    assert acquire_lease(store, rollout, "b:2", 109.5, 5.0)  # a stopped renewing
    assert not acquire_lease(store, rollout, "a:1", 110.0, 5.0)


def test_workers_upsert_cumulative_counters_that_sum(store: MetadataStore) -> None:
    rollout = _rollout()
    insert_rollout(store, rollout)
    write_stats(store, rollout.id, "a:1", 1, {"candidate": _stats(10, errors=1)})
    write_stats(store, rollout.id, "a:1", 1, {"candidate": _stats(30, errors=2)})  # later
    write_stats(store, rollout.id, "b:2", 1, {"candidate": _stats(5), "champion": _stats(50)})
    write_stats(store, rollout.id, "b:2", 2, {"candidate": _stats(7)})
    step1 = read_stats(store, rollout.id, 1)
    assert step1["candidate"].requests == 35 and step1["candidate"].errors == 2
    assert step1["champion"].requests == 50
    assert sum(step1["candidate"].latency_counts) == 35
    assert read_stats(store, rollout.id)["candidate"].requests == 42


# -- the router ---------------------------------------------------------------------------------
def test_bucket_is_the_documented_hash() -> None:
    import xxhash

    assert bucket("abc", "user-1") == xxhash.xxh64_intdigest(b"abc:user-1") / 2**64
    assert 0 <= bucket("abc", "user-1") < 1
    assert bucket("abc", "user-1") != bucket("abd", "user-1")  # salted by the rollout


def test_routing_is_sticky_across_workers_restarts_and_grows_monotonically(
    tmp_path: Path,
) -> None:
    store = MetadataStore(default_url(tmp_path / ".tessera"))
    config = _canary((5, 10, 0), (25, 10, 0), (50, 10, 0), (100, 10, 0))
    rollout = _rollout(config)
    insert_rollout(store, rollout)
    workers = [_runtime(store, None, f"w:{i}", config) for i in range(3)]
    keys = [f"user-{i}" for i in range(20_000)]
    previous: set[str] = set()
    for step, traffic in enumerate((5, 25, 50, 100), start=1):
        for w in workers:
            w.tick()
        assert all(w.current is not None and w.current.step == step for w in workers)
        routes = [[w.route(k, uuid.uuid4().hex) for k in keys] for w in workers]
        assert routes[0] == routes[1] == routes[2]  # the same variant in every worker
        on_candidate = {k for k, v in zip(keys, routes[0], strict=True) if v == "candidate"}
        expected = {k for k in keys if bucket(rollout.id, k) * 100 < traffic}
        assert on_candidate == expected
        assert abs(len(on_candidate) / len(keys) - traffic / 100) < 0.01
        assert previous <= on_candidate  # a key on the candidate stays there
        previous = on_candidate
        if step == 2:  # a restarted worker routes the same
            restarted = _runtime(store, None, "w:0", config)
            restarted.tick()
            assert [restarted.route(k, "r") for k in keys] == routes[0]
        current = running_rollout(store, "churn")
        assert current is not None
        if step < 4:
            update_running(store, current, step=step + 1, traffic=config.canary.steps[step].traffic)
    no_key = [workers[0].route(None, uuid.uuid4().hex) for _ in range(2000)]
    assert no_key.count("candidate") == 2000  # 100%: even keyless requests
    store.close()


def test_keyless_requests_split_by_request_id_and_shadow_mirrors_a_share(tmp_path: Path) -> None:
    store = MetadataStore(default_url(tmp_path / ".tessera"))
    ab = _rollout(RolloutConfig(strategy="ab"), strategy="ab", traffic=30.0)
    shadow = _rollout(RolloutConfig(strategy="shadow"), strategy="shadow", traffic=20.0, model="m")
    insert_rollout(store, ab)
    insert_rollout(store, shadow)
    worker = _runtime(store, None, "w:0", RolloutConfig())
    worker.tick()
    routes = [worker.route(None, uuid.uuid4().hex) for _ in range(20_000)]
    assert abs(routes.count("candidate") / 20_000 - 0.30) < 0.015
    assert not worker.mirror("k", "r")  # not a shadow rollout
    mirror = _runtime(store, None, "w:0", RolloutConfig(), model="m")
    mirror.tick()
    mirrored = [mirror.mirror(f"k{i}", "r") for i in range(20_000)]
    assert abs(sum(mirrored) / 20_000 - 0.20) < 0.015
    assert {mirror.route(f"k{i}", "r") for i in range(100)} == {"champion"}
    store.close()


def test_a_tick_never_raises_and_says_so_once(capsys: pytest.CaptureFixture[str]) -> None:
    store = MetadataStore("postgresql+psycopg://nobody@127.0.0.1:1/none")
    worker = _runtime(store, None, "w:0", RolloutConfig())
    worker.tick()
    worker.tick()
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "rollout of churn" in err[0] and "retrying" in err[0]
    assert worker.current is None and worker.route("k", "r") == "champion"


def _runtime(
    store: MetadataStore,
    registry: Any,
    worker: str,
    config: RolloutConfig,
    *,
    model: str = "churn",
    log_dir: Path | None = None,
) -> RolloutRuntime:
    return RolloutRuntime(store, registry, model, config, worker=worker, log_dir=log_dir)


# -- with a registered model --------------------------------------------------------------------
@pytest.fixture(scope="module")
def registered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A project whose model `cancer` has version 1 (@champion) and 2 (@challenger)."""
    return cancer_project(tmp_path_factory.mktemp("rollout") / "proj", versions=2).root


@pytest.fixture
def project(registered: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """The registered project with no rollout, @champion at 1 and @challenger at 2."""
    from tessera.cli.model_cmds import open_registry
    from tessera.data.metadata.schema import model_events, rollout_stats, rollouts

    monkeypatch.chdir(registered)
    registry = open_registry()
    store = registry.records
    yield {"root": registered, "registry": registry, "store": store}
    registry.set_alias("cancer", "champion", "1")
    registry.set_alias("cancer", "challenger", "2")
    with store.engine.begin() as conn:
        conn.execute(rollout_stats.delete())
        conn.execute(rollouts.delete())
        conn.execute(
            model_events.delete().where(
                model_events.c.action.like("rollout_%") | model_events.c.reason.like("% rollout %")
            )
        )
    store.close()


def _traffic(
    workers: list[RolloutRuntime],
    requests: int,
    *,
    fails: Callable[[str], bool] = lambda variant: False,
    seconds: float = 0.002,
    start: int = 0,
) -> dict[str, int]:
    """Send requests with sticky keys, spread over the workers; variant -> count."""
    counts: dict[str, int] = {}
    for i in range(start, start + requests):
        worker = workers[i % len(workers)]
        variant = worker.route(f"user-{i % 5000}", uuid.uuid4().hex)
        worker.record(variant, seconds if variant == "champion" else seconds * 2, fails(variant))
        counts[variant] = counts.get(variant, 0) + 1
    return counts


def test_two_workers_drive_a_canary_to_promotion(project: dict[str, Any]) -> None:
    store, registry = project["store"], project["registry"]
    config = _canary((10, 30, 0), (50, 30, 0), (100, 30, 0))
    rollout = start_rollout(store, registry, "cancer", config, reason="new trees")
    assert (rollout.champion_version, rollout.candidate_version) == ("1", "2")
    a, b = (_runtime(store, registry, f"host:{i}", config, model="cancer") for i in (1, 2))
    a.tick()
    b.tick()
    assert a.leader and not b.leader
    sent = _traffic([a, b], 600)  # ~60 candidate requests, ~30 per worker
    b.tick()
    a.tick()  # the leader judges the sum of both workers' counters
    step = store.model_events("cancer", actions=["rollout_step"])
    assert len(step) == 1 and step[0]["details"]["candidate"]["requests"] == sent["candidate"]
    assert step[0]["details"]["next_traffic"] == 50.0 and step[0]["actor"].startswith("tessera")
    assert a.current is not None and (a.current.step, a.current.traffic) == (2, 50.0)
    b.tick()
    assert b.current is not None and b.current.step == 2
    for round_ in range(1, 3):
        _traffic([a, b], 200, start=600 * round_)
        b.tick()
        a.tick()
    ended = [e for e in store.model_events("cancer") if e["action"].startswith("rollout_")]
    assert [e["action"] for e in ended] == [
        "rollout_start",
        "rollout_step",
        "rollout_step",
        "rollout_promote",
    ]
    assert ended[-1]["reason"].startswith("all 3 steps passed")
    assert ended[-1]["details"]["candidate"]["requests"] >= 30
    assert registry.alias("cancer", "champion") == "2"  # the alias really moved
    assert registry.alias("cancer", "challenger") is None
    promoted = [
        e for e in store.model_events("cancer", alias="champion") if e["action"] == "promote"
    ]
    assert promoted[-1]["version"] == "2" and promoted[-1]["previous"] == "1"
    assert promoted[-1]["details"]["rollout_id"] == rollout.id
    assert a.current is None and a.route("user-1", "r") == "champion"
    b.tick()
    assert b.current is None
    status = rollout_status(store, registry, "cancer", log_dir=None)
    assert orjson.loads(orjson.dumps(status)) == status  # JSON as the admin API sends it
    assert status["rollout"]["state"] == "promoted" and status["rollout"]["traffic"] == 100.0
    assert status["summary"].startswith("promoted: all 3 steps passed")


def test_a_failing_candidate_is_rolled_back_and_the_champion_stays(
    project: dict[str, Any],
) -> None:
    store, registry = project["store"], project["registry"]
    config = _canary((20, 100, 60), (100, 100, 60), max_error_rate=0.05)
    rollout = start_rollout(store, registry, "cancer", config)
    a, b = (_runtime(store, registry, f"host:{i}", config, model="cancer") for i in (1, 2))
    a.tick()
    b.tick()
    _traffic([a, b], 200, fails=lambda variant: variant == "candidate")
    b.tick()
    a.tick()
    events = store.model_events("cancer", actions=["rollout_rollback"])
    assert len(events) == 1 and "error rate gate failed at step 1/2 (20%)" in events[0]["reason"]
    assert events[0]["details"]["candidate"]["error_rate"] == 1.0
    assert registry.alias("cancer", "champion") == "1"
    assert registry.alias("cancer", "challenger") == "2"
    b.tick()
    assert a.current is None and b.current is None
    assert {b.route(f"user-{i}", "r") for i in range(200)} == {"champion"}
    status = rollout_status(store, registry, "cancer", log_dir=None)
    assert status["rollout"]["id"] == rollout.id and status["rollout"]["state"] == "rolled_back"
    assert status["rollout"]["traffic"] == 0.0
    assert [d["action"] for d in status["decisions"]] == ["rollout_start", "rollout_rollback"]


def test_a_slow_candidate_is_rolled_back_on_p99(project: dict[str, Any]) -> None:
    store, registry = project["store"], project["registry"]
    config = _canary((50, 40, 0), (100, 40, 0), max_p99_ms=20.0)
    start_rollout(store, registry, "cancer", config)
    worker = _runtime(store, registry, "host:1", config, model="cancer")
    worker.tick()
    _traffic([worker], 200, seconds=0.015)  # the candidate takes 30 ms
    worker.tick()
    [event] = store.model_events("cancer", actions=["rollout_rollback"])
    assert "p99 latency gate failed" in event["reason"] and "max 20 ms" in event["reason"]
    assert event["details"]["candidate"]["p99_ms"] > 20
    assert registry.alias("cancer", "champion") == "1"


def test_the_lease_moves_when_its_leader_stops(project: dict[str, Any]) -> None:
    store, registry = project["store"], project["registry"]
    config = RolloutConfig(tick_seconds=1.0)
    start_rollout(store, registry, "cancer", config)
    a, b = (_runtime(store, registry, f"host:{i}", config, model="cancer") for i in (1, 2))
    t0 = time.time()
    a.tick(t0)
    b.tick(t0)
    assert (a.leader, b.leader) == (True, False)
    b.tick(t0 + 4)
    assert not b.leader  # a's lease lasts 5 ticks
    b.tick(t0 + 5.5)
    a.tick(t0 + 6)
    assert (a.leader, b.leader) == (False, True)


def test_a_bad_quality_candidate_is_rolled_back_from_the_prediction_log(
    project: dict[str, Any], tmp_path: Path
) -> None:
    import pandas as pd

    from tessera.serving.predlog import FeedbackLog, PredictionLog

    store, registry = project["store"], project["registry"]
    config = _canary((50, 40, 0), (100, 40, 0), min_feedback=40, max_metric_drop=0.05)
    rollout = start_rollout(store, registry, "cancer", config)
    log_dir = tmp_path / "log"
    worker = _runtime(store, registry, "host:1", config, model="cancer", log_dir=log_dir)
    worker.tick()
    predictions = PredictionLog(log_dir, worker="host:1", flush_seconds=60)
    feedback = FeedbackLog(log_dir, worker="host:1", flush_seconds=60)
    labels = []
    right = {"champion": 0, "candidate": 0}
    now = time.time()
    for i in range(200):
        request_id = uuid.uuid4().hex
        variant = worker.route(f"user-{i}", request_id)
        worker.record(variant, 0.002, False)
        truth = i % 2
        predicted = truth if variant == "champion" or i % 5 else 1 - truth  # candidate: ~80%
        right[variant] += predicted == truth
        version = "1" if variant == "champion" else "2"
        predictions.record(
            request_id=request_id,
            model="cancer",
            version=version,
            variant=variant,
            rollout_id=rollout.id,
            latency_ms=2.0,
            frame=pd.DataFrame({"x": [float(i)]}),
            predictions=np.array([predicted]),
            probabilities=None,
            time=now,
        )
        labels.append((request_id, 0, truth))
    feedback.record(labels, time=now)
    predictions.close()
    feedback.close()
    worker.tick()
    [event] = store.model_events("cancer", actions=["rollout_rollback"])
    answered = read_stats(store, rollout.id, 1)["candidate"].requests
    assert answered >= 40
    accuracy = right["candidate"] / answered
    assert (
        f"quality gate failed at step 1/2 (50%): accuracy {accuracy:.4g} vs champion 1 "
        in event["reason"]
    )
    quality = event["details"]["quality"]
    assert quality["champion"]["value"] == 1.0 and quality["candidate"]["value"] == accuracy
    assert quality["drop"] == pytest.approx(1 - accuracy)
    assert registry.alias("cancer", "champion") == "1"


def test_ab_status_compares_the_variants_on_the_prediction_log(
    project: dict[str, Any], tmp_path: Path
) -> None:
    import pandas as pd
    from scipy import stats

    from tessera.serving.predlog import FeedbackLog, PredictionLog

    store, registry = project["store"], project["registry"]
    config = RolloutConfig(strategy="ab", ab={"weight": 50, "min_samples": 100})
    rollout = start_rollout(store, registry, "cancer", config, strategy="ab")
    assert rollout.strategy == "ab" and rollout.traffic == 50.0
    log_dir = tmp_path / "log"
    worker = _runtime(store, registry, "host:1", config, model="cancer", log_dir=log_dir)
    worker.tick()
    predictions = PredictionLog(log_dir, worker="host:1", flush_seconds=60)
    feedback = FeedbackLog(log_dir, worker="host:1", flush_seconds=60)
    rng = np.random.default_rng(0)
    wrong = {"champion": 0, "candidate": 0}
    seen = {"champion": 0, "candidate": 0}
    labels = []
    now = time.time()
    for i in range(600):
        request_id = uuid.uuid4().hex
        variant = worker.route(f"user-{i}", request_id)
        worker.record(variant, 0.002, False)
        truth = int(rng.integers(0, 2))
        miss = rng.random() < (0.10 if variant == "candidate" else 0.25)
        wrong[variant] += int(miss)
        seen[variant] += 1
        predictions.record(
            request_id=request_id,
            model="cancer",
            version="2" if variant == "candidate" else "1",
            variant=variant,
            rollout_id=rollout.id,
            latency_ms=2.0,
            frame=pd.DataFrame({"x": [float(i)]}),
            predictions=np.array([1 - truth if miss else truth]),
            probabilities=None,
            time=now,
        )
        labels.append((request_id, 0, truth))
    feedback.record(labels, time=now)
    predictions.close()
    feedback.close()
    worker.tick()
    status = rollout_status(store, registry, "cancer", log_dir=log_dir)
    assert orjson.loads(orjson.dumps(status)) == status
    ab = status["ab"]
    table = [
        [wrong["candidate"], seen["candidate"] - wrong["candidate"]],
        [wrong["champion"], seen["champion"] - wrong["champion"]],
    ]
    assert ab["p_value"] == pytest.approx(stats.chi2_contingency(table, correction=False)[1])
    assert ab["candidate"]["n"] == seen["candidate"] and ab["enough"] is True
    assert ab["better"] == "candidate" and status["summary"].startswith("the candidate is better")
    variants = status["variants"]
    assert variants["candidate"]["requests"] == seen["candidate"]
    assert variants["candidate"]["quality"]["value"] == pytest.approx(
        1 - wrong["candidate"] / seen["candidate"]
    )
    assert status["decisions"][0]["action"] == "rollout_start"
    assert [w["worker"] for w in status["workers"]] == ["host:1"]


def test_shadow_status_shows_agreement(project: dict[str, Any]) -> None:
    store, registry = project["store"], project["registry"]
    config = RolloutConfig(strategy="shadow", shadow={"share": 100})
    start_rollout(store, registry, "cancer", config)
    worker = _runtime(store, registry, "host:1", config, model="cancer")
    worker.tick()
    assert worker.mirror("k", "r") and worker.route("k", "r") == "champion"
    for i in range(50):
        worker.record("champion", 0.001, False)
        worker.record("shadow", 0.003, False)
        worker.record_agreement(i % 10 != 0)
    worker.tick()
    status = rollout_status(store, registry, "cancer", log_dir=None)
    assert status["shadow"]["compared"] == 50 and status["shadow"]["agreed"] == 45
    assert status["summary"] == "the shadow agreed with the champion on 45/50 predictions (90.0%)"
    assert list(status["variants"]) == ["champion", "shadow"]
    assert status["variants"]["shadow"]["requests"] == 50


def test_operations_refuse_what_cannot_be_done(project: dict[str, Any]) -> None:
    from tessera.registry.models import RegistryError

    store, registry = project["store"], project["registry"]
    config = RolloutConfig()
    with pytest.raises(RolloutError, match="no candidate: cancer has no @nosuch"):
        start_rollout(store, registry, "cancer", config, candidate="nosuch")
    with pytest.raises(RolloutError, match="no candidate: cancer has no version 9"):
        start_rollout(store, registry, "cancer", config, candidate="9")
    with pytest.raises(RolloutError, match="candidate is the champion: cancer/1 is version 1"):
        start_rollout(store, registry, "cancer", config, candidate="1")
    with pytest.raises(RolloutError, match="unknown strategy 'blue'"):
        start_rollout(store, registry, "cancer", config, strategy="blue")
    rmse = RolloutConfig(canary={"metric": "rmse"})
    with pytest.raises(RolloutError, match="'rmse' does not apply to a classification model"):
        start_rollout(store, registry, "cancer", rmse)
    with pytest.raises(RegistryError, match=r"no registered model 'cancr'.*cancer"):
        start_rollout(store, registry, "cancr", config)
    with pytest.raises(RolloutError, match="no rollout of cancer is running"):
        promote_rollout(store, registry, "cancer", reason="x")
    started = start_rollout(store, registry, "cancer", config, candidate="@challenger")
    with pytest.raises(RolloutError, match=f"already running \\(id {started.id}, canary step 1/4"):
        start_rollout(store, registry, "cancer", config)
    aborted = abort_rollout(store, "cancer", reason="changed my mind")
    assert aborted.state == "aborted" and aborted.traffic == 0.0 and aborted.ended is not None
    with pytest.raises(RolloutError, match=f"the last one, {started.id}, is aborted"):
        abort_rollout(store, "cancer", reason="again")
    assert registry.alias("cancer", "champion") == "1"


def test_manual_promotion_moves_the_alias(project: dict[str, Any]) -> None:
    store, registry = project["store"], project["registry"]
    start_rollout(store, registry, "cancer", RolloutConfig(strategy="ab"))
    done = promote_rollout(store, registry, "cancer", actor="ops@host", reason="B wins")
    assert done.state == "promoted" and done.reason == "B wins"
    assert registry.alias("cancer", "champion") == "2"
    [event] = store.model_events("cancer", actions=["rollout_promote"])
    assert event["actor"] == "ops@host" and event["details"]["manual"] is True


# -- the command line ---------------------------------------------------------------------------
def test_cli_start_status_promote_abort(
    project: dict[str, Any], tessera: Callable[..., Result]
) -> None:
    root = project["root"]
    result = tessera("rollout", "status", cwd=root)
    assert result.code == 0 and "No rollout of cancer yet" in result.out
    result = tessera("rollout", "start", "-m", "try the new trees", cwd=root)
    assert result.code == 0, result.err
    assert "Started canary step 1/4 at 5% of cancer: version 2 (@challenger)" in result.out
    result = tessera("rollout", "start", cwd=root)
    assert result.code == 2 and "a rollout of cancer is already running" in result.err
    assert "Traceback" not in result.err
    result = tessera("rollout", "status", cwd=root)
    assert result.code == 0
    for words in (
        "cancer: canary step 1/4 at 5%, running",
        "candidate  version 2 (@challenger)",
        "step       1/4 at 5%: candidate 0/100 requests, dwell",
        "errors 0.0% (max 1%), p99 - (max 100 ms)",
        "next       judged after 100 more candidate requests",
        "try the new trees",
    ):
        assert words in result.out, result.out
    data = tessera("rollout", "status", "cancer", "--json", cwd=root).json()
    assert data["rollout"]["strategy"] == "canary" and data["canary"]["step"] == 1
    assert data["canary"]["decision"]["action"] == "wait"
    result = tessera("rollout", "abort", "-m", "not today", cwd=root)
    assert result.code == 0 and "Aborted the canary rollout" in result.out
    result = tessera("rollout", "abort", "-m", "again", cwd=root)
    assert result.code == 2 and "no rollout of cancer is running" in result.err
    result = tessera("rollout", "start", "--strategy", "ab", "--candidate", "2", cwd=root)
    assert result.code == 0 and "A/B at 50%" in result.out
    result = tessera("rollout", "status", cwd=root)
    assert "not enough samples yet: 0/200 labelled candidate predictions" in result.out
    data = tessera("rollout", "promote", "-m", "B wins", "--json", cwd=root).json()
    assert data["state"] == "promoted" and data["candidate_version"] == "2"
    assert project["registry"].alias("cancer", "champion") == "2"
    result = tessera("rollout", "status", cwd=root)
    assert "promoted" in result.out and "B wins" in result.out


def test_cli_errors_are_one_line_with_exit_code_2(
    project: dict[str, Any], tessera: Callable[..., Result]
) -> None:
    root = project["root"]
    for args, words in (
        (("start", "--candidate", "1"), "candidate is the champion"),
        (("start", "--candidate", "nosuch"), "no candidate: cancer has no @nosuch"),
        (("start", "--strategy", "blue"), "unknown strategy 'blue'"),
        (("promote", "-m", "x"), "no rollout of cancer is running"),
        (("status", "nosuch"), "no registered model 'nosuch'"),
    ):
        result = tessera("rollout", *args, cwd=root)
        assert result.code == 2, (args, result.out, result.err)
        assert words in result.err and "Traceback" not in result.err
    result = tessera("rollout", "start", "--json", "--candidate", "1", cwd=root)
    assert result.code == 2 and result.json()["status"] == "error"
