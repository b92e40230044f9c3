"""The artifact store: atomic writes, verified reads, file hashing with a stat cache."""

from __future__ import annotations

import os
import time

import pyarrow as pa
import pytest

from tessera.data.errors import CorruptArtifactError, DataError
from tessera.data.fingerprint import fingerprint_table
from tessera.data.hashing import FileHasher, hash_file
from tessera.data.store import ArtifactStore


def test_put_get_round_trip(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    table = pa.table({"x": [1, 2, 3], "s": ["a", "b", None]})
    fp = fingerprint_table(table)
    path = store.put_table(table, fp)
    assert path == store.object_path(fp) and store.has(fp)
    assert store.get_table(fp).equals(table)
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no temp files left


def test_corrupted_artifact_is_detected(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    table = pa.table({"x": list(range(1000))})
    fp = fingerprint_table(table)
    path = store.put_table(table, fp)
    other = pa.table({"x": list(range(1, 1001))})
    store.put_table(other, "0" * 32)
    os.replace(store.object_path("0" * 32), path)  # right file name, wrong content
    with pytest.raises(CorruptArtifactError, match="is corrupted") as info:
        store.get_table(fp)
    assert not path.exists()  # moved aside: the next run recomputes it
    assert info.value.moved_to is not None and info.value.moved_to.is_file()
    store.put_table(table, fp)
    path.write_bytes(path.read_bytes()[:100])  # truncated
    with pytest.raises(CorruptArtifactError, match="will run again"):
        store.get_table(fp)


def test_missing_artifact(tmp_path) -> None:
    with pytest.raises(DataError, match="not in the store"):
        ArtifactStore(tmp_path).get_table("ab" * 16)


def test_key_entries(tmp_path) -> None:
    store = ArtifactStore(tmp_path)
    assert store.get_key("k" * 32) is None
    store.put_key("k" * 32, {"outputs": {"out": "x"}})
    assert store.get_key("k" * 32) == {"outputs": {"out": "x"}}
    store.key_path("k" * 32).write_text("{not json")
    assert store.get_key("k" * 32) is None  # a damaged entry is a cache miss, not a crash


def test_file_hasher_uses_stat_cache_and_sees_edits(tmp_path) -> None:
    f = tmp_path / "data.csv"
    f.write_text("a,b\n1,2\n")
    old = time.time_ns() - 10_000_000_000
    os.utime(f, ns=(old, old))
    cache = tmp_path / "cache.json"
    hasher = FileHasher(cache)
    digest = hasher.hash(f)
    assert digest == hash_file(f)
    hasher.save()
    again = FileHasher(cache)
    assert again.hash(f) == digest
    f.write_text("a,b\n1,3\n")  # same size, new mtime
    assert again.hash(f) != digest
    assert again.hash(tmp_path / "missing") is None
