"""The content-addressed artifact store.

Layout under the store root (``.tessera/cache`` by default)::

    objects/ab/abcdef....parquet   one file per distinct table, named by its fingerprint
    keys/12/1234....json           stage cache entries: cache key -> output fingerprints

Objects are written once, atomically, and verified against their fingerprint on every read.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from tessera.data.atomic import atomic_write, atomic_write_text
from tessera.data.errors import CorruptArtifactError, DataError

if TYPE_CHECKING:
    import pyarrow as pa

SUFFIX = ".parquet"


class ArtifactStore:
    """Tables by fingerprint, and stage results by cache key, under one directory."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "objects"
        self.keys = root / "keys"

    # -- objects ---------------------------------------------------------------------------
    def object_path(self, fingerprint: str) -> Path:
        return self.objects / fingerprint[:2] / f"{fingerprint}{SUFFIX}"

    def has(self, fingerprint: str) -> bool:
        return self.object_path(fingerprint).is_file()

    def put_table(self, table: pa.Table, fingerprint: str) -> Path:
        """Store ``table`` under ``fingerprint`` unless an object with that id already exists."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.object_path(fingerprint)
        if path.is_file():
            return path
        dictionary = [
            f.name
            for f in table.schema
            if pa.types.is_string(f.type)
            or pa.types.is_large_string(f.type)
            or pa.types.is_dictionary(f.type)
        ]

        def write(tmp: str) -> None:
            pq.write_table(
                table, tmp, compression="zstd", compression_level=1, use_dictionary=dictionary
            )

        try:
            atomic_write(path, write)
        except OSError as exc:
            raise DataError(f"cannot write artifact {path}: {exc.strerror or exc}") from exc
        return path

    def get_table(self, fingerprint: str, *, verify: bool = True) -> pa.Table:
        """Read a stored table, checking that its content still hashes to ``fingerprint``."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        from tessera.data.fingerprint import fingerprint_table

        path = self.object_path(fingerprint)
        try:
            table = pq.read_table(path)
        except FileNotFoundError:
            raise DataError(f"artifact {fingerprint} is not in the store ({path})") from None
        except (OSError, pa.ArrowException) as exc:
            raise CorruptArtifactError(
                str(path), fingerprint, f"unreadable ({exc})", self._quarantine(path)
            ) from exc
        if verify:
            got = fingerprint_table(table)
            if got != fingerprint:
                raise CorruptArtifactError(str(path), fingerprint, got, self._quarantine(path))
        return table

    def _quarantine(self, path: Path) -> Path | None:
        """Move a damaged object aside, so the stage that made it is recomputed next time."""
        target = self.root / "corrupt" / path.name
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            path.replace(target)
        except OSError:
            return None
        return target

    # -- raw files -------------------------------------------------------------------------
    def file_path(self, digest: str) -> Path:
        return self.root / "files" / digest[:2] / digest

    def put_file(self, source: Path, digest: str) -> Path:
        """Keep a copy of a raw input file under its content hash (once)."""
        import shutil

        def copy(tmp: str) -> None:
            shutil.copyfile(source, tmp)

        path = self.file_path(digest)
        if not path.is_file():
            try:
                atomic_write(path, copy)
            except OSError as exc:
                raise DataError(f"cannot keep a copy of {source}: {exc.strerror or exc}") from exc
        return path

    # -- cache keys ------------------------------------------------------------------------
    def key_path(self, key: str) -> Path:
        return self.keys / key[:2] / f"{key}.json"

    def get_key(self, key: str) -> dict[str, Any] | None:
        """The recorded result of a stage run under ``key``, or None."""
        try:
            value = json.loads(self.key_path(key).read_text())
        except (OSError, ValueError):
            return None
        return value if isinstance(value, dict) else None

    def put_key(self, key: str, entry: dict[str, Any]) -> None:
        atomic_write_text(self.key_path(key), json.dumps(entry, sort_keys=True))
