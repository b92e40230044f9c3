"""Small tables shared by the transformation tests."""

from __future__ import annotations

import pandas as pd
import pytest


@pytest.fixture
def events() -> pd.DataFrame:
    """Two customers' events, deliberately not in time order."""
    return pd.DataFrame(
        {
            "customer_id": ["b", "a", "b", "a", "b", "a"],
            "event_time": pd.to_datetime(
                ["2024-01-03", "2024-01-02", "2024-01-01", "2024-01-01", "2024-01-02", "2024-01-03"]
            ),
            "amount": [30.0, 20.0, 10.0, 1.0, 20.0, 300.0],
        }
    )


@pytest.fixture
def people() -> pd.DataFrame:
    """A small mixed-type table."""
    return pd.DataFrame(
        {
            "name": ["Ann", "Bob", "Cid"],
            "age": [31, 45, 27],
            "income": [52000.0, None, 38000.0],
        }
    )
