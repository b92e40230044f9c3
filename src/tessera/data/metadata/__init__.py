"""The metadata store: runs, stage runs and lineage, through SQLAlchemy (SQLite or PostgreSQL)."""

from tessera.data.metadata.store import HEAD_REVISION, MetadataStore, StageRecord, default_url

__all__ = ["HEAD_REVISION", "MetadataStore", "StageRecord", "default_url"]
