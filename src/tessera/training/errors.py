"""Errors about trained models (exit code 1: the work failed, not the configuration)."""

from __future__ import annotations

from tessera.errors import TesseraError


class ModelError(TesseraError):
    """A model table cannot be used: wrong shape, unknown format, unreadable bytes."""


class ModelIntegrityError(ModelError):
    """The model's bytes do not match the sha256 recorded next to them."""


class UntrustedModelError(ModelError):
    """The serialized model contains types outside the reviewed list of trusted types."""
