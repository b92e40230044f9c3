"""Online serving of registered models: ``tessera serve`` (HTTP prediction API)."""
