"""Training: model specs in YAML, the ``train``, ``evaluate`` and ``predict`` stages.

Importing this package (and :mod:`tessera.training.stages`, which discovery imports for every
command) stays cheap: scikit-learn, LightGBM, skops, pandas and numpy load only when a spec's
estimator is checked or a stage runs. See docs/training.md.
"""

from __future__ import annotations

from tessera.training.errors import ModelError, ModelIntegrityError, UntrustedModelError
from tessera.training.modelio import TRUSTED_TYPES, load_model, model_info
from tessera.training.spec import ModelSpec, load_spec

__all__ = [
    "TRUSTED_TYPES",
    "ModelError",
    "ModelIntegrityError",
    "ModelSpec",
    "UntrustedModelError",
    "load_model",
    "load_spec",
    "model_info",
]
