"""A synthetic, deterministic customer-activity event log for the ``churn`` example.

Each customer has one row per monthly activity snapshot (2 to 24 of them, about 12 on average)
over two years. A latent dissatisfaction drives more support tickets, late payments and lower
satisfaction; most customers who churn also use the service less in their last months (and a few
loyal ones do too). The ``churned`` label is learnable from the features, not noise.

The raw file is deliberately dirty, like real exports: a few percent of missing values in several
columns, about 1 % exact duplicate rows, outliers (negative charges, absurd usage, ages of 999) and
inconsistent case or whitespace in categorical values (``" Premium"``, ``"premium"``) and a legacy
label (``"iPhone"`` for ``"iOS"``).

The same ``seed`` gives the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

#: Default size: about 60,000 events.
N_CUSTOMERS = 5_000
SEED = 7
START = "2023-01-01"
WINDOW_DAYS = 730

PLANS = ("Basic", "Standard", "Premium")
REGIONS = ("North", "South", "East", "West", "Central")
DEVICES = ("Android", "iOS", "Web", "Desktop")
PAYMENTS = ("credit_card", "bank_transfer", "paypal", "electronic_check")
CONTRACTS = ("month-to-month", "one_year", "two_year")

#: Fraction of missing values injected per column.
MISSING_RATES = {
    "data_usage_gb": 0.03,
    "satisfaction_score": 0.05,
    "call_minutes": 0.02,
    "payment_method": 0.02,
    "device": 0.015,
    "age": 0.01,
}
DUPLICATE_RATE = 0.01

COLUMNS = (
    "customer_id",
    "event_time",
    "plan",
    "region",
    "device",
    "payment_method",
    "contract",
    "paperless_billing",
    "age",
    "tenure_months",
    "monthly_charges",
    "data_usage_gb",
    "call_minutes",
    "num_logins",
    "support_tickets",
    "late_payments",
    "satisfaction_score",
    "churned",
)


def generate_events(n_customers: int = N_CUSTOMERS, seed: int = SEED) -> pd.DataFrame:
    """The raw event log (dirty, unsorted duplicates included), as a DataFrame.

    Args:
        n_customers: number of customers; the log has about 12 rows per customer.
        seed: seed of ``numpy.random.default_rng``; the same seed gives the same rows.
    """
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    n = n_customers

    # Customers: static attributes and a latent dissatisfaction ``u``.
    plan = rng.choice(np.array(PLANS, dtype=object), n, p=[0.45, 0.35, 0.20])
    region = rng.choice(np.array(REGIONS, dtype=object), n, p=[0.22, 0.24, 0.18, 0.21, 0.15])
    device = rng.choice(np.array(DEVICES, dtype=object), n, p=[0.42, 0.33, 0.15, 0.10])
    payment = rng.choice(np.array(PAYMENTS, dtype=object), n, p=[0.35, 0.25, 0.20, 0.20])
    contract = rng.choice(np.array(CONTRACTS, dtype=object), n, p=[0.50, 0.30, 0.20])
    paperless = rng.choice(np.array(["yes", "no"], dtype=object), n, p=[0.6, 0.4])
    age = np.clip(rng.normal(42, 13, n), 18, 85).round()
    tenure0 = rng.integers(0, 60, n)
    u = rng.normal(0.0, 1.0, n)

    logit = (
        -1.9
        + 0.9 * u
        + 1.0 * (contract == "month-to-month")
        - 0.9 * (contract == "two_year")
        + 0.4 * (payment == "electronic_check")
        + 0.3 * (plan == "Basic")
        - 0.02 * (tenure0 - 24)
        + rng.normal(0.0, 0.3, n)
    )
    churned = (rng.random(n) < 1.0 / (1.0 + np.exp(-logit))).astype(np.int64)

    plan_price = np.select([plan == "Basic", plan == "Standard"], [29.99, 54.99], 89.99)
    plan_usage = np.select([plan == "Basic", plan == "Standard"], [8.0, 20.0], 45.0)
    charge_extra = rng.normal(0.0, 6.0, n)
    usage_base = plan_usage * rng.lognormal(0.0, 0.35, n)
    minutes_base = rng.gamma(4.0, 60.0, n)
    logins_base = rng.gamma(3.0, 5.0, n) * np.exp(-0.25 * u)
    # How much usage fades in the last months: most churners fade, and some loyal customers too
    # (holidays, a second phone), so fading is a signal, not a giveaway.
    fades = rng.random(n) < np.where(churned == 1, 0.7, 0.15)
    fade = fades * rng.uniform(0.2, 0.7, n)

    # Events: about one per month per customer.
    n_events = np.clip(rng.poisson(11, n) + 1, 2, 24)
    total = int(n_events.sum())
    cust = np.repeat(np.arange(n), n_events)
    first = np.repeat(np.cumsum(n_events) - n_events, n_events)
    k = np.arange(total) - first
    progress = k / np.maximum(n_events[cust] - 1, 1)
    start_day = rng.integers(0, np.maximum(WINDOW_DAYS - 30 * n_events, 1) + 1, n)
    day = start_day[cust] + 30 * k + rng.integers(-3, 4, total)
    seconds = np.clip(day, 0, WINDOW_DAYS - 1) * 86_400 + rng.integers(6 * 3600, 23 * 3600, total)
    event_time = np.datetime64(START, "s") + seconds.astype("timedelta64[s]")

    uc, churn_e, fade_e = u[cust], churned[cust], fade[cust]
    usage_mult = 1.0 - fade_e * progress**2
    monthly_charges = (plan_price[cust] + charge_extra[cust] + rng.normal(0, 2.0, total)).round(2)
    data_usage = (usage_base[cust] * usage_mult * rng.gamma(8.0, 1 / 8.0, total)).round(2)
    call_minutes = (minutes_base[cust] * usage_mult * rng.gamma(6.0, 1 / 6.0, total)).round(1)
    num_logins = rng.poisson(logins_base[cust] * usage_mult)
    support_tickets = rng.poisson(np.exp(-1.7 + 0.5 * uc + 0.6 * churn_e * progress))
    late_rate = 0.06 * np.exp(0.6 * uc) * np.where(payment[cust] == "electronic_check", 2.0, 1.0)
    late_payments = rng.poisson(late_rate)
    satisfaction = np.clip(
        np.rint(3.7 - 0.6 * uc - 0.4 * churn_e * progress + rng.normal(0, 0.7, total)), 1, 5
    )

    cols: dict[str, Any] = {
        "customer_id": np.array([f"C{i:05d}" for i in range(1, n + 1)], dtype=object)[cust],
        "event_time": event_time,
        "plan": plan[cust].copy(),
        "region": region[cust].copy(),
        "device": device[cust].copy(),
        "payment_method": payment[cust].copy(),
        "contract": contract[cust].copy(),
        "paperless_billing": paperless[cust],
        "age": age[cust].copy(),
        "tenure_months": tenure0[cust] + k,
        "monthly_charges": monthly_charges,
        "data_usage_gb": data_usage,
        "call_minutes": call_minutes,
        "num_logins": num_logins,
        "support_tickets": support_tickets,
        "late_payments": late_payments,
        "satisfaction_score": satisfaction,
        "churned": churn_e,
    }
    _dirty(rng, cols, total)

    df = pd.DataFrame(cols)
    for name in ("age", "satisfaction_score"):
        df[name] = df[name].astype("Int64")
    dup = np.flatnonzero(rng.random(total) < DUPLICATE_RATE)
    df = pd.concat([df, df.iloc[dup]], ignore_index=True)
    # A log is ordered by time; a duplicate lands next to its original (stable sort).
    return df.sort_values("event_time", kind="stable", ignore_index=True)


def _dirty(rng: np.random.Generator, cols: dict[str, Any], total: int) -> None:
    """Inject inconsistent spelling, outliers and missing values, in place."""
    import numpy as np

    def pick(rate: float) -> np.ndarray:
        return np.flatnonzero(rng.random(total) < rate)

    # The old mobile app reported iOS devices as "iPhone".
    device = cols["device"]
    device[(device == "iOS") & (rng.random(total) < 0.2)] = "iPhone"
    for name, rate in (("plan", 0.06), ("region", 0.03), ("device", 0.03)):
        rows = pick(rate)
        variant = rng.integers(0, 4, rows.size)
        values = cols[name]
        for row, v in zip(rows, variant, strict=True):
            text = values[row]
            values[row] = (f" {text}", text.lower(), f"{text} ", text.upper())[v]

    cols["monthly_charges"][pick(0.003)] *= -1
    cols["data_usage_gb"][pick(0.002)] = 9999.99
    cols["age"][pick(0.003)] = 999

    for name, rate in MISSING_RATES.items():
        values = cols[name]
        rows = pick(rate)
        if values.dtype == object:
            values[rows] = None
        else:
            values[rows] = np.nan


def write_events(path: Path, n_customers: int = N_CUSTOMERS, seed: int = SEED) -> Path:
    """Generate the event log and write it as CSV to ``path`` (parents created)."""
    df = generate_events(n_customers, seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(path, index=False, lineterminator="\n", date_format="%Y-%m-%d %H:%M:%S")
    return path
