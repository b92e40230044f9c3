"""The model registry: versions, aliases, quality gates, audit trail, packaging."""
