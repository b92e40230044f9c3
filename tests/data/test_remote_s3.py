"""Artifact remotes on S3, through a local S3-compatible server.

No cloud account is available to the test suite, so moto's server (``ThreadedMotoServer``, a
real HTTP endpoint speaking the S3 API on 127.0.0.1) stands in for S3; s3fs talks to it exactly
as it would to AWS, through ``endpoint_url``.
"""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tessera.data.errors import DataError
from tessera.data.remote import Remote, list_store
from tessera.data.store import ArtifactStore

pytest.importorskip("s3fs")
moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")


def make_store(root: Path) -> tuple[ArtifactStore, dict[str, Any]]:
    """3 tables, a raw file blob and 2 cache entries (as in test_remote.py)."""
    import pyarrow as pa
    import xxhash

    from tessera.data.fingerprint import fingerprint_table
    from tessera.data.hashing import hash_json

    store = ArtifactStore(root)
    fps = []
    for i in range(3):
        table = pa.table({"x": list(range(i, i + 500)), "s": [f"row{j}" for j in range(500)]})
        fps.append(fingerprint_table(table))
        store.put_table(table, fps[-1])
    blob = b"a,b\n1,2\n"
    digest = str(xxhash.xxh3_128(blob).hexdigest())
    (root / "files" / digest[:2]).mkdir(parents=True)
    (root / "files" / digest[:2] / digest).write_bytes(blob)
    keys = [hash_json("stage-1"), hash_json("stage-2")]
    store.put_key(keys[0], {"outputs": {"out": fps[0]}})
    store.put_key(keys[1], {"outputs": {"l": fps[1], "r": fps[2]}, "outs": {"x.csv": digest}})
    return store, {"fps": fps, "blob": digest, "keys": keys}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on a free local port (moto stands in for S3: no cloud account here)."""
    mp = pytest.MonkeyPatch()
    for var, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        mp.setenv(var, value)
    for var in ("AWS_PROFILE", "AWS_SESSION_TOKEN", "AWS_ENDPOINT_URL"):
        mp.delenv(var, raising=False)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=free_port(), verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    try:
        yield f"http://{host}:{port}"
    finally:
        server.stop()
        mp.undo()


@pytest.fixture
def bucket(s3_endpoint: str, request: pytest.FixtureRequest) -> str:
    name = "tessera-" + request.node.name.replace("_", "-")[:40].lower().strip("-")
    boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1").create_bucket(Bucket=name)
    return name


def s3_remote(endpoint: str, url: str) -> Remote:
    options = {"endpoint_url": endpoint, "key": "testing", "secret": "testing"}
    remote = Remote(url, options, name="s3")
    # s3fs caches file system instances and directory listings; start clean for each test.
    remote.fs.invalidate_cache()
    return remote


def test_push_pull_round_trip_through_s3(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    store, made = make_store(tmp_path / "a")
    remote = s3_remote(s3_endpoint, f"s3://{bucket}/team/cache")
    assert remote.is_object_store
    pushed = remote.push(store, jobs=4)
    assert pushed.transferred == {"objects": 3, "files": 1, "keys": 2}

    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    listed = client.list_objects_v2(Bucket=bucket, Prefix="team/cache/")
    names = sorted(o["Key"].removeprefix("team/cache/") for o in listed["Contents"])
    assert names == sorted(list_store(store.root))  # the store's layout, no temporary names

    again = s3_remote(s3_endpoint, f"s3://{bucket}/team/cache").push(store)
    assert again.files == 0 and again.skipped == 6

    fresh = ArtifactStore(tmp_path / "b")
    pulled = s3_remote(s3_endpoint, f"s3://{bucket}/team/cache").pull(fresh, jobs=4)
    assert pulled.transferred == {"objects": 3, "files": 1, "keys": 2} and pulled.corrupt == []
    assert list_store(fresh.root) == list_store(store.root)
    for fp in made["fps"]:
        assert fresh.get_table(fp).equals(store.get_table(fp))


def test_corrupt_s3_object_is_not_installed(s3_endpoint: str, bucket: str, tmp_path: Path) -> None:
    store, made = make_store(tmp_path / "a")
    remote = s3_remote(s3_endpoint, f"s3://{bucket}")
    remote.push(store)
    fp = made["fps"][0]
    client = boto3.client("s3", endpoint_url=s3_endpoint, region_name="us-east-1")
    client.put_object(Bucket=bucket, Key=f"objects/{fp[:2]}/{fp}.parquet", Body=b"PAR1 garbage")
    fresh = ArtifactStore(tmp_path / "b")
    summary = s3_remote(s3_endpoint, f"s3://{bucket}").pull(fresh)
    assert [c.split(" ", 1)[0] for c in summary.corrupt] == [f"objects/{fp[:2]}/{fp}.parquet"]
    assert not fresh.has(fp) and fresh.get_key(made["keys"][0]) is None


def test_missing_bucket_is_a_clear_error(s3_endpoint: str, tmp_path: Path) -> None:
    store, _ = make_store(tmp_path / "a")
    with pytest.raises(DataError, match="bucket 'no-such-bucket' does not exist"):
        s3_remote(s3_endpoint, "s3://no-such-bucket/x").push(store)
    with pytest.raises(DataError, match=r"remote 's3' \(s3://no-such-bucket/x\) does not exist"):
        s3_remote(s3_endpoint, "s3://no-such-bucket/x").pull(ArtifactStore(tmp_path / "b"))


def test_missing_credentials_and_unreachable_endpoints_are_clear_errors(
    s3_endpoint: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
        monkeypatch.delenv(var)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "none"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "none"))
    store = ArtifactStore(tmp_path / "empty")
    no_keys = Remote("s3://bucket/x", {"endpoint_url": s3_endpoint, "skip_instance_cache": True})
    with pytest.raises(DataError, match="no credentials found: set key/secret"):
        no_keys.push(store)
    closed = Remote(
        "s3://bucket/x",
        {
            "endpoint_url": f"http://127.0.0.1:{free_port()}",
            "key": "testing",
            "secret": "testing",
            "config_kwargs": {"retries": {"max_attempts": 1}, "connect_timeout": 1},
        },
        name="origin",
    )
    with pytest.raises(DataError, match=r"cannot list remote 'origin' \(s3://bucket/x\).*network"):
        closed.pull(store)
