"""Data: content fingerprints, the content-addressed artifact store, file hashing."""

from tessera.data.errors import CorruptArtifactError, DataError
from tessera.data.hashing import FileHasher, hash_bytes, hash_json

__all__ = ["CorruptArtifactError", "DataError", "FileHasher", "hash_bytes", "hash_json"]
