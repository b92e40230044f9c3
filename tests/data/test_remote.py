"""Artifact remotes over ``file://``: push, pull, idempotence, verification, partial failures."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tessera.data.errors import DataError
from tessera.data.fingerprint import fingerprint_table
from tessera.data.hashing import hash_file, hash_json
from tessera.data.remote import Remote, RemoteError, list_store, referenced_hashes
from tessera.data.store import ArtifactStore
from tessera.errors import UsageError


def make_store(root: Path) -> tuple[ArtifactStore, dict[str, Any]]:
    """A store with 3 tables, a raw file blob and 2 cache entries (one with a file output)."""
    store = ArtifactStore(root)
    fps = []
    for i in range(3):
        table = pa.table({"x": list(range(i, i + 500)), "s": [f"row{j}" for j in range(500)]})
        fp = fingerprint_table(table)
        store.put_table(table, fp)
        fps.append(fp)
    blob = b"a,b\n1,2\n"
    digest = hash_bytes_plain(blob)
    (root / "files" / digest[:2]).mkdir(parents=True)
    (root / "files" / digest[:2] / digest).write_bytes(blob)
    k1, k2 = hash_json("stage-1"), hash_json("stage-2")
    store.put_key(k1, {"stage": "one", "outputs": {"out": fps[0]}, "outs": {}})
    store.put_key(
        k2,
        {"stage": "two", "outputs": {"left": fps[1], "right": fps[2]}, "outs": {"x.csv": digest}},
    )
    return store, {"fps": fps, "blob": digest, "keys": [k1, k2]}


def hash_bytes_plain(data: bytes) -> str:
    """The content hash of a file blob: xxh3-128 of its bytes (as ``hash_file`` computes it)."""
    import xxhash

    return str(xxhash.xxh3_128(data).hexdigest())


def remote_at(path: Path, name: str = "origin") -> Remote:
    return Remote(path.as_uri(), name=name)


def temp_files(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.is_file() and p.name.startswith(".")]


def test_push_then_pull_into_an_empty_store(tmp_path: Path) -> None:
    store, made = make_store(tmp_path / "a")
    remote = remote_at(tmp_path / "remote")
    pushed = remote.push(store, jobs=4)
    assert pushed.transferred == {"objects": 3, "files": 1, "keys": 2}
    assert pushed.skipped == 0 and pushed.bytes == sum(list_store(store.root).values())
    assert sorted(list_store(tmp_path / "remote")) == sorted(list_store(store.root))
    assert pushed.line().startswith("pushed 3 objects, 2 keys, 1 file (")
    assert "to origin in" in pushed.line() and pushed.line().endswith("; 0 already there")

    empty = ArtifactStore(tmp_path / "b")
    pulled = remote.pull(empty)
    assert pulled.transferred == {"objects": 3, "files": 1, "keys": 2}
    assert pulled.corrupt == [] and pulled.incomplete_keys == []
    assert list_store(empty.root) == list_store(store.root)
    for fp in made["fps"]:
        assert empty.get_table(fp).equals(store.get_table(fp))  # verified read
    assert empty.get_key(made["keys"][1]) == store.get_key(made["keys"][1])
    assert temp_files(tmp_path) == []
    again = remote.pull(empty)
    assert again.files == 0 and again.skipped == 6


def test_second_push_transfers_nothing(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path / "a")
    remote = remote_at(tmp_path / "remote")
    remote.push(store)
    stamp = {p: p.stat().st_mtime_ns for p in (tmp_path / "remote").rglob("*") if p.is_file()}
    again = remote.push(store)
    assert again.files == 0 and again.bytes == 0 and again.skipped == 6
    assert again.line().endswith("; 6 already there")
    after = {p: p.stat().st_mtime_ns for p in (tmp_path / "remote").rglob("*") if p.is_file()}
    assert after == stamp  # nothing rewritten


def test_push_and_pull_are_incremental(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path / "a")
    remote = remote_at(tmp_path / "remote")
    remote.push(store)
    table = pa.table({"y": [1.5, 2.5]})
    fp = fingerprint_table(table)
    store.put_table(table, fp)
    store.put_key(hash_json("stage-3"), {"outputs": {"out": fp}})
    more = remote.push(store)
    assert more.transferred == {"objects": 1, "files": 0, "keys": 1} and more.skipped == 6


def test_corrupt_remote_object_is_reported_and_not_installed(tmp_path: Path) -> None:
    store, made = make_store(tmp_path / "a")
    remote = remote_at(tmp_path / "remote")
    remote.push(store)
    bad_fp = made["fps"][1]
    bad = tmp_path / "remote" / "objects" / bad_fp[:2] / f"{bad_fp}.parquet"
    # A valid Parquet file with the wrong content under the right name.
    os.replace(store.object_path(made["fps"][0]), tmp_path / "saved.parquet")
    bad.write_bytes((tmp_path / "saved.parquet").read_bytes())
    blob = tmp_path / "remote" / "files" / made["blob"][:2] / made["blob"]
    blob.write_bytes(b"tampered")

    fresh = ArtifactStore(tmp_path / "b")
    summary = remote.pull(fresh)
    assert sorted(c.split(" ", 1)[0] for c in summary.corrupt) == sorted(
        [f"objects/{bad_fp[:2]}/{bad_fp}.parquet", f"files/{made['blob'][:2]}/{made['blob']}"]
    )
    assert not fresh.has(bad_fp)  # never installed
    assert fresh.has(made["fps"][0]) and fresh.has(made["fps"][2])
    # The entry that needs the corrupt table is not installed either: no dangling cache hit.
    assert summary.incomplete_keys == [made["keys"][1]]
    assert fresh.get_key(made["keys"][1]) is None
    assert fresh.get_key(made["keys"][0]) is not None
    assert temp_files(fresh.root) == []

    truncated_fp = made["fps"][2]
    trunc = tmp_path / "remote" / "objects" / truncated_fp[:2] / f"{truncated_fp}.parquet"
    trunc.write_bytes(trunc.read_bytes()[:50])
    other = ArtifactStore(tmp_path / "c")
    summary = remote.pull(other)
    assert any("unreadable Parquet" in c for c in summary.corrupt)
    assert not other.has(truncated_fp)


def test_failed_download_leaves_no_half_written_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, made = make_store(tmp_path / "a")
    remote = remote_at(tmp_path / "remote")
    remote.push(store)
    victim = made["fps"][2]
    real_get = remote.fs.get_file

    def flaky_get(rpath: str, lpath: str, **kw: Any) -> None:
        if victim in rpath:
            with open(rpath, "rb") as src, open(lpath, "wb") as dst:
                dst.write(src.read(100))  # half a file, then the connection drops
            raise ConnectionResetError("connection reset by peer")
        real_get(rpath, lpath, **kw)

    monkeypatch.setattr(remote.fs, "get_file", flaky_get)
    fresh = ArtifactStore(tmp_path / "b")
    with pytest.raises(RemoteError, match="1 transfer failed while pulling from remote 'origin'"):
        remote.pull(fresh)
    assert not fresh.object_path(victim).exists()
    assert temp_files(fresh.root) == []  # the partial temporary file is gone
    assert fresh.has(made["fps"][0]) and fresh.has(made["fps"][1])
    assert fresh.get_key(made["keys"][1]) is None  # its table did not arrive
    assert fresh.get_key(made["keys"][0]) is not None

    monkeypatch.setattr(remote.fs, "get_file", real_get)
    retry = remote.pull(fresh)
    assert retry.transferred == {"objects": 1, "files": 0, "keys": 1}
    assert fresh.get_table(victim).num_rows == 500


def test_failed_upload_leaves_nothing_under_the_final_name(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store, made = make_store(tmp_path / "a")
    remote = remote_at(tmp_path / "remote")
    victim = made["fps"][1]
    real_put = remote.fs.put_file

    def flaky_put(lpath: str, rpath: str, **kw: Any) -> None:
        if victim in rpath:
            with open(lpath, "rb") as src, open(rpath, "wb") as dst:
                dst.write(src.read(100))
            raise TimeoutError("write timed out")
        real_put(lpath, rpath, **kw)

    monkeypatch.setattr(remote.fs, "put_file", flaky_put)
    with pytest.raises(RemoteError, match="pushing to") as info:
        remote.push(store)
    on_remote = list_store(tmp_path / "remote")
    assert f"objects/{victim[:2]}/{victim}.parquet" not in on_remote
    assert temp_files(tmp_path / "remote") == []
    # Objects go first, and the entry that needs the missing table stays home.
    assert f"keys/{made['keys'][1][:2]}/{made['keys'][1]}.json" not in on_remote
    assert f"keys/{made['keys'][0][:2]}/{made['keys'][0]}.json" in on_remote
    assert info.value.summary.incomplete_keys == [made["keys"][1]]


def test_keys_limit_the_transfer_to_what_they_reference(tmp_path: Path) -> None:
    store, made = make_store(tmp_path / "a")
    remote = remote_at(tmp_path / "remote")
    one = remote.push(store, keys=[made["keys"][0], "f" * 32])
    assert one.transferred == {"objects": 1, "files": 0, "keys": 1}
    assert one.missing_keys == ["f" * 32]
    two = remote.push(store, keys=[made["keys"][1]])
    assert two.transferred == {"objects": 2, "files": 1, "keys": 1}  # the file blob goes too

    fresh = ArtifactStore(tmp_path / "b")
    got = remote.pull(fresh, keys=[made["keys"][1]])
    assert got.transferred == {"objects": 2, "files": 1, "keys": 1}
    assert not fresh.has(made["fps"][0])
    assert fresh.get_key(made["keys"][1]) is not None and fresh.get_key(made["keys"][0]) is None
    keys_only = ArtifactStore(tmp_path / "c")
    entries = remote.pull(keys_only, kinds=["keys"])
    # Entries whose tables are not here are not installed: they would be dangling.
    assert entries.files == 0 and sorted(entries.incomplete_keys) == sorted(made["keys"])


def test_referenced_hashes_finds_tables_and_blobs() -> None:
    a, b = "ab" * 16, "cd" * 16
    entry = {"outputs": {"o": a}, "outs": {"f.csv": b, "g.csv": "missing"}, "created": 1.0}
    assert referenced_hashes(entry) == {a, b}


def test_environment_variables_are_expanded(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TESSERA_TEST_REMOTE", str(tmp_path))
    monkeypatch.setenv("TESSERA_TEST_SECRET", "s3cr3t")
    remote = Remote(
        "file://${TESSERA_TEST_REMOTE}/cache",
        {"auto_mkdir": True, "nested": {"secret": "x-${TESSERA_TEST_SECRET}"}},
        name="shared",
    )
    assert remote.url == f"file://{tmp_path}/cache"
    assert remote.options["nested"] == {"secret": "x-s3cr3t"}
    monkeypatch.delenv("TESSERA_TEST_SECRET")
    with pytest.raises(UsageError, match=r"remotes.shared.options.key in tessera.yaml uses \$\{TE"):
        Remote("memory://x", {"key": "${TESSERA_TEST_SECRET}"}, name="shared")


def test_bad_urls_are_clear_errors(tmp_path: Path) -> None:
    import fsspec

    with pytest.raises(DataError, match="unknown protocol 'nosuchproto'"):
        Remote("nosuchproto://bucket/x", name="origin").push(ArtifactStore(tmp_path))
    # How fsspec reports a protocol whose package is missing (s3 without s3fs, say).
    fsspec.register_implementation(
        "tesserafake", "tessera_no_such_module.FS", errtxt="Install tessera-fake-fs", clobber=True
    )
    with pytest.raises(DataError, match="'tesserafake' protocol needs a package"):
        Remote("tesserafake://bucket/x", name="origin").pull(ArtifactStore(tmp_path))
    with pytest.raises(DataError, match=r"remote 'origin' \(file://.*\) does not exist"):
        remote_at(tmp_path / "nowhere").pull(ArtifactStore(tmp_path / "b"))


def test_temporary_and_stray_files_are_ignored(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path / "a")
    remote = remote_at(tmp_path / "remote")
    remote.push(store)
    shard = next((tmp_path / "remote" / "objects").iterdir())
    (shard / ".leftover.parquet.1234.tmp").write_bytes(b"partial")
    (tmp_path / "remote" / "objects" / "README").write_text("not an object")
    fresh = ArtifactStore(tmp_path / "b")
    got = remote.pull(fresh)
    assert got.files == 6 and got.corrupt == []
    assert temp_files(fresh.root) == []


def test_progress_sees_every_byte(tmp_path: Path) -> None:
    store, _ = make_store(tmp_path / "a")
    seen: dict[str, int] = {"files": 0, "total": 0, "moved": 0}

    class Counter:
        def start(self, files: int, nbytes: int) -> None:
            seen["files"] += files
            seen["total"] += nbytes

        def advance(self, nbytes: int) -> None:
            seen["moved"] += nbytes

    summary = remote_at(tmp_path / "remote").push(store, progress=Counter())
    assert seen == {"files": 6, "total": summary.bytes, "moved": summary.bytes}


def test_file_blob_hash_matches_hash_file(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"a,b\n1,2\n")
    assert hash_file(path) == hash_bytes_plain(b"a,b\n1,2\n")
