"""Experiment tracking: MLflow behind one adapter (runs, lineage tags, models). See
docs/training.md."""

from __future__ import annotations

from tessera.tracking.client import Tracker, lineage_tags

__all__ = ["Tracker", "lineage_tags"]
